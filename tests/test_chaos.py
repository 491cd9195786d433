"""A short chaos run of the dataset command on the suite's Ray instance (``raysolve.bench.chaos``;
``jobs/chaos.py`` runs the long one): while it solves, an engine reports itself dead, one hangs,
an engine actor and the sandbox actor are SIGKILLed, and the driver is stopped and started
again. Afterwards every problem is on disk exactly once, with a real settle and its right
answer, and no actor process or sandbox session is left.

Faults land at counts of results on disk, not at times, and the hang watchdog's limit (3 s)
is about a thousand times the scripted engine's gap between tokens, so a slow host changes
nothing but the duration.
"""

import pytest

from raysolve.bench.chaos import ChaosPlan, run

pytestmark = pytest.mark.timeout(600)


def test_no_answer_is_lost_or_duplicated_under_faults(ray_local, tmp_path):
    plan = ChaosPlan(problems=24, dead=1, hang=1, engine_kills=1, sandbox_kills=1, driver_stops=1)
    report = run(plan, tmp_path, ray_local.get_runtime_context().gcs_address, timeout_s=500)
    assert report["rows"] == 24 and report["lost"] == 0 and report["duplicated"] == 0, report["examples"]
    assert report["wrong_answers"] == 0 and report["without_real_settle"] == 0 and report["votes_inconsistent"] == 0
    assert report["duplicated_sample_rows"] == 0
    assert report["actor_processes_left"] == [] and all(s == 0 for s in report["sandbox_sessions_left"])
    assert sorted(name.split("-")[0] for name in report["faults"]["engines_broken"]) == ["dead", "hang"]
    stops = [r for r in report["driver_runs"] if r.get("stopped")]
    assert len(stops) == 1 and report["driver_runs"][-1]["exit"] == 0
    assert report["samples_retried"] >= 1 and report["ok"]

"""Competition mode on the real actors with the scripted TEST engine (deterministic sample
lengths and answers): the runner, the predictor, the command, and an engine actor that crashes
mid-run. The model itself is exercised end to end by test_cli, test_serve and test_hf_on_ray.

These tests show that the runner keeps its budget, not how fast anything is, and hold on
a slow, busy host:

- where problems have to be answered, budgets are far above what they need (``SHARE_S`` a
  problem, several times the few seconds a tiny-model problem takes on a busy 2-core host);
  a run still ends as soon as its problems settle, so this costs no time;
- where a deadline has to land (``test_a_problem_at_its_deadline_is_still_answered``),
  samples finish at once or could not finish within minutes, so which samples vote is
  fixed, and the deadline is checked with a margin (``LATE_S``) many times the usual
  cancel-and-reply time;
- the engine crash is triggered by the problem's first sample to start, not after a delay.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raysolve.competition.aimo import Predictor, SolverBackend, run_offline
from raysolve.competition.budget import AdaptiveBudget, FixedBudget
from raysolve.runtime.config import EngineConfig, SolverConfig
from raysolve.competition.gateway import LocalGateway
from raysolve.engines.testing.scripted import crash_once_problem, directive_problem
from raysolve.io.problems import Problem
from raysolve.runtime.solver import Solver

ROOT = Path(__file__).resolve().parents[1]
SHARE_S = 20.0
"""Even share of the budget per problem where problems have to be answered: a tiny-model problem
takes about 2 s on an idle 2-core host and about 2 s beside two CPU burners, so this is 5x what
a host twice as slow and busy needs."""
LATE_S = 1.5
"""How far past its deadline a problem may be answered: the coordinator settles at the deadline
minus the usual drain, then cancels the samples and replies (well under 0.3 s on a busy host)."""
MARGIN_S = 10.0
"""Wall-clock slack for writing the summary files and the plot (matplotlib's first import
included) after the last answer, on a busy host."""


@pytest.fixture(scope="module")
def scripted(ray_local):
    """Solver with the scripted TEST engine: sample lengths come from the problem text, at
    200 tokens/s at most (a slow host is only slower), 16 samples at once."""
    cfg = SolverConfig(engine=EngineConfig(backend="scripted", num_cpus=0.5,
                                           options={"tokens_per_s": 200, "concurrency": 16}))
    cfg.budget.max_tokens = 100_000
    with Solver(cfg) as s:
        s.solve(Problem("warm", directive_problem(["1"], [1], code=False)))  # first-call costs, not in a deadline
        yield s


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "problems.jsonl").read_text().splitlines()]


def samples_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def test_run_keeps_its_budget_and_unused_time_flows_to_later_problems(scripted, tmp_path):
    # Scripted problems whose samples answer after 40 to 160 tokens (at most 0.8 s): each settles
    # far within its share, so every later problem starts ahead of schedule.
    problems = [Problem(f"p{k}", directive_problem([str(100 + k)], [40 * (k + 1)], code=False), answer=str(100 + k))
                for k in range(4)]
    total = SHARE_S * len(problems)
    started = time.monotonic()
    summary = run_offline(problems, scripted.config, total_s=total, policy=AdaptiveBudget(total, len(problems)),
                          out_dir=tmp_path, solver=scripted, warm_up=False, echo=False)
    wall = time.monotonic() - started
    assert wall <= total + MARGIN_S and summary["elapsed_s"] <= total and summary["within_budget"]
    rows = rows_of(tmp_path)
    assert [r["id"] for r in rows] == [p.id for p in problems]  # in order, each answered once
    assert [r["answer"] for r in rows] == [100, 101, 102, 103] and summary["correct"] == 4
    assert all(r["answer_source"] == "vote" and r["settle_reason"] != "time_limit" for r in rows)
    # The first problem gets the even share; as earlier problems left time unused (the run is
    # ahead of schedule), each later problem's deadline is above the even share.
    assert rows[0]["deadline_s"] == pytest.approx(SHARE_S, abs=0.05)
    ahead = [r for i, r in enumerate(rows) if total - r["started_s"] > (len(rows) - i) * SHARE_S + 0.05]
    assert ahead == rows[1:]
    assert all(r["deadline_s"] > SHARE_S for r in ahead)
    assert max(r["deadline_s"] for r in rows) <= 1.6 * SHARE_S + 0.01
    for name in ("problems.jsonl", "samples.jsonl", "submission.csv", "summary.json", "time-per-problem.png"):
        assert (tmp_path / name).stat().st_size > 0
    with (tmp_path / "submission.csv").open() as f:
        assert [r["id"] for r in csv.DictReader(f)] == [p.id for p in problems]


def test_a_problem_at_its_deadline_is_still_answered(scripted, tmp_path):
    # "full" waits for all 16 samples. In the first problem every other sample answers 7 after
    # 20 tokens (done 0.35 s after the start, 1 s on a very busy host) and the rest would need
    # 100 s; in the second, all would. So at the 3 s deadline the first is answered from its 8
    # votes, the second gets the fallback.
    deadline, never = 3.0, 20_000
    problems = [Problem("partial", directive_problem(["7"], [20, never], code=False), answer="7"),
                Problem("fallback", directive_problem(["7"], [never], code=False), answer="7")]
    total = deadline * len(problems)
    policy = FixedBudget(total_s=total, problems=2, samples=16, stop_policy="full")
    started = time.monotonic()
    summary = run_offline(problems, scripted.config, total_s=total, policy=policy, out_dir=tmp_path,
                          solver=scripted, fallback_answer=123, modulus=None, warm_up=False, echo=False)
    assert time.monotonic() - started <= total + 2 * LATE_S + MARGIN_S
    partial, fallback = rows_of(tmp_path)
    for r in (partial, fallback):
        assert r["settle_reason"] == "time_limit" and r["error"] is None, r
        assert r["used_s"] <= r["deadline_s"] + LATE_S, r  # the coordinator's limit, not the backstop
        assert r["samples_launched"] == 16 and r["samples_cancelled"] == 16 - r["samples_finished"]
    assert partial["deadline_s"] == pytest.approx(deadline, abs=0.05)
    assert partial["answer_source"] == "partial" and partial["answer"] == 7 and partial["correct"]
    assert partial["votes"] == {"7": 8} and partial["samples_finished"] == 8
    assert fallback["answer_source"] == "fallback" and fallback["answer"] == 123 and fallback["votes"] == {}
    assert fallback["samples_finished"] == 0
    assert summary["settle_reasons"] == {"time_limit": 2}


def test_predictor_through_the_local_gateway(scripted, tmp_path):
    # The plumbing (gateway, predictor, budget, logs) on the scripted TEST engine: two problems
    # answer their gold answer, one a wrong one; the model's accuracy is measured above.
    data = tmp_path / "test.csv"
    with data.open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["id", "problem", "answer"])
        for pid, said, gold in (("a", "1234", "234"), ("b", "5", "5"), ("c", "6", "8")):
            rows.writerow([pid, directive_problem([said], [20], code=False), gold])
        rows.writerow(["bad-row", "", "7"])  # a row without text
    total = 3 * SHARE_S
    with Predictor(solver=scripted, total_s=total, problems=3, out_dir=tmp_path / "log", warm_up=False) as predict:
        report = LocalGateway(data, modulus=1000).run(predict, out_dir=tmp_path / "gateway")
        assert isinstance(predict.predict("plain", "What is 2 + 2?"), int)  # plain values work too
    assert report.problems == 3 and report.invalid == 0 and report.graded == 3
    assert report.skipped_rows == ["row 5: empty problem text"]
    assert report.correct == 2 and report.score == 2 / 3  # 1234 is submitted mod 1000
    assert sum(report.call_s) <= total + MARGIN_S
    sub = (tmp_path / "gateway" / "submission.csv").read_text().splitlines()
    assert sub[0] == "id,answer" and len(sub) == 4
    assert json.loads((tmp_path / "log" / "summary.json").read_text())["problems"] == 4
    assert scripted.coordinator is not None  # the predictor did not stop an engine it was lent


def test_an_engine_crash_costs_one_problem_and_the_run_goes_on(scripted, tmp_path):
    # The first sample of the second problem to start kills its engine actor's process (mid-flight,
    # however fast the host); Ray restarts the actor and the coordinator retries the samples.
    problems = [Problem("a0", directive_problem(["3"], [40], code=False), answer="3"),
                Problem("a1", crash_once_problem(str(tmp_path / "crashed"), ["7"], [400]), answer="7"),
                Problem("a2", directive_problem(["5"], [40], code=False), answer="5")]
    backend = SolverBackend(scripted, 1000)
    from raysolve.competition.loop import Competition, CompetitionLog

    retried_before = scripted.stats()["coordinator"]["samples_retried"]
    total = len(problems) * SHARE_S
    log = CompetitionLog(tmp_path)
    run = Competition(FixedBudget(total, len(problems), samples=8), backend, len(problems), total, modulus=1000,
                      log=log)
    rows = run.run(problems)
    log.close()
    assert (tmp_path / "crashed").exists()
    assert [r.answer for r in rows] == [3, 7, 5] and run.elapsed_s() <= total
    # The crashed problem's samples in flight were retried once the actor was back: they are its
    # samples' second attempts, and only its samples had any; it was answered within its deadline
    # by vote, and the next problem was solved by vote again.
    assert scripted.stats()["coordinator"]["samples_retried"] > retried_before
    assert {s["problem_id"] for s in samples_of(tmp_path) if s["attempt"] > 1} == {"a1"}
    assert all(r.answer_source == "vote" and r.error is None for r in rows)
    assert rows[1].used_s <= rows[1].deadline_s + LATE_S


def test_aimo_command(ray_local, tmp_path):
    # The command end to end (engines, budget, files, resume) on the scripted TEST engine: the
    # model's accuracy is what the tests above measure, not this one. It joins the suite's Ray
    # instance with --address, as on a cluster (test_cli's end-to-end test starts its own Ray).
    import yaml

    data = tmp_path / "set.csv"
    rows = [f'a{i},"{directive_problem([str(7 * i)], [30], code=False)}",{7 * i}' for i in range(1, 4)]
    data.write_text("\n".join(["id,problem,answer", *rows, "no-text,,5"]) + "\n")
    config = tmp_path / "scripted.yaml"
    config.write_text(yaml.safe_dump({"engine": {"backend": "scripted", "num_cpus": 0.5,
                                                 "options": {"tokens_per_s": 4000}}}))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "out"
    address = ["--address", ray_local.get_runtime_context().gcs_address]
    proc = subprocess.run([sys.executable, "-m", "raysolve.cli", "aimo", str(data), "--out", str(out), *address,
                           "--time-budget", "300", "--samples", "8", "--stragglers", "2", "--config", str(config)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped row 5: empty problem text" in proc.stderr
    assert "score " in proc.stdout and "submission.csv" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 3 and summary["within_budget"] and summary["startup_counts"]
    assert summary["startup_s"] > 0 and summary["elapsed_s"] > summary["startup_s"]
    assert all(r["stop_policy"].endswith("|stragglers:2") for r in rows_of(out))
    assert summary["correct"] == 3  # each scripted problem answers its own gold answer
    # Rerun: everything is answered already; the time spent is charged, nothing is solved again.
    proc = subprocess.run([sys.executable, "-m", "raysolve.cli", "aimo", str(data), "--out", str(out), *address,
                           "--time-budget", "300", "--config", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "(3 answered earlier)" in proc.stdout
    assert len(rows_of(out)) == 3

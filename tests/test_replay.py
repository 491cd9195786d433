"""The replay harness: trace loading, the event simulation, and agreement with the coordinator's rules."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from raysolve.core.replay import (DEFAULT_MODES, DEFAULT_POLICIES, EARLY_STOP_MEANING, NO_GOLD, Mode, Sample, load_traces,
                                  parse_mode, replay, simulate, trace_warnings, write_report)
from raysolve.core.voting import FullVote, parse_policy

ROOT = Path(__file__).resolve().parents[1]


def samples(spec):
    """'a:10' → answer a, 10 tokens (duration = tokens)."""
    out = []
    for item in spec.split():
        answer, tokens = item.split(":")
        out.append(Sample(None if answer == "-" else answer, int(tokens), float(tokens)))
    return out


def test_sequential_pool_stops_as_soon_as_the_rule_fires():
    s = samples("a:10 a:10 a:10 a:10 b:10 b:10")
    out = simulate(s, parse_policy("first-k:3"), Mode("pool", 1))
    assert (out.answer, out.reason, out.started, out.finished) == ("a", "first-k:3", 3, 3)
    assert out.tokens == 30 and out.makespan == 30


def test_launch_all_charges_the_cancelled_siblings_for_what_they_ran():
    s = samples("a:10 a:20 a:30 b:100 b:100")
    out = simulate(s, parse_policy("k-identical:3"), Mode("launch-all"))
    assert out.answer == "a" and out.makespan == 30
    assert out.tokens == pytest.approx(10 + 20 + 30 + 2 * 100 * 0.3)
    full = simulate(s, FullVote(), Mode("launch-all"))
    assert full.tokens == 260 and full.makespan == 100 and full.reason == "budget"


def test_pool_width_bounds_what_runs_at_once():
    s = samples("a:10 a:10 a:10 a:10 a:10 a:10 a:10 a:10")
    out = simulate(s, parse_policy("first-k:4"), Mode("pool", 2))
    assert out.finished == 4 and out.started == 5  # the 5th started when the 3rd finished...
    assert out.tokens == pytest.approx(40) and out.makespan == 20  # ...at the same instant: nothing spent on it
    assert parse_mode("pool:8") == Mode("pool", 8) and parse_mode("launch-all").name == "launch-all"
    with pytest.raises(ValueError):
        parse_mode("pool:0")


def test_unbeatable_never_changes_the_answer_and_replay_reports_it(tmp_path):
    rows = [{"problem_id": f"p{i}", "answer": a, "generated_tokens": 10 * (j + 1), "tool_output_tokens": 5,
             "cancelled": False, "wall_s": float(j + 1)}
            for i in range(12) for j, a in enumerate("aaabbaacaaaa" if i % 2 else "abababaaaaaa")]
    traces = tmp_path / "samples.jsonl.gz"
    with gzip.open(traces, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "problems.jsonl").write_text("".join(json.dumps({"problem_id": f"p{i}", "gold": "a"}) + "\n" for i in range(12)))
    loaded = load_traces(traces)
    assert len(loaded) == 12 and loaded[0].gold == "a" and loaded[0].samples[0].tokens == 15
    table = replay(loaded, [parse_policy("unbeatable"), parse_policy("first-k:2")],
                   [Mode("pool", 1), Mode("pool", 4), Mode("launch-all")], orderings=5)
    by = {(r["policy"], r["mode"]): r for r in table}
    for mode in ("pool:1", "pool:4", "launch-all"):
        assert by[("unbeatable", mode)]["agrees_with_full_vote_pct"] == 100.0
        assert by[("unbeatable", mode)]["tokens_pct_of_full"] < 100
    assert by[("first-k:2", "pool:1")]["tokens_pct_of_full"] < by[("unbeatable", "pool:1")]["tokens_pct_of_full"]
    assert by[("unbeatable", "pool:1")]["full_vote_accuracy"] == 100.0


def test_budget_subsamples_and_csv_traces_load(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("problem_id,answer,tokens,gold\n" + "".join(f"q,{a},{n},7\n" for a, n in
                                                              [("7", 5), ("7", 6), ("", 7), ("8", 9)]))
    (trace,) = load_traces(path)
    assert trace.gold == "7" and [s.answer for s in trace.samples] == ["7", "7", None, "8"]
    rows = replay([trace], [parse_policy("full")], [Mode("pool", 2)], orderings=3, budget=2)
    assert rows[0]["samples_started_mean"] == 2


def test_samples_vote_with_the_solvers_vote_key_unless_raw_answers_are_asked_for(tmp_path):
    # Another tool's traces: one answer in three forms outvoted, as raw strings, by a wrong one.
    forms = [r"\\frac{1}{2}", "0.5", "1/2", "3", "3"]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps({"problem_id": "q", "answer": a, "tokens": 10, "gold": r"\\dfrac12"}) + "\n"
                            for a in forms))
    (keyed,) = load_traces(path)
    assert [s.answer for s in keyed.samples] == ["1/2", "1/2", "1/2", "3", "3"]
    row = replay([keyed], [parse_policy("full")], [Mode("pool", 5)], orderings=2)[0]
    assert row["full_vote_accuracy"] == 100.0  # graded on the text as written: \frac{1}{2}
    (raw,) = load_traces(path, raw_answers=True)
    assert replay([raw], [parse_policy("full")], [Mode("pool", 5)], orderings=2)[0]["full_vote_accuracy"] == 0.0
    (mod,) = load_traces(path, modulus=1000)
    assert [s.answer for s in mod.samples] == [None, None, None, "3", "3"]  # not integers: no vote


@pytest.mark.slow
def test_replay_command_on_the_shipped_traces(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "raysolve.cli", "replay", str(ROOT / "results" / "tiny-eval-samples.jsonl.gz"),
         "--gold", str(ROOT / "results" / "tiny-eval-problems.jsonl"), "--policy", "unbeatable",
         "--policy", "beta:0.95", "--mode", "pool:4", "--orderings", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    table = json.loads((tmp_path / "replay.json").read_text())
    assert {r["policy"] for r in table["rows"]} == {"unbeatable", "beta:0.95"}
    assert (tmp_path / "replay.png").stat().st_size > 1000 and (tmp_path / "replay.csv").exists()
    assert "tokens %" in proc.stdout


def test_wave_mode_launches_the_next_wave_only_when_the_last_is_back():
    s = samples("a:10 b:30 a:10 b:10 a:10 a:10 a:10 a:10")
    out = simulate(s, parse_policy("k-identical:4"), Mode("wave", 4))
    # wave 1 (a, b, a, b) is back at t=30 with a:2 b:2; wave 2 starts then; its a's finish at t=40
    assert out.answer == "a" and out.started == 8 and out.makespan == 40
    pool = simulate(s, parse_policy("k-identical:4"), Mode("pool", 4))
    assert pool.makespan < out.makespan  # pool refills at once, so it finishes sooner


def write_run(folder, samples_per_problem, cancelled=(), gold=True, budget=None, started=None, policy="full"):
    """A solver run's files: ``samples.jsonl`` (``cancelled`` rows as (problem, count)) and ``problems.jsonl``."""
    rows, problems = [], []
    for i, n in enumerate(samples_per_problem):
        pid = f"p{i}"
        rows += [{"problem_id": pid, "answer": "a" if j % 3 else "b", "generated_tokens": 10 + j, "tool_output_tokens": 0,
                  "cancelled": False, "wall_s": 1.0 + j} for j in range(n)]
        rows += [{"problem_id": pid, "answer": None, "generated_tokens": 3, "tool_output_tokens": 0, "cancelled": True,
                  "wall_s": 0.5}] * dict(cancelled).get(pid, 0)
        problems.append({"problem_id": pid, "gold": "a" if gold else None, "policy": policy,
                         "samples_budget": budget or n, "samples_started": (started or {}).get(pid, budget or n)})
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in problems))
    return folder / "samples.jsonl"


def test_a_full_run_with_golds_has_no_warnings(tmp_path):
    path = write_run(tmp_path, [6, 6, 6])
    assert trace_warnings(path, load_traces(path)) == []


def test_cancelled_samples_of_an_early_stopped_run_are_counted_and_explained(tmp_path):
    # launch-all under a stop policy: all 8 started, the siblings still running when it settled cancelled
    path = write_run(tmp_path, [6, 8, 7, 8], cancelled=[("p0", 2), ("p2", 1)], budget=8, policy="unbeatable")
    traces = load_traces(path)
    assert [len(t.samples) for t in traces] == [6, 8, 7, 8]  # still dropped, as before
    warnings = trace_warnings(path, traces)
    assert warnings[0] == "3 cancelled samples in 2 of 4 problems dropped (rows with cancelled: true)"
    assert warnings[-1] == EARLY_STOP_MEANING and "--policy full" in EARLY_STOP_MEANING
    assert len(warnings) == 2  # every sample of the budget was started; golds are there


def test_samples_an_early_stopped_run_never_started_are_counted(tmp_path):
    # pool:1 under a stop policy: nothing is cancelled, the rest of the budget is just never started
    path = write_run(tmp_path, [3, 8, 4], budget=8, started={"p0": 3, "p2": 4}, policy="first-k:3")
    warnings = trace_warnings(path, load_traces(path))
    assert warnings == ["9 samples of the budget in 2 of 3 problems never started (the run's stop policy first-k:3 "
                        "settled first): not in the traces", EARLY_STOP_MEANING]


def test_traces_without_any_gold_say_the_accuracy_columns_are_empty(tmp_path):
    path = write_run(tmp_path, [5, 5], gold=False)
    assert trace_warnings(path, load_traces(path)) == [NO_GOLD]
    (tmp_path / "problems.jsonl").unlink()
    assert trace_warnings(path, load_traces(path)) == [NO_GOLD]
    gold = tmp_path / "gold.jsonl"  # --gold FILE: golds, and no run fields
    gold.write_text(json.dumps({"problem_id": "p0", "gold": "a"}) + "\n")
    assert trace_warnings(path, load_traces(path, gold), gold) == []


@pytest.mark.parametrize("gold", [True, False])
def test_the_plot_is_written_with_many_policies_and_modes(tmp_path, gold):
    path = write_run(tmp_path, [6] * 4, cancelled=[("p1", 2)], gold=gold)
    traces = load_traces(path)
    policies = [parse_policy(p) for p in (*DEFAULT_POLICIES, "first-k:2", "first-k:3", "beta:0.9", "predictive:0.9")]
    rows = replay(traces, policies, [parse_mode(m) for m in DEFAULT_MODES], orderings=2)
    assert len({r["policy"] for r in rows}) >= 18 and len({r["mode"] for r in rows}) == 5
    warnings = trace_warnings(path, traces)
    write_report(rows, tmp_path / "out", {"title": "many policies " * 12, "warnings": warnings})
    assert (tmp_path / "out" / "replay.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "replay.json").read_text())["warnings"] == warnings

"""Competition mode on the real actors and the shipped tiny model (hf backend, CPU).

Budgets here are small (a few seconds a problem) and every time check has a margin:
these tests show that the runner keeps its budget, not how fast anything is.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from raysolve.competition.aimo import Predictor, SolverBackend, run_offline
from raysolve.competition.budget import AdaptiveBudget, FixedBudget
from raysolve.runtime.config import SolverConfig
from raysolve.competition.gateway import LocalGateway
from raysolve.io.problems import Fields, Problem, load_problems
from raysolve.runtime.solver import Solver

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "examples" / "aimo-heldout.csv"
MARGIN_S = 1.5
"""Wall-clock slack for writing the summary files and the plot after the last answer."""


def heldout(n: int) -> list[Problem]:
    return [p for p in load_problems(HELDOUT, Fields())][:n]  # type: ignore[misc]


@pytest.fixture(scope="module")
def solver(ray_local):
    with Solver(SolverConfig()) as s:
        s.warm_up()
        yield s


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "problems.jsonl").read_text().splitlines()]


def test_run_keeps_its_budget_and_unused_time_flows_to_later_problems(solver, tmp_path):
    problems = heldout(8)
    total = 3.0 * len(problems)
    started = time.monotonic()
    summary = run_offline(problems, solver.config, total_s=total, policy=AdaptiveBudget(total, len(problems)),
                          out_dir=tmp_path, solver=solver, warm_up=False, echo=False)
    wall = time.monotonic() - started
    assert wall <= total + MARGIN_S and summary["elapsed_s"] <= total and summary["within_budget"]
    rows = rows_of(tmp_path)
    assert [r["id"] for r in rows] == [p.id for p in problems]  # in order, each answered once
    assert all(isinstance(r["answer"], int) and 0 <= r["answer"] < 1000 for r in rows)
    assert summary["correct"] >= 5  # the tiny model solves most of its own kind of problem
    # The first problem gets the even share; whenever earlier problems left time unused (the run
    # is ahead of schedule), the next problem's deadline is above the even share.
    assert rows[0]["deadline_s"] == pytest.approx(3.0, abs=0.05)
    ahead = [r for i, r in enumerate(rows) if total - r["started_s"] > (len(rows) - i) * 3.0 + 0.05]
    assert len(ahead) >= 3  # most problems settle well within 3 s
    assert all(r["deadline_s"] > 3.0 for r in ahead)
    assert max(r["deadline_s"] for r in rows) <= 1.6 * 3.0 + 0.01
    for name in ("problems.jsonl", "samples.jsonl", "submission.csv", "summary.json", "time-per-problem.png"):
        assert (tmp_path / name).stat().st_size > 0
    with (tmp_path / "submission.csv").open() as f:
        assert [r["id"] for r in csv.DictReader(f)] == [p.id for p in problems]


def test_a_problem_at_its_deadline_is_still_answered(solver, tmp_path):
    # 16 samples need about 2 s on the tiny CPU engine; the deadline is 0.6 s.
    problems = heldout(2)
    policy = FixedBudget(total_s=1.2, problems=2, samples=16, stop_policy="full")
    started = time.monotonic()
    summary = run_offline(problems, solver.config, total_s=1.2, policy=policy, out_dir=tmp_path, solver=solver,
                          fallback_answer=123, warm_up=False, echo=False)
    assert time.monotonic() - started <= 1.2 + MARGIN_S
    for r in rows_of(tmp_path):
        assert r["settle_reason"] == "time_limit" and r["used_s"] <= 0.6 + 0.3
        assert r["answer_source"] in ("partial", "fallback") and isinstance(r["answer"], int)
        assert r["samples_launched"] == 16 and r["samples_cancelled"] == 16 - r["samples_finished"]
        if r["answer_source"] == "fallback":
            assert r["answer"] == 123 and r["votes"] == {}
    assert summary["settle_reasons"] == {"time_limit": 2}


def test_predictor_through_the_local_gateway(solver, tmp_path):
    data = tmp_path / "test.csv"
    lines = HELDOUT.read_text().splitlines()
    data.write_text("\n".join(lines[:4] + ['bad-row,"",7']) + "\n")  # 3 problems and a row without text
    with Predictor(solver=solver, total_s=12, problems=3, out_dir=tmp_path / "log", warm_up=False) as predict:
        report = LocalGateway(data, modulus=1000).run(predict, out_dir=tmp_path / "gateway")
        assert isinstance(predict.predict("plain", "What is 2 + 2?"), int)  # plain values work too
    assert report.problems == 3 and report.invalid == 0 and report.graded == 3
    assert report.skipped_rows == ["row 5: empty problem text"]
    assert report.correct >= 2 and report.score == report.correct / 3
    assert sum(report.call_s) <= 12 + MARGIN_S
    sub = (tmp_path / "gateway" / "submission.csv").read_text().splitlines()
    assert sub[0] == "id,answer" and len(sub) == 4
    assert json.loads((tmp_path / "log" / "summary.json").read_text())["problems"] == 4
    assert solver.coordinator is not None  # the predictor did not stop an engine it was lent


def test_an_engine_crash_costs_one_problem_and_the_run_goes_on(solver, tmp_path):
    problems = heldout(5)
    backend = SolverBackend(solver, 1000)
    engine = solver.engines[0]

    def solve(problem, plan):
        if problem.id == problems[1].id:  # the engine actor dies 0.3 s into this problem
            import ray

            threading.Timer(0.3, lambda: ray.kill(engine, no_restart=False)).start()
        return backend(problem, plan)

    from raysolve.competition.loop import Competition, CompetitionLog

    total = 40.0
    log = CompetitionLog(tmp_path)
    run = Competition(FixedBudget(total, len(problems), samples=8), solve, len(problems), total, modulus=1000,
                      log=log)
    rows = run.run(problems)
    log.close()
    assert len(rows) == 5 and all(isinstance(r.answer, int) for r in rows)
    assert run.elapsed_s() <= total
    # The crashed problem's samples in flight were retried once the actor was back (it took
    # seconds to reload the model), and it was answered within its deadline ...
    assert solver.stats()["coordinator"]["samples_retried"] >= 1
    assert rows[1].used_s > max(rows[0].used_s, rows[2].used_s) and rows[1].used_s <= rows[1].deadline_s + 0.5
    # ... and the later problems were solved by vote again.
    assert [r.answer_source for r in rows[2:]] == ["vote"] * 3


def test_aimo_command(tmp_path):
    data = tmp_path / "set.csv"
    data.write_text("\n".join(HELDOUT.read_text().splitlines()[:4] + ["no-text,,5"]) + "\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "raysolve.cli", "aimo", str(data), "--out", str(out),
                           "--time-budget", "40", "--samples", "8", "--stragglers", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped row 5: empty problem text" in proc.stderr
    assert "score " in proc.stdout and "submission.csv" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 3 and summary["within_budget"] and summary["startup_counts"]
    assert summary["startup_s"] > 0 and summary["elapsed_s"] > summary["startup_s"]
    assert all(r["stop_policy"].endswith("|stragglers:2") for r in rows_of(out))
    # Rerun: everything is answered already; the time spent is charged, nothing is solved again.
    proc = subprocess.run([sys.executable, "-m", "raysolve.cli", "aimo", str(data), "--out", str(out),
                           "--time-budget", "40"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "(3 answered earlier)" in proc.stdout
    assert len(rows_of(out)) == 3

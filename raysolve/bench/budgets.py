"""Competition-mode budget policies side by side (``jobs/bench_aimo.py``): the conditions
compared and one run of a condition on a started solver, as a table row."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from raysolve.competition.aimo import run_offline
from raysolve.competition.budget import AdaptiveBudget, FixedBudget
from raysolve.io.problems import Problem
from raysolve.runtime.config import SolverConfig

STOP = "unbeatable|latency"
"""The early-stop rule of every condition that stops early."""


def conditions(total: float, n: int, samples: int) -> dict[str, Any]:
    """The budget policies compared at one total budget: ``total`` seconds for ``n`` problems,
    at most ``samples`` samples a problem."""
    return {
        "adaptive": AdaptiveBudget(total, n, max_samples=samples, stop_policy=STOP),
        "adaptive+stragglers": AdaptiveBudget(total, n, max_samples=samples, stop_policy=STOP, stragglers=2),
        "fixed": FixedBudget(total, n, samples=samples, stop_policy=STOP),
        "all samples": FixedBudget(total, n, samples=samples, stop_policy="full"),
    }


def unbounded(n: int, samples: int) -> Any:
    """The reference without a budget: ``samples`` samples a problem and no early stop."""
    return FixedBudget(1e9, n, samples=samples, stop_policy="full")


def run_condition(solver: Any, cfg: SolverConfig, problems: list[Problem], name: str, per_problem: float | None,
                  policy: Any, modulus: int, runs: Path) -> dict[str, Any]:
    """``problems`` through ``run_offline`` on the started ``solver`` with ``per_problem`` × their
    count seconds (None: no budget), the per-problem log under ``runs``; the table row."""
    total = per_problem * len(problems) if per_problem else 1e9
    t0 = time.monotonic()
    summary = run_offline(problems, cfg, total_s=total, policy=policy, modulus=modulus,
                          out_dir=runs / f"{name.replace(' ', '-')}-{per_problem or 'unbounded'}",
                          solver=solver, warm_up=False, echo=False)
    wall = time.monotonic() - t0
    return row(name, per_problem, total, summary, wall)


def row(name: str, per_problem: float | None, total: float, summary: dict[str, Any], wall: float) -> dict[str, Any]:
    """A table row from ``run_offline``'s summary."""
    return {
        "condition": name, "per_problem_s": per_problem, "budget_s": round(total, 1) if per_problem else None,
        "score": summary["score"], "correct": summary["correct"], "problems": summary["problems"],
        "time_used_s": round(summary["elapsed_s"], 1), "wall_s": round(wall, 1),
        "within_budget": summary["within_budget"] if per_problem else None,
        "votes": summary["answer_sources"].get("vote", 0),
        "partial": summary["answer_sources"].get("partial", 0),
        "fallback": summary["answer_sources"].get("fallback", 0),
        "samples_launched": summary["samples"]["launched"],
        "samples_finished": summary["samples"]["finished"],
        "tokens": summary["tokens"], "policy": summary["policy"],
    }

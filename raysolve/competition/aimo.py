"""AIMO-style offline runs on the actors: ``raysolve aimo``, ``jobs/aimo_offline.py`` and ``Predictor``.

``SolverBackend`` is the solve function ``raysolve.competition.loop.Competition`` calls: it
launches a problem's samples together (latency mode, ahead of any batch work) with the
plan's sample count and stop policy, and asks the coordinator to settle at the plan's
deadline minus the time cancelling usually takes. A hard timeout behind that cancels the
call if the coordinator does not answer, so one stuck problem cannot eat the budget.

``Predictor`` is the notebook object: ``predict(id, problem) -> int`` with the engines
started once, as the Kaggle inference server calls it.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from pathlib import Path
from typing import Any

import ray

from raysolve.core.scheduling import SolveOptions
from raysolve.competition.budget import BudgetPolicy, ProblemPlan, make_policy
from raysolve.competition.loop import Competition, CompetitionLog
from raysolve.runtime.config import SolverConfig
from raysolve.io.problems import Problem
from raysolve.core.records import ProblemResult
from raysolve.runtime.solver import Solver


class SolverBackend:
    """Solves one problem on a running ``Solver`` under a ``ProblemPlan``."""

    def __init__(self, solver: Solver, modulus: int | None, grace_s: float = 2.0, window: int = 8) -> None:
        self.solver = solver
        self.modulus = modulus
        self.grace_s = grace_s
        """Beyond the deadline, how long to wait for the coordinator before giving up on it."""
        self._drains: deque[float] = deque(maxlen=window)

    def drain_s(self) -> float:
        """Time from the coordinator's time-limit settle to the result here (cancelling the
        samples, the reply): the median of the recent ones, 50 ms before any were seen."""
        return statistics.median(self._drains) if self._drains else 0.05

    def __call__(self, problem: Problem, plan: ProblemPlan) -> ProblemResult:
        options = SolveOptions(
            mode="launch-all",
            num_samples=plan.num_samples,
            stop_policy=plan.stop_policy,
            time_limit_s=plan.deadline_s - min(self.drain_s(), plan.deadline_s / 4),
            modulus=self.modulus,
        )
        started = time.monotonic()
        ref = self.solver.coordinator.solve.remote(problem, options)
        try:
            result: ProblemResult = ray.get(ref, timeout=plan.deadline_s + self.grace_s)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref)  # the coordinator cancels the problem's samples
            raise TimeoutError(f"no answer {plan.deadline_s + self.grace_s:.1f} s after the start") from None
        if result.settle_reason == "time_limit":  # how long after the limit the answer came
            self._drains.append(max(0.0, time.monotonic() - started - options.time_limit_s))
        return result


class Predictor:
    """``predict(id, problem) -> int`` for a notebook or the local gateway.

    The engines start once, when the predictor is made (or reuse ``solver``). The budget
    counts from that moment, as the competition's does from the notebook's start: the
    engine start-up is part of it. ``problems`` is how many problems the server will send
    (the budget policy spreads the time over them).
    """

    def __init__(
        self,
        config: SolverConfig | None = None,
        *,
        total_s: float,
        problems: int = 50,
        policy: str | BudgetPolicy = "adaptive",
        samples: int = 16,
        min_samples: int = 4,
        stop_policy: str = "unbeatable|latency",
        stragglers: int = 0,
        modulus: int | None = 1000,
        fallback_answer: int = 0,
        out_dir: str | Path | None = None,
        solver: Solver | None = None,
        address: str | None = None,
        warm_up: bool = True,
    ) -> None:
        started = time.monotonic()
        self._owns_solver = solver is None
        self.solver = solver or Solver(config or SolverConfig(), address=address).start()
        if warm_up:
            self.solver.warm_up()
        budget = policy if not isinstance(policy, str) else make_policy(
            policy, total_s, problems, samples=samples, min_samples=min_samples,
            stop_policy=stop_policy, stragglers=stragglers)
        self.log = CompetitionLog(out_dir, resume=False) if out_dir is not None else None
        self.competition = Competition(
            policy=budget, solve=SolverBackend(self.solver, modulus), problems_total=problems,
            total_s=total_s, modulus=modulus, fallback_answer=fallback_answer,
            started_at=started, log=self.log,
        )

    def predict(self, id_: Any, problem: Any) -> Any:
        """The answer to one problem. Plain values give an ``int``; one-row Series (pandas or
        polars, as the Kaggle server passes them) give a one-row pandas DataFrame ``id, answer``."""
        as_frame = _is_series(id_) or _is_series(problem)
        pid, text = str(_scalar(id_)), str(_scalar(problem))
        row = self.competition.answer(Problem(pid, text))
        if as_frame:
            import pandas as pd

            return pd.DataFrame({"id": [pid], "answer": [row.answer]})
        return row.answer

    __call__ = predict

    def summary(self) -> dict[str, Any]:
        return self.competition.summary()

    def close(self) -> None:
        """Write the summary files (with ``out_dir``) and stop the engines this predictor started."""
        if self.log is not None:
            self.log.finish(self.summary())
            self.log.close()
        if self._owns_solver:
            self.solver.shutdown()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_series(value: Any) -> bool:
    return hasattr(value, "to_list") or hasattr(value, "tolist") and hasattr(value, "iloc")


def _scalar(value: Any) -> Any:
    """The single value of a one-row Series (pandas: ``iloc``; polars: ``item``), else the value."""
    if _is_series(value):
        if len(value) != 1:
            raise ValueError(f"expected one row, got {len(value)}")
        return value.iloc[0] if hasattr(value, "iloc") else value.item()
    return value


def run_offline(
    problems: list[Problem],
    config: SolverConfig,
    *,
    total_s: float,
    policy: BudgetPolicy,
    out_dir: str | Path,
    modulus: int | None = 1000,
    fallback_answer: int = 0,
    resume: bool = True,
    startup_counts: bool = True,
    address: str | None = None,
    solver: Solver | None = None,
    warm_up: bool = True,
    echo: bool = True,
) -> dict[str, Any]:
    """Answer ``problems`` in order within ``total_s`` (engine start-up and warm-up included
    unless ``startup_counts`` is off), writing the log under ``out_dir``; returns the summary."""
    boot = time.monotonic()
    log = CompetitionLog(out_dir, resume=resume)
    todo = [p for p in problems if p.id not in log.done_ids]
    owned = solver is None
    try:
        if todo:  # nothing to start for a finished run
            solver = solver or Solver(config, address=address).start()
            if warm_up:
                solver.warm_up()
        startup_s = time.monotonic() - boot
        competition = Competition(
            policy=policy, solve=SolverBackend(solver, modulus), problems_total=len(problems), total_s=total_s,
            modulus=modulus, fallback_answer=fallback_answer, started_at=boot if startup_counts else None,
            spent_before_s=log.spent_s, log=log,
        )
        if echo:
            print(f"raysolve aimo: {len(problems)} problems ({len(log.previous)} answered earlier), budget "
                  f"{total_s:.0f} s, {policy.name}; engines up in {startup_s:.1f} s", flush=True)
        for problem in todo:
            row = competition.answer(problem)
            if echo:
                mark = {True: "✓", False: "✗", None: " "}[row.correct]
                print(f"{mark} {row.id}: {row.answer} ({row.answer_source}, {row.settle_reason}) "
                      f"{row.used_s:.1f}/{row.deadline_s:.1f} s, {row.samples_finished}/{row.samples_launched} "
                      f"samples; {row.time_left_s:.0f} s left" + (f"; {row.error}" if row.error else ""), flush=True)
        summary = competition.summary()
        log.finish(summary, {"startup_s": round(startup_s, 2), "startup_counts": startup_counts,
                             "modulus": modulus, "fallback_answer": fallback_answer})
        return summary
    finally:
        log.close()
        if owned and solver is not None:
            solver.shutdown()

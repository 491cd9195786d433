"""Engine comparison (``jobs/bench_engines.py``): one engine config measured on a list of
problems in two phases, on the same solver.

- **one problem at a time** (all samples launched together, full vote, every sample runs to
  its end): wall time per problem, time to first token, per-sample tokens/s (generated tokens
  over the sample's engine time, code runs excluded);
- **batch** (every problem queued, ``pool`` samples in flight per problem): total generation
  time and batch tokens/s, as a dataset job would see them;

plus accuracy (majority vote, both phases). Percentiles: ``raysolve.core.timing``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from raysolve.core.scheduling import SolveOptions
from raysolve.core.timing import percentile
from raysolve.io.problems import Problem
from raysolve.runtime.config import SolverConfig


def measure(name: str, cfg: SolverConfig, problems: list[Problem], samples: int, pool: int) -> dict[str, Any]:
    """Start ``cfg``'s solver, warm it up, run both phases; the row of the comparison table."""
    from raysolve.runtime.solver import Solver

    boot = time.perf_counter()
    with Solver(cfg) as solver:
        startup = time.perf_counter() - boot
        solver.warm_up(samples=samples)
        one = SolveOptions(mode="launch-all", num_samples=samples, stop_policy="full")
        t0 = time.perf_counter()
        single = []
        for p in problems:
            started = time.perf_counter()
            result = solver.solve(p, one)
            single.append((result, time.perf_counter() - started))
        single_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        batch = list(solver.solve_iter(problems, SolveOptions(mode="pool", num_samples=samples, pool_size=pool,
                                                              stop_policy="full")))
        batch_s = time.perf_counter() - t0
        engines = solver.stats()["engines"]
    return {"engine": name, "backend": cfg.engine.backend, "startup_s": round(startup, 1),
            **summarize(single, single_s, batch, batch_s, samples), "engine_stats": engines}


def summarize(single: list[tuple[Any, float]], single_s: float, batch: list[Any], batch_s: float,
              samples: int) -> dict[str, Any]:
    """The table's numbers from the one-at-a-time phase (each problem's result and wall time,
    ``single_s`` in all) and the batch phase (results, ``batch_s``)."""
    records = [s for r, _ in single for s in r.samples]
    ttft = [s.first_token_s for s in records if s.first_token_s is not None]
    speeds = [s.generated_tokens / (s.wall_s - s.tool_s) for s in records
              if s.generated_tokens and s.wall_s - s.tool_s > 0]
    graded = [r for r, _ in single if r.correct is not None]
    batch_tokens = sum(r.generated_tokens for r in batch)
    return {
        "problems": len(single),
        "samples": samples,
        "per_problem_s": round(statistics.mean(w for _, w in single), 3),
        "per_problem_p95_s": round(percentile([w for _, w in single], 0.95) or 0, 3),
        "ttft_p50_ms": round(1000 * (percentile(ttft, 0.5) or 0), 1),
        "ttft_p95_ms": round(1000 * (percentile(ttft, 0.95) or 0), 1),
        "per_sample_tok_s": round(statistics.mean(speeds), 1) if speeds else 0.0,
        "one_at_a_time_tok_s": round(sum(s.generated_tokens for s in records) / single_s, 1),
        "generation_s": round(batch_s, 2),
        "batch_tok_s": round(batch_tokens / batch_s, 1),
        "accuracy": round(sum(bool(r.correct) for r in graded) / len(graded), 4) if graded else None,
        "batch_accuracy": round(sum(bool(r.correct) for r in batch if r.correct is not None) /
                                max(1, sum(r.correct is not None for r in batch)), 4),
        "generated_tokens": sum(s.generated_tokens for s in records),
        "code_calls": sum(s.code_calls for s in records),
        "sample_errors": sum(s.finish_reason == "error" for s in records),
    }

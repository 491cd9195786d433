"""Cost of a stop decision per policy (``jobs/bench_policies.py``), on the vote states a real
run meets: every prefix of every problem's votes in sample traces, in a few random orders,
with the budget = the problem's sample count (what the coordinator asks after each sample)."""

from __future__ import annotations

import random
import time
from typing import Any

from raysolve.core.replay import load_traces
from raysolve.core.voting import VoteState

SPECS = ["full", "unbeatable", "first-k:4", "runner-up", "esc:5", "stragglers:2", "beta:0.95",
         "dirichlet:0.95", "predictive:0.99", "default", "unbeatable|predictive:0.99"]
"""The policies measured by default."""


def states(path: str, orders: int, seed: int) -> list[VoteState]:
    """Every prefix of every problem's votes in the traces at ``path``, in ``orders`` random orders."""
    rng = random.Random(seed)
    out = []
    for trace in load_traces(path):
        n = len(trace.samples)
        for _ in range(orders):
            answers = [s.answer for s in rng.sample(trace.samples, n)]
            counts: dict[str, int] = {}
            for i, a in enumerate(answers, start=1):
                if a is not None:
                    counts[a] = counts.get(a, 0) + 1
                out.append(VoteState(dict(counts), i, 0, n - i, 0.0, answers[:i]))
    return out


def decision_us(policy: Any, pool: list[VoteState], warm_passes: int = 3) -> tuple[float, float]:
    """Microseconds per ``policy.decide`` over ``pool``: the first pass (cold caches) and the best
    of ``warm_passes`` later passes."""
    t0 = time.perf_counter()
    for s in pool:
        policy.decide(s)
    cold = (time.perf_counter() - t0) / len(pool) * 1e6
    warm = []
    for _ in range(warm_passes):
        t0 = time.perf_counter()
        for s in pool:
            policy.decide(s)
        warm.append((time.perf_counter() - t0) / len(pool) * 1e6)
    return cold, min(warm)

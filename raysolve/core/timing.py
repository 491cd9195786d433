"""Latency percentiles (one definition for every stat and benchmark in the project) and an
on/off profiler for actors.

Nearest rank on the sorted values: the ``q`` percentile is the value at index
``min(n - 1, int(q * n))``. Pure (no Ray), so benchmarks and actors share it.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from typing import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` (0–1) percentile of ``values``, or None if there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_summary_ms(values_s: Iterable[float], digits: int | None = None) -> dict[str, float]:
    """``n``, ``p50``, ``p95`` and ``max`` in milliseconds of latencies given in seconds ({} if none);
    with ``digits``, the milliseconds rounded to that many decimals (as benchmark reports show them)."""
    ordered = sorted(values_s)
    if not ordered:
        return {}
    out = {"n": len(ordered), "p50": 1000 * percentile(ordered, 0.5), "p95": 1000 * percentile(ordered, 0.95),
           "max": 1000 * ordered[-1]}
    if digits is not None:
        out.update({k: round(v, digits) for k, v in out.items() if k != "n"})
    return out


class Profiler:
    """cProfile on/off inside an actor; ``stop`` gives the top functions by own and cumulative time."""

    def __init__(self) -> None:
        self._profile: cProfile.Profile | None = None

    def set(self, on: bool) -> str | None:
        if on:
            self._profile = cProfile.Profile()
            self._profile.enable()
            return None
        if self._profile is None:
            return None
        self._profile.disable()
        buf = io.StringIO()
        stats = pstats.Stats(self._profile, stream=buf)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)
        self._profile = None
        return buf.getvalue()

"""Latency percentiles, one definition for every stat and benchmark in the project.

Nearest rank on the sorted values: the ``q`` percentile is the value at index
``min(n - 1, int(q * n))``. Pure (no Ray), so benchmarks and actors share it.
"""

from __future__ import annotations

from typing import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` (0–1) percentile of ``values``, or None if there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_summary_ms(values_s: Iterable[float]) -> dict[str, float]:
    """``n``, ``p50``, ``p95`` and ``max`` in milliseconds of latencies given in seconds ({} if none)."""
    ordered = sorted(values_s)
    if not ordered:
        return {}
    return {"n": len(ordered), "p50": 1000 * percentile(ordered, 0.5), "p95": 1000 * percentile(ordered, 0.95),
            "max": 1000 * ordered[-1]}

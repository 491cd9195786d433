"""Per-problem scheduling as pure code (no Ray, no timers, an injected clock)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SolveOptions:
    """Per-problem overrides of the run's configuration (Serve requests, AIMO budgets)."""

    num_samples: int | None = None
    pool_size: int | None = None
    mode: str | None = None
    stop_policy: str | None = None
    max_tokens: int | None = None
    max_code_calls: int | None = None
    temperature: float | None = None
    modulus: int | None = None
    time_limit_s: float | None = None
    """Settle with the votes so far (reason ``time_limit``) this long after submission."""

    @classmethod
    def latency(cls, **overrides: object) -> "SolveOptions":
        """The latency-first default (Serve requests, single problems): waves of 8 samples and
        ``beta:0.99:min=4`` (see ``results/replay-tiny-32``: 68 % fewer tokens than the full vote
        at the same accuracy, settling about when launch-all's full vote would)."""
        return cls(**{"mode": "wave", "pool_size": 8, "stop_policy": "latency", **overrides})  # type: ignore[arg-type]

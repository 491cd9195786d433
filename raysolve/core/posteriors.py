"""The probabilities behind the Bayesian stop rules: pure math, no Ray, no I/O.

Both model the answers of a problem's samples as draws from an unknown categorical
distribution with a uniform Dirichlet prior. Results are cached by the vote counts
they depend on, because thousands of problems meet the same few count patterns.
"""

from __future__ import annotations

import math
from functools import lru_cache

__all__ = ["leader_is_mode", "leader_wins_at_budget"]


def _log_beta_binomial(k: int, n: int, a: float, b: float) -> float:
    """log P(K = k) for K ~ BetaBinomial(n, a, b)."""
    return (
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        + math.lgamma(k + a) + math.lgamma(n - k + b) - math.lgamma(n + a + b)
        + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    )


@lru_cache(maxsize=1 << 16)
def leader_wins_at_budget(v1: int, v2: int, others: int, remaining: int) -> float:
    """P(the leader still has strictly more votes than the runner-up once ``remaining``
    more samples have voted), under the Pólya urn (Dirichlet-multinomial predictive).

    Three categories: the leader (``v1`` votes), the runner-up (``v2``) and everything
    else (``others``: third answers and finished samples without an answer, plus the mass
    of answers not seen yet), each with prior weight 1. By the aggregation property of the
    Dirichlet-multinomial this is exact for the leader-vs-runner-up race: the draws that go
    to the top two, M ~ BetaBinomial(r, v1+v2+2, others+1), and the leader's share of them,
    K | M ~ BetaBinomial(M, v1+1, v2+1). It ignores a third answer overtaking both (the only
    approximation). A tie at the end counts as a loss. Equals 1 exactly when
    ``v1 > v2 + remaining`` (the unbeatable lead), and tends to the posterior that the
    leader is the mode as ``remaining`` grows. O(remaining²) once per count pattern.
    """
    if remaining <= 0:
        return 1.0 if v1 > v2 else 0.0
    if v1 > v2 + remaining:
        return 1.0
    a1, a2, ao = v1 + 1.0, v2 + 1.0, others + 1.0
    total = 0.0
    for m in range(remaining + 1):
        p_m = math.exp(_log_beta_binomial(m, remaining, a1 + a2, ao))
        if p_m < 1e-15:
            continue
        # leader wins iff v1 + k > v2 + m - k  <=>  k > (v2 - v1 + m) / 2
        k_min = max(0, (v2 - v1 + m) // 2 + 1)
        if k_min > m:
            continue
        tail = sum(math.exp(_log_beta_binomial(k, m, a1, a2)) for k in range(k_min, m + 1))
        total += p_m * tail
    return min(1.0, total)


@lru_cache(maxsize=1 << 14)
def leader_is_mode(counts: tuple[int, ...], draws: int = 4000, seed: int = 0) -> float:
    """P(the answer with most votes has the largest probability) under Dirichlet(counts + 1),
    with one extra category (prior weight 1) for answers not seen yet. Monte Carlo with a
    fixed seed, so a decision is a pure function of the counts; ``counts`` sorted descending."""
    import numpy as np

    if not counts:
        return 0.0
    alpha = np.asarray([*counts, 0], dtype=float) + 1.0
    samples = np.random.default_rng(seed).dirichlet(alpha, size=draws)
    return float(np.mean(samples.argmax(axis=1) == 0))

"""The hf backend inside engine actors on a local Ray instance: a settled vote cancels
real continuous-batching requests, which stop decoding and release their cache blocks."""

import time

from raysolve.core.scheduling import SolveOptions
from raysolve.runtime.config import SolverConfig
from raysolve.io.problems import Problem
from raysolve.runtime.solver import Solver


def wait_cache_released(ray, engine, timeout_s: float = 60.0) -> dict:
    """The engine's cache stats once no request holds blocks (the manager frees a cancelled
    request's blocks at its next step, not within ``cancel``); the deadline is only a safety net."""
    deadline = time.monotonic() + timeout_s
    while True:
        cache = ray.get(engine.cache_stats.remote())
        if cache["requests_holding_blocks"] == 0 or time.monotonic() > deadline:
            return cache
        time.sleep(0.02)


def test_settling_cancels_hf_requests_and_frees_their_cache(ray_local):
    cfg = SolverConfig()
    cfg.engine.options = {"model": "random-tiny"}  # long, varied samples: most are still running at the stop
    cfg.budget.max_tokens = 600
    cfg.budget.max_code_calls = 0
    with Solver(cfg) as solver:
        # max-samples:1 settles as soon as the first of 6 samples finishes. Run to the end, these
        # samples end after 90 to 522 tokens, so some are certainly still running at the settle;
        # how many is a race (a slow machine may let a second one finish first).
        result = solver.solve(Problem("p", "How many primes are below 100?", answer="25"),
                              SolveOptions(mode="launch-all", num_samples=6, stop_policy="max-samples:1"))
        assert result.settle_reason == "max-samples:1" and result.samples_finished >= 1
        cancelled = [s for s in result.samples if s.cancelled]
        assert len(cancelled) == 6 - result.samples_finished and len(cancelled) >= 1
        assert all(s.generated_tokens < 600 for s in cancelled)
        engine = solver.engines[0]
        # A sample's result comes back after its engine stream ended: nothing runs any more.
        stats = ray_local.get(engine.stats.remote())
        assert stats["requests_cancelled"] >= len(cancelled) and stats["active"] == 0 and stats["running"] == 0
        cache = wait_cache_released(ray_local, engine)
        assert cache["requests_holding_blocks"] == 0  # decoding stopped: no request is left in the cache
        assert cache["blocks_free"] + cache["blocks_cached"] == cache["blocks_total"]
        assert ray_local.get(engine.stats.remote())["tokens_generated"] == stats["tokens_generated"]

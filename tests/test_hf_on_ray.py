"""The hf backend inside engine actors on a local Ray instance: a settled vote cancels
real continuous-batching requests, which stop decoding and release their cache blocks."""

import time

from raysolve.core.scheduling import SolveOptions
from raysolve.runtime.config import SolverConfig
from raysolve.io.problems import Problem
from raysolve.runtime.solver import Solver


def test_settling_cancels_hf_requests_and_frees_their_cache(ray_local):
    cfg = SolverConfig()
    cfg.engine.options = {"model": "random-tiny"}  # long, varied samples: most are still running at the stop
    cfg.budget.max_tokens = 600
    cfg.budget.max_code_calls = 0
    with Solver(cfg) as solver:
        # max-samples:1 settles as soon as the first of 6 samples finishes
        result = solver.solve(Problem("p", "How many primes are below 100?", answer="25"),
                              SolveOptions(mode="launch-all", num_samples=6, stop_policy="max-samples:1"))
        assert result.settle_reason == "max-samples:1" and result.samples_finished == 1
        cancelled = [s for s in result.samples if s.cancelled]
        assert len(cancelled) == 5
        assert all(s.generated_tokens < 600 for s in cancelled)
        engine = solver.engines[0]
        stats = ray_local.get(engine.stats.remote())
        assert stats["requests_cancelled"] >= 5 and stats["active"] == 0 and stats["running"] == 0
        generated = stats["tokens_generated"]
        time.sleep(0.3)
        assert ray_local.get(engine.stats.remote())["tokens_generated"] == generated  # decoding stopped
        cache = ray_local.get(engine.cache_stats.remote())
        assert cache["requests_holding_blocks"] == 0
        assert cache["blocks_free"] + cache["blocks_cached"] == cache["blocks_total"]

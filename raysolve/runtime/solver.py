"""`Solver`: the one builder that turns a `SolverConfig` into running actors.

The CLI, the dataset job, the Serve app and the AIMO runner all go through it:
sandbox actors, then the engine actors' resources (placement groups for whole
GPUs), the engine actors (each loads its engine once), then the coordinator. ``solve_iter`` streams problems in with bounded look-ahead and
yields results as they finish, so a large data set never sits in memory.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Iterable, Iterator

import ray

from raysolve.core.scheduling import SolveOptions
from raysolve.runtime.actors import place_engine_actors, release, spawn_coordinator, spawn_engine_actor
from raysolve.runtime.config import SolverConfig
from raysolve.io.problems import Problem
from raysolve.core.records import ProblemResult
from raysolve.sandbox import sandbox_pool_actor


class Solver:
    def __init__(self, config: SolverConfig, address: str | None = None) -> None:
        self.config = config
        self.address = address
        self.sandboxes: list[Any] = []
        self.engines: list[Any] = []
        self.placements: list[Any] = []
        self.coordinator: Any = None
        self.depths: list[int] = []
        self._owns_ray = False

    def start(self) -> "Solver":
        """Start Ray if needed (local by default) and the actors; waits until engines are loaded."""
        if not ray.is_initialized():
            ray.init(
                address=self.address,
                include_dashboard=False,
                log_to_driver=os.environ.get("RAYSOLVE_RAY_LOGS", "0") == "1",
                configure_logging=False,
            )
            self._owns_ray = True
        try:
            cfg = self.config
            run = uuid.uuid4().hex[:8]
            names = [f"raysolve-sandbox-{run}-{i}" for i in range(cfg.num_sandbox_actors)]
            extra = {"resources": dict(cfg.sandbox_resources)} if cfg.sandbox_resources else {}
            self.sandboxes = [sandbox_pool_actor(cfg.sandbox, name=name, **extra) for name in names]
            if cfg.sandbox.require_full_isolation:
                self._require_isolation()
            self.placements = place_engine_actors(cfg.engine, name_prefix=f"raysolve-engine-{run}")
            self.engines = [
                spawn_engine_actor(i, cfg, names[i % len(names)], placement)
                for i, placement in enumerate(self.placements)
            ]
            self.depths = ray.get([engine.ready.remote() for engine in self.engines])
            self.coordinator = spawn_coordinator(cfg, self.engines, self.depths)
        except BaseException:
            self.shutdown()  # no sandbox actors or placement groups left behind
            raise
        return self

    def _require_isolation(self) -> None:
        """``sandbox.require_full_isolation``: refuse to start unless every sandbox actor's workers
        run with every OS layer (``SandboxPool.isolation``)."""
        for report in ray.get([s.isolation.remote() for s in self.sandboxes]):
            if not report.get("complete"):
                missing = report.get("missing") or report.get("error") or "unknown"
                raise RuntimeError(f"sandbox isolation incomplete on a node ({missing}) and "
                                   "sandbox.require_full_isolation is set")

    def solve(self, problem: Problem, options: SolveOptions | None = None) -> ProblemResult:
        """Solve one problem, latency first (it jumps the batch queue)."""
        return ray.get(self.coordinator.solve.remote(problem, options))

    def warm_up(self, samples: int = 8, time_limit_s: float = 60.0, max_tokens: int | None = None) -> float:
        """Start every sandbox actor's workers and solve one short problem, so that the first real
        one does not pay first-call costs (about 2 s on the tiny CPU engine: kernel set-up, the
        sandbox's first sessions).
        Returns the seconds it took."""
        started = time.perf_counter()
        ray.get([sandbox.warm_up.remote() for sandbox in self.sandboxes])  # the model may write no code
        problem = Problem("raysolve-warm-up", "Compute 17 * 23 + 5 with Python.")
        self.solve(problem, SolveOptions(mode="launch-all", num_samples=samples, stop_policy="full",
                                         time_limit_s=time_limit_s, max_tokens=max_tokens))
        return time.perf_counter() - started

    def solve_iter(
        self,
        problems: Iterable[Problem],
        options: SolveOptions | None = None,
        lookahead: int | None = None,
    ) -> Iterator[ProblemResult]:
        """Yield results in completion order; at most ``lookahead`` problems are submitted
        but unfinished at once (default: enough to keep every engine busy twice over)."""
        lookahead = lookahead or self._default_lookahead()
        it = iter(problems)
        pending = 0
        exhausted = False
        while True:
            batch: list[Problem] = []
            while not exhausted and pending + len(batch) < lookahead:
                nxt = next(it, None)
                if nxt is None:
                    exhausted = True
                else:
                    batch.append(nxt)
            if batch:
                ray.get(self.coordinator.submit.remote(batch, options))
                pending += len(batch)
            if pending == 0 and exhausted:
                return
            for result in ray.get(self.coordinator.poll.remote(timeout_s=1.0)):
                pending -= 1
                yield result

    def engines_ready(self, timeout_s: float = 60.0) -> int:
        """Wait (up to ``timeout_s``) for engine actors that are restarting, so that they have
        closed their earlier incarnation's sandbox sessions; returns how many answered."""
        refs = [e.ready.remote() for e in self.engines]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        answered = 0
        for ref in ready:
            try:
                ray.get(ref)
                answered += 1
            except Exception:  # given up for good
                pass
        return answered

    def stats(self) -> dict[str, Any]:
        """The coordinator's counters, each engine actor's and each sandbox actor's
        (``{"index": i, "unavailable": why}`` for one that is restarting or gone)."""
        return {"coordinator": ray.get(self.coordinator.stats.remote()),
                "engines": _stats_of(self.engines), "sandboxes": _stats_of(self.sandboxes)}

    def shutdown(self) -> None:
        """Close the engines (their worker processes free the GPUs), then kill the actors."""
        if self.engines:
            try:
                ray.get([e.close.remote() for e in self.engines], timeout=60)
            except Exception:  # a dead or hung engine actor is killed below anyway
                pass
        for handle in [self.coordinator, *self.engines, *self.sandboxes]:
            if handle is not None:
                ray.kill(handle)
        release(p.group for p in self.placements)
        self.coordinator, self.engines, self.sandboxes, self.placements = None, [], [], []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    def __enter__(self) -> "Solver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _default_lookahead(self) -> int:
        sched = self.config.scheduling
        per_problem = sched.num_samples if sched.mode == "launch-all" else sched.pool_size
        return max(8, 2 * sum(self.depths) // max(1, per_problem))


def _stats_of(actors: list[Any], timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """``stats()`` of each actor; one that does not answer (restarting after a failure, or
    given up) is reported as unavailable instead of failing the call."""
    refs = [a.stats.remote() for a in actors]
    out = []
    for i, ref in enumerate(refs):
        try:
            out.append(ray.get(ref, timeout=timeout_s))
        except Exception as exc:
            out.append({"index": i, "unavailable": type(exc).__name__})
    return out

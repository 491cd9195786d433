"""The Ray layer: the only scheduling code that knows about Ray.

``place_engine_actors`` reserves the engine actors' CPUs/GPUs (placement groups
for whole GPUs); ``spawn_engine_actor`` and ``spawn_coordinator`` wrap the plain
classes with ``ray.remote`` and those options.
"""

from __future__ import annotations

from typing import Any

import ray

from raysolve.runtime.coordinator import Coordinator
from raysolve.runtime.engine_actor import EngineActor
from raysolve.runtime.placement import ActorPlacement, PlacementError, place_engine_actors, release
from raysolve.runtime.config import SolverConfig

__all__ = [
    "ActorPlacement",
    "Coordinator",
    "EngineActor",
    "PlacementError",
    "place_engine_actors",
    "release",
    "spawn_coordinator",
    "spawn_engine_actor",
]

_MAX_CONCURRENCY = 10_000
"""Async actor calls in flight: samples plus cancels; the engine's own depth is the real cap."""


def spawn_engine_actor(index: int, config: SolverConfig, sandbox_actor: str, placement: ActorPlacement) -> Any:
    """An engine actor with the resources ``placement`` reserved for it; restarted if its process dies.

    ``sandbox_actor`` is the name of the ``SandboxPool`` actor its samples use."""
    cls = ray.remote(EngineActor)
    return cls.options(
        **placement.options,
        max_restarts=config.engine.max_restarts,
        max_task_retries=0,  # the coordinator retries samples itself and counts attempts
        max_concurrency=_MAX_CONCURRENCY,
        name=None,
    ).remote(index, config, sandbox_actor)


def spawn_coordinator(config: SolverConfig, engines: list[Any], depths: list[int]) -> Any:
    """The coordinator reserves no CPU: its work is O(samples) and mostly waiting."""
    cls = ray.remote(Coordinator)
    return cls.options(num_cpus=0, max_concurrency=_MAX_CONCURRENCY).remote(config, engines, depths)

"""Where engine actors run: a CPU slot, a share of a GPU, or n whole GPUs of one node.

Written once for every backend that holds GPUs (``vllm`` now, ``trtllm`` next).
An engine actor that needs n >= 1 whole GPUs (``EngineConfig.num_gpus``; n is
the tensor-parallel size) gets a placement group of its own with one bundle
``{"GPU": n, "CPU": c}`` and the STRICT_PACK strategy, and takes the whole
bundle. Ray then sets the actor's ``CUDA_VISIBLE_DEVICES`` to exactly those n
GPUs, and the worker processes the backend starts (vLLM's multiprocessing
executor, TensorRT-LLM's MPI ranks) inherit it, so they land on the actor's
GPUs and no others: tp=1 gives one actor per GPU, tp=2 one actor per GPU pair.
The group is reserved before the actor starts, so a restarted actor comes
back onto the same GPUs, and N actors fill a cluster of GPU-pair nodes.

A backend whose workers are Ray actors of their own (TensorRT-LLM's Ray
orchestrator) uses ``gpu_bundles: per-gpu`` instead: n bundles ``{"GPU": 1,
"CPU": 1}`` plus one ``{"CPU": c + child_cpus}`` for the engine actor, all
STRICT_PACK on one node. The actor takes the last bundle and no GPU, and
captures the actors it starts into the group; the backend tells its workers
which bundles hold the GPUs.

Reserving fails with a clear ``PlacementError`` instead of hanging: at once when
no node of the cluster could ever hold a bundle (unless ``wait_for_gpus`` is
set, for autoscaling clusters), and after ``placement_timeout_s`` when the GPUs
exist but other work holds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from raysolve.runtime.config import EngineConfig

__all__ = [
    "ActorPlacement",
    "PlacementError",
    "bundle_for",
    "bundles_for",
    "count_engine_actors",
    "nodes_that_fit",
    "place_engine_actors",
    "release",
]


class PlacementError(RuntimeError):
    """The engine actors' GPUs cannot be reserved."""


@dataclass
class ActorPlacement:
    """Ray options for one engine actor, and the placement group it owns (None without whole GPUs)."""

    options: dict[str, Any]
    group: Any = None


def whole_gpus(engine: EngineConfig) -> int:
    """GPUs one actor holds as a bundle (0 for CPU actors and fractional GPU shares)."""
    return int(engine.num_gpus) if engine.num_gpus >= 1 else 0


def bundle_for(engine: EngineConfig) -> dict[str, float]:
    """What one actor with whole GPUs reserves on its node, in total."""
    bundle: dict[str, float] = {"GPU": float(whole_gpus(engine))}
    cpus = sum(b.get("CPU", 0.0) for b in bundles_for(engine))
    if cpus > 0:
        bundle["CPU"] = cpus
    return bundle


def bundles_for(engine: EngineConfig) -> list[dict[str, float]]:
    """The placement group's bundles for one actor with whole GPUs; the actor takes the last."""
    n = whole_gpus(engine)
    if engine.gpu_bundles == "one":
        bundle: dict[str, float] = {"GPU": float(n)}
        if engine.num_cpus > 0:
            bundle["CPU"] = float(engine.num_cpus)
        return [bundle]
    host = {"CPU": float(engine.num_cpus + engine.child_cpus)}
    return [{"GPU": 1.0, "CPU": 1.0} for _ in range(n)] + [host]


def nodes_that_fit(engine: EngineConfig, node_resources: Iterable[Mapping[str, float]]) -> int:
    """How many actors' groups the given nodes could hold if nothing else ran on them
    (a group is STRICT_PACK: all of it on one node)."""
    need = bundle_for(engine)
    total = 0
    for resources in node_resources:
        total += min(math.floor(resources.get(k, 0.0) / v + 1e-9) for k, v in need.items() if v > 0)
    return total


def count_engine_actors(engine: EngineConfig, node_resources: Iterable[Mapping[str, float]]) -> int:
    """``num_actors``, with ``"auto"`` resolved to one actor per ``num_gpus`` GPUs of the cluster."""
    if engine.num_actors != "auto":
        return int(engine.num_actors)
    if engine.num_gpus <= 0:
        return 1
    if whole_gpus(engine) == 0:  # fractional shares: as many as the GPUs hold
        gpus = sum(r.get("GPU", 0.0) for r in node_resources)
        return max(1, math.floor(gpus / engine.num_gpus + 1e-9))
    fit = nodes_that_fit(engine, node_resources)
    if fit == 0:
        raise PlacementError(_no_fit_message(engine, list(node_resources)))
    return fit


def _no_fit_message(engine: EngineConfig, node_resources: list[Mapping[str, float]]) -> str:
    gpus = [int(r.get("GPU", 0)) for r in node_resources]
    return (
        f"each engine actor needs {whole_gpus(engine)} GPU(s) and {engine.num_cpus:g} CPU(s) on one node, "
        f"but the cluster's nodes have {gpus} GPUs; lower engine.num_gpus (the tensor-parallel size), "
        "or set engine.wait_for_gpus for an autoscaling cluster"
    )


def _node_resources() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def place_engine_actors(engine: EngineConfig, name_prefix: str) -> list[ActorPlacement]:
    """Reserve what every engine actor needs; returns one ``ActorPlacement`` per actor.

    Actors without whole GPUs get plain resource options. Actors with whole GPUs get a
    ready placement group each; on failure every group made so far is removed."""
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    nodes = _node_resources()
    count = count_engine_actors(engine, nodes)
    runtime_env = {"env_vars": dict(engine.env_vars)} if engine.env_vars else None
    base: dict[str, Any] = {"num_cpus": engine.num_cpus, "num_gpus": engine.num_gpus}
    if runtime_env:
        base["runtime_env"] = runtime_env
    n = whole_gpus(engine)
    if n == 0:
        return [ActorPlacement(dict(base)) for _ in range(count)]

    fit = nodes_that_fit(engine, nodes)
    if fit < count and not engine.wait_for_gpus:
        raise PlacementError(
            f"{count} engine actors × {n} GPU(s) requested, but the cluster's nodes can hold at most {fit} "
            f"(node GPUs: {[int(r.get('GPU', 0)) for r in nodes]})"
            if fit
            else _no_fit_message(engine, nodes)
        )
    bundles = bundles_for(engine)
    groups = [placement_group(bundles, strategy="STRICT_PACK", name=f"{name_prefix}-{i}") for i in range(count)]
    try:
        ray.get([g.ready() for g in groups], timeout=engine.placement_timeout_s)
    except ray.exceptions.GetTimeoutError:
        release(groups)
        free = ray.available_resources().get("GPU", 0.0)
        raise PlacementError(
            f"could not reserve {count} engine actors × {n} GPU(s) within {engine.placement_timeout_s:g} s: "
            f"{free:g} GPU(s) free now; other work holds the rest (raise engine.placement_timeout_s to wait longer)"
        ) from None
    per_gpu = engine.gpu_bundles == "per-gpu"
    placements = []
    for group in groups:
        options = dict(base)
        if per_gpu:
            options["num_gpus"] = 0  # the GPUs are for the backend's worker actors
        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            placement_group=group,
            placement_group_bundle_index=len(bundles) - 1,
            # "one": the backend's workers are processes the actor starts, not Ray tasks; tasks
            # the actor might start must not compete for the bundle it holds whole. "per-gpu":
            # the backend's worker actors must land in this group's GPU bundles.
            placement_group_capture_child_tasks=per_gpu,
        )
        placements.append(ActorPlacement(options, group))
    return placements


def release(groups: Iterable[Any]) -> None:
    """Remove placement groups (ignoring ones already gone)."""
    from ray.util.placement_group import remove_placement_group

    for group in groups:
        if group is None:
            continue
        try:
            remove_placement_group(group)
        except Exception:  # already removed, or Ray is shutting down
            pass

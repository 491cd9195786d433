"""Engine-actor placement: the pure rules, then real placement groups on a local Ray instance.

The session's Ray instance declares 4 GPUs (see conftest): Ray reserves and assigns them
exactly as it would real ones, so bundles, STRICT_PACK and CUDA_VISIBLE_DEVICES are real;
only CUDA itself is absent. The same code on real GPUs: jobs/gpu_smoke.py.
"""

import os

import pytest

from raysolve.runtime.placement import (
    PlacementError,
    bundle_for,
    count_engine_actors,
    nodes_that_fit,
    place_engine_actors,
    release,
)
from raysolve.runtime.config import EngineConfig, SolverConfig
from raysolve.engines.testing.scripted import directive_problem
from raysolve.io.problems import Problem
from raysolve.runtime.solver import Solver

PAIR_NODES = [{"GPU": 2.0, "CPU": 16.0}] * 3 + [{"CPU": 8.0}]


def test_bundle_is_the_tensor_parallel_gpus_plus_the_actor_cpus():
    assert bundle_for(EngineConfig(num_gpus=2, num_cpus=4)) == {"GPU": 2.0, "CPU": 4.0}
    assert bundle_for(EngineConfig(num_gpus=1, num_cpus=0)) == {"GPU": 1.0}


def test_per_gpu_bundles_leave_the_gpus_to_the_backends_worker_actors():
    from raysolve.runtime.placement import bundles_for

    engine = EngineConfig(num_gpus=2, num_cpus=1, gpu_bundles="per-gpu", child_cpus=4)
    assert bundles_for(engine) == [{"GPU": 1.0, "CPU": 1.0}, {"GPU": 1.0, "CPU": 1.0}, {"CPU": 5.0}]
    assert bundle_for(engine) == {"GPU": 2.0, "CPU": 7.0}  # all on one node
    assert nodes_that_fit(engine, PAIR_NODES) == 3
    assert bundles_for(EngineConfig(num_gpus=2, num_cpus=4)) == [{"GPU": 2.0, "CPU": 4.0}]


def test_auto_actor_count_fills_the_cluster():
    assert count_engine_actors(EngineConfig(num_actors="auto", num_gpus=1), PAIR_NODES) == 6
    assert count_engine_actors(EngineConfig(num_actors="auto", num_gpus=2), PAIR_NODES) == 3
    assert count_engine_actors(EngineConfig(num_actors="auto", num_gpus=0.5), PAIR_NODES) == 12
    assert count_engine_actors(EngineConfig(num_actors="auto"), PAIR_NODES) == 1  # CPU engine
    assert count_engine_actors(EngineConfig(num_actors=5, num_gpus=2), PAIR_NODES) == 5
    # a TP group never spans nodes: 2×(GPU pair) nodes cannot hold a 4-GPU actor
    assert nodes_that_fit(EngineConfig(num_gpus=4), PAIR_NODES) == 0
    with pytest.raises(PlacementError, match=r"needs 4 GPU\(s\).*nodes have \[2, 2, 2, 0\] GPUs"):
        count_engine_actors(EngineConfig(num_actors="auto", num_gpus=4), PAIR_NODES)


def test_fractional_gpus_above_one_are_rejected():
    with pytest.raises(ValueError, match="whole number"):
        EngineConfig(num_gpus=1.5)


def _probe_visible(placement):
    import ray

    @ray.remote
    class Probe:
        def devices(self):
            return os.environ.get("CUDA_VISIBLE_DEVICES"), [str(g) for g in ray.get_gpu_ids()]

    probe = Probe.options(**placement.options).remote()
    try:
        return ray.get(probe.devices.remote(), timeout=60)
    finally:
        ray.kill(probe)


def test_gpu_pairs_go_to_actors_whole_and_disjoint(ray_local):
    engine = EngineConfig(num_actors=2, num_gpus=2, num_cpus=0.25)
    placements = place_engine_actors(engine, "t-pairs")
    try:
        seen = [_probe_visible(p) for p in placements]
        for visible, ids in seen:
            assert visible is not None and sorted(visible.split(",")) == sorted(ids) and len(ids) == 2
        assert not set(seen[0][1]) & set(seen[1][1])  # no GPU shared between the two actors
        table = ray_local.util.placement_group_table(placements[0].group)
        assert table["strategy"] == "STRICT_PACK" and table["bundles"] == {0: {"GPU": 2.0, "CPU": 0.25}}
    finally:
        release(p.group for p in placements)


def test_more_gpus_than_the_cluster_has_fails_at_once(ray_local):
    with pytest.raises(PlacementError, match="can hold at most 2"):
        place_engine_actors(EngineConfig(num_actors=3, num_gpus=2, num_cpus=0), "t-too-many")


def test_busy_gpus_time_out_with_a_clear_error_and_nothing_left_reserved(ray_local):
    holder = place_engine_actors(EngineConfig(num_actors=2, num_gpus=2, num_cpus=0), "t-hold")
    try:
        with pytest.raises(PlacementError, match="within 1 s: 0 GPU"):
            place_engine_actors(EngineConfig(num_actors=1, num_gpus=1, num_cpus=0, placement_timeout_s=1), "t-wait")
    finally:
        release(p.group for p in holder)
    names = [g["name"] for g in ray_local.util.placement_group_table().values() if g["state"] != "REMOVED"]
    assert not [n for n in names if n.startswith(("t-wait", "t-hold"))]


def test_solver_places_one_engine_actor_per_gpu_and_solves(ray_local):
    cfg = SolverConfig(engine=EngineConfig(backend="scripted", num_actors="auto", num_gpus=1, num_cpus=0.25,
                                           options={"tokens_per_s": 4000, "concurrency": 8}))
    with Solver(cfg) as solver:
        assert len(solver.engines) == 4
        reports = ray_local.get([e.placement.remote() for e in solver.engines])
        assert sorted(r["cuda_visible_devices"] for r in reports) == ["0", "1", "2", "3"]
        result = solver.solve(Problem("p", directive_problem(["5"], [20], code=False), answer="5"))
        assert result.answer == "5" and result.correct
        groups = [p.group for p in solver.placements]
    table = ray_local.util.placement_group_table()
    assert all(table[g.id.hex()]["state"] == "REMOVED" for g in groups)  # shutdown gave the GPUs back

import os
from collections.abc import Iterator

import pytest
from sandbox_helpers import LoopThread

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray starts its workers (every actor: engines, coordinator, sandbox pool) at nice 15. Beside any
# process at normal priority that keeps the cores busy (another test run, a build, CPU burners)
# they then get a few percent of a core, and a test of the tiny model runs 20x slower instead of
# 2x. At nice 0 a busy host only shares the CPU fairly. Subprocesses that start their own Ray
# (`raysolve aimo`, `ray start --head`) inherit this.
os.environ.setdefault("RAY_worker_niceness", "0")


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one test process per core, at most 4. Each process starts its own local Ray and
    many tests start more (`raysolve solve`, `ray start --head`), so more processes than cores
    only queue for the CPU; on a big machine, 4 already leave the longest file as the bound."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (starting Ray costs seconds).

    It declares 4 GPUs that this CPU machine does not have: Ray schedules them like real
    ones (placement groups, CUDA_VISIBLE_DEVICES), which is what the placement tests check;
    nothing in the suite runs CUDA code on them."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=4, num_gpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    """A background event loop per test module, for the sandbox's async API."""
    lt = LoopThread()
    yield lt
    lt.close()

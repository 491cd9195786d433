"""SandboxPool actor + RemoteSandbox adapter on a local Ray instance.

Nothing here waits for a fixed time: "running side by side" is the pool's own count of
runs executing at once, a cancel or restart happens once the actor reports the state
it needs (a run executing, the actor serving again).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest
from sandbox_helpers import PATIENCE_S

ray = pytest.importorskip("ray")

from raysolve.sandbox import RemoteSandbox, Sandbox, SandboxConfig, sandbox_pool_actor  # noqa: E402
from raysolve.sandbox.actor import RESTART_NOTE  # noqa: E402

pytestmark = pytest.mark.timeout(120)

@pytest.fixture(scope="module")
def pool(ray_local):
    handle = sandbox_pool_actor(SandboxConfig(max_workers=3, warm_workers=3, timeout_s=2.0))
    ray.get(handle.stats.remote())  # actor up
    yield handle
    ray.get(handle.shutdown.remote())
    ray.kill(handle, no_restart=True)


async def _running(pool, count: int) -> dict:
    """Return the pool's stats once ``count`` runs execute at the same time."""
    stats: dict = {}

    async def poll() -> bool:
        stats.update(await pool.stats.remote())
        return stats["running"] >= count

    deadline = asyncio.get_running_loop().time() + PATIENCE_S
    while not await poll():
        assert asyncio.get_running_loop().time() < deadline, f"never {count} runs at once: {stats}"
        await asyncio.sleep(0.01)
    return stats


def test_remote_state_and_parallel_sessions(pool) -> None:
    sandbox = RemoteSandbox(pool)
    assert isinstance(sandbox, Sandbox)

    async def go() -> tuple[list[str], dict]:
        sids = [await sandbox.open_session() for _ in range(3)]
        await asyncio.gather(*(sandbox.run(s, f"import time\nv = {i} * 10") for i, s in enumerate(sids)))
        # Three runs that only end when their session is closed: the pool must be seen running
        # all three at once (side by side, not one after another), whatever the host's speed.
        blocked = [asyncio.ensure_future(sandbox.run(s, "time.sleep(3600)", timeout_s=3600)) for s in sids]
        stats = await _running(pool, 3)
        outputs = []
        for s, task in zip(sids, blocked):
            await sandbox.close(s)  # kills the worker: the run ends as "killed"
            outputs.append((await task).status)
        return outputs, stats

    statuses, stats = asyncio.run(go())
    assert stats["running"] == 3 and stats["max_workers"] == 3, stats
    assert statuses == ["killed"] * 3

    async def state() -> list[str]:
        sids = [await sandbox.open_session() for _ in range(3)]
        await asyncio.gather(*(sandbox.run(s, f"v = {i} * 10") for i, s in enumerate(sids)))
        results = await asyncio.gather(*(sandbox.run(s, "print(v)") for s in sids))
        await asyncio.gather(*(sandbox.close(s) for s in sids))
        return [r.stdout for r in results]

    assert asyncio.run(state()) == ["0\n", "10\n", "20\n"]  # each session kept its own state


def test_remote_errors_timeouts_and_cancellation(pool) -> None:
    sandbox = RemoteSandbox(pool)

    async def go() -> list:
        sid = await sandbox.open_session()
        results = [await sandbox.run(sid, "import os")]
        results.append(await sandbox.run(sid, "answer = 6 * 7"))
        results.append(await sandbox.run(sid, "while True:\n    pass", timeout_s=1.0))
        task = asyncio.ensure_future(sandbox.run(sid, "while True:\n    pass", timeout_s=3600))
        await _running(pool, 1)  # the actor is executing it: the cancel lands mid-run
        task.cancel()
        try:
            await task
            results.append("not cancelled")
        except asyncio.CancelledError:
            results.append("cancelled")
        results.append(await sandbox.run(sid, "print(answer)"))
        await sandbox.close(sid)
        return results

    imported, assigned, timed_out, cancelled, after = asyncio.run(go())
    assert imported.status == "error" and "import of 'os' is not allowed" in imported.stderr
    assert assigned.status == "ok"
    assert timed_out.status == "timeout"
    assert cancelled == "cancelled"
    assert after.status == "ok" and after.stdout == "42\n"


def test_a_closed_session_stays_closed(pool) -> None:
    # A run arriving after its session's close (a dead sample's last call) must not bring the
    # session back; an unknown session after a restart is recreated (test_actor_crash_is_survived).
    sandbox = RemoteSandbox(pool)

    async def go():
        sid = await sandbox.open_session()
        await sandbox.run(sid, "lost = 1")
        await sandbox.close(sid)
        late = await sandbox.run(sid, "print(lost)")
        return late, await pool.stats.remote()

    late, stats = asyncio.run(go())
    assert late.status == "error" and "the session was closed" in late.stderr
    assert stats["sessions"] == 0


def test_actor_crash_is_survived(ray_local) -> None:
    handle = sandbox_pool_actor(SandboxConfig(max_workers=1, warm_workers=0))
    sandbox = RemoteSandbox(handle)

    async def go():
        sid = await sandbox.open_session()
        before = await sandbox.run(sid, "x = 5\nprint(x)")
        old_pid = await handle.pid.remote()
        ray.kill(handle, no_restart=False)  # hard crash; Ray restarts the actor

        async def restarted() -> bool:
            try:
                return await handle.pid.remote() != old_pid
            except ray.exceptions.RayError:  # between death and restart
                return False

        deadline = asyncio.get_running_loop().time() + PATIENCE_S
        while not await restarted():  # a new actor process serves the handle
            assert asyncio.get_running_loop().time() < deadline, "the actor was not restarted"
            await asyncio.sleep(0.01)
        after = await sandbox.run(sid, "print(x)")  # recreated, without its variables
        return before, after

    try:
        before, after = asyncio.run(go())
    finally:
        ray.kill(handle, no_restart=True)
    assert before.stdout == "5\n"
    assert after.status == "error" and after.stderr.startswith(RESTART_NOTE) and "NameError" in after.stderr


def test_hostile_code_through_the_actor_leaves_it_serving(pool) -> None:
    """Process-control, spoofing and flood snippets from the red-team corpus, sent
    through Ray, three sessions at once: each ends as its case names and the actor process is
    never touched."""
    from raysolve.sandbox.corpus import REDTEAM, run_cases

    # Cases whose outcome is not a timeout get a limit far beyond their need: a busy machine
    # must not turn "error" into "timeout".
    cases = [c if c.outcome == "timeout" else dataclasses.replace(c, timeout_s=120.0)
             for c in REDTEAM if c.category in ("process", "spoof", "flood")]
    pid = ray.get(pool.pid.remote())
    reports = asyncio.run(run_cases(RemoteSandbox(pool), cases, per_session=5, concurrency=3))
    assert [(r.case.name, r.problem) for r in reports if r.problem] == []
    assert ray.get(pool.pid.remote()) == pid
    assert ray.get(pool.stats.remote())["running"] == 0

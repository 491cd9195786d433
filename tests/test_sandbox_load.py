"""Recovery under load: hundreds of concurrent sessions through the Ray sandbox pool
while snippets crash, hang and bomb memory and workers are killed from outside.

Every execution must come back as a result record, no session may see another's
variables, state must survive kills (replay), and afterwards the pool must be back
to full capacity with no process left behind.

Nothing depends on the host's speed: the outside kills are paced by the runs that
finish (one per ``KILL_EVERY``), not by a timer, so a slow host gets the same number of
them; "full capacity" is the pool's own count of runs executing at once.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest
from sandbox_helpers import PATIENCE_S, live_children, wait_until

from raysolve.sandbox import RemoteSandbox, SandboxConfig, sandbox_pool_actor

pytestmark = pytest.mark.timeout(300)

SESSIONS = 120
CONFIG = SandboxConfig(max_workers=4, warm_workers=2, timeout_s=1.0, stack_mb=16, max_live_workers=64)

# Phase-two snippets by session number % 10; the rest compute normally.
CRASH = "t = ()\nfor i in range(5 * 10**5):\n    t = (t,)\nprint(hash(t))"  # C stack overflow: SIGSEGV
HANG = "while True:\n    pass"
MEMORY = "s = 'a' * 10**10"
KINDS = {0: ("killed", CRASH, 10.0), 1: ("timeout", HANG, None), 2: ("error", MEMORY, None)}
NORMAL = ("ok", "print(marker * 2)", None)
KILL_EVERY = 6
"""Phase two: one worker is SIGKILLed from outside each time this many more runs have finished."""


def _isolation_probe(i: int) -> str:
    lines = ["seen = []"]
    for j in (i - 1, i + 1, i + 7):
        lines += ["try:", f"    v_{j}", f"    seen.append({j})", "except NameError:", "    pass"]
    lines.append("print(marker, seen)")
    return "\n".join(lines)


def test_hundreds_of_sessions_with_crashes_hangs_and_bombs(ray_local) -> None:
    ray = ray_local
    pool = sandbox_pool_actor(CONFIG)
    box = RemoteSandbox(pool)
    actor_pid = ray.get(pool.pid.remote())

    rng, killed, finished = random.Random(0), [], [0]

    async def kill_one() -> None:
        pids = await pool.worker_pids.remote()
        if pids:
            pid = rng.choice(pids)
            try:
                os.kill(pid, 9)  # what the OOM killer does
                killed.append(pid)
            except ProcessLookupError:
                pass

    async def run_and_kill(sid: str, code: str, timeout_s: float | None):
        result = await box.run(sid, code, timeout_s)
        finished[0] += 1
        if finished[0] % KILL_EVERY == 0 and finished[0] < SESSIONS:
            await kill_one()  # while the other runs of phase two go on
        return result

    async def scenario():
        sids = await asyncio.gather(*(box.open_session() for _ in range(SESSIONS)))
        first = await asyncio.gather(*(box.run(s, f"marker = {i}\nv_{i} = {i}") for i, s in enumerate(sids)))
        second = await asyncio.gather(*(run_and_kill(s, *KINDS.get(i % 10, NORMAL)[1:]) for i, s in enumerate(sids)))
        third = await asyncio.gather(*(box.run(s, _isolation_probe(i)) for i, s in enumerate(sids)))
        await asyncio.gather(*(box.close(s) for s in sids))
        return first, second, third, killed

    first, second, third, killed = asyncio.run(scenario())
    assert len(killed) >= SESSIONS // KILL_EVERY // 2, killed  # most kills found a worker to hit

    # Every execution has a result record; kills from outside only cost the run they hit.
    assert all(r.status == "ok" for r in first), [r for r in first if r.status != "ok"][:3]
    outside = 0
    for i, result in enumerate(second):
        wanted = KINDS.get(i % 10, NORMAL)[0]
        if result.status == "killed" and "stopped from outside" in result.stderr:
            outside += 1
            continue
        assert result.status == wanted, (i, result)
        if wanted == "ok":
            assert result.stdout == f"{2 * i}\n"
        elif wanted == "killed":
            assert "segmentation fault" in result.stderr
        elif wanted == "error":
            assert "MemoryError" in result.stderr
    # State survived crashes, timeouts, outside kills and evictions; nobody saw a neighbour.
    assert [r.stdout for r in third] == [f"{i} []\n" for i in range(SESSIONS)], [r for r in third if r.status != "ok"][:3]

    # Back to full capacity: same actor and fork server, nothing running or left behind.
    assert ray.get(pool.pid.remote()) == actor_pid
    stats = wait_until(lambda: (st := ray.get(pool.stats.remote()))["warm_workers"] == CONFIG.warm_workers and st,
                       "the warm workers to be refilled")
    assert stats["running"] == 0 and stats["sessions"] == 0 and stats["live_workers"] == 0, stats
    assert stats["warm_workers"] == CONFIG.warm_workers and stats["fork_server_starts"] == 1, stats
    leftovers = [p for p in live_children(stats["fork_server_pid"]) if p not in ray.get(pool.worker_pids.remote())]
    assert leftovers == []

    async def full_width() -> tuple[dict, list]:
        """All max_workers slots are free: as many runs execute at once (seen by the pool), and
        each session then still runs normally."""
        sids = await asyncio.gather(*(box.open_session() for _ in range(CONFIG.max_workers)))
        await asyncio.gather(*(box.run(s, "import time") for s in sids))
        blocked = [asyncio.ensure_future(box.run(s, "time.sleep(3600)", 3600)) for s in sids]
        loop, now = asyncio.get_running_loop(), {}
        deadline = loop.time() + PATIENCE_S
        while (now := await pool.stats.remote())["running"] < CONFIG.max_workers:
            assert loop.time() < deadline and not any(t.done() for t in blocked), now
            await asyncio.sleep(0.01)
        for task in blocked:
            task.cancel()  # kills the worker
        await asyncio.gather(*blocked, return_exceptions=True)
        after = await asyncio.gather(*(box.run(s, "print('ok')") for s in sids))
        await asyncio.gather(*(box.close(s) for s in sids))
        return now, after

    stats, after = asyncio.run(full_width())
    assert stats["running"] == CONFIG.max_workers, stats
    assert [r.stdout for r in after] == ["ok\n"] * CONFIG.max_workers, after
    ray.get(pool.shutdown.remote())
    ray.kill(pool)
    print(f"{SESSIONS} sessions, {3 * SESSIONS} runs, {len(killed)} outside kills ({outside} hit a run)")

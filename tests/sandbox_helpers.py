"""Helpers for the sandbox tests: a background asyncio loop for driving sandbox
coroutines from plain test functions (workers are bound to the loop that started
them), the live children of a process (stray-worker checks), and waiting on an
observed state instead of a sleep (``wait_until``, ``await_until``, ``cpu_ticks``).

The waits are event synchronisation: they return as soon as the condition holds;
their limit only turns a hang into a failure and is far above any real wait."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def live_children(pid: int | None) -> list[int]:
    """Pids of the running (not zombie) children of ``pid``, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


PATIENCE_S = 120.0
"""How long a wait on an observed state may take before the test fails (it normally
returns within milliseconds; the limit is only there so that a bug fails instead of hanging)."""


def wait_until(condition: Callable[[], Any], what: str, limit_s: float = PATIENCE_S) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); fail after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
    return value


async def await_until(condition: Callable[[], Any], what: str, limit_s: float = PATIENCE_S) -> Any:
    """``wait_until`` for code on an event loop (polls without blocking the loop)."""
    deadline = time.monotonic() + limit_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return value


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of ``pid`` in clock ticks (0 once it is gone). A worker blocked
    on its next request uses none; one spinning in a cell gains ticks however busy the host is."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def is_gone(pid: int) -> bool:
    """The process exited (a zombie counts: the kill landed, reaping is its parent's business)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True

"""Ray front of the sandbox: one async actor per node holding a ``LocalSandbox``.

Sandbox code never runs in the actor process (``raise SystemExit`` there would
kill the actor for good); the actor only awaits its worker processes. It is an
*async* actor so that ``ray.cancel`` raises ``CancelledError`` at the ``await``
and ``LocalSandbox`` kills the worker.

If the actor died and was restarted, its sessions are gone: a ``run`` on an
unknown session id opens a fresh session under the same id, runs the code there
and prefixes a note saying earlier variables were lost (the sample sees a
``NameError`` plus the reason, rather than an exception).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayError

from raysolve.core.errors import SandboxLost
from raysolve.core.protocols import ExecResult
from raysolve.sandbox.config import SandboxConfig
from raysolve.sandbox.session import LocalSandbox

RESTART_NOTE = "Note: the sandbox service was restarted; variables from earlier runs are gone."


class SandboxPool:
    """Actor body (plain class; ``sandbox_pool_actor`` wraps it with ``ray.remote``)."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self._config = config or SandboxConfig()
        self._box: LocalSandbox | None = None  # made inside the actor's event loop

    def _sandbox(self) -> LocalSandbox:
        if self._box is None:
            self._box = LocalSandbox(self._config)
        return self._box

    async def open_session(self, owner: str | None = None) -> str:
        return await self._sandbox().open_session(owner=owner)

    async def close_owned(self, owner: str) -> int:
        """Close every session ``owner`` opened: a restarted engine actor's earlier samples are
        gone without closing theirs. Returns how many."""
        return await self._sandbox().close_owned(owner)

    async def run(self, session_id: str, code: str, timeout_s: float | None = None,
                  owner: str | None = None) -> ExecResult:
        box = self._sandbox()
        recreated = not box.has_session(session_id)
        if recreated:
            await box.open_session(session_id, owner=owner)
        result = await box.run(session_id, code, timeout_s)
        if recreated:
            result = replace(result, stderr=f"{RESTART_NOTE}\n{result.stderr}" if result.stderr else RESTART_NOTE)
        return result

    async def close(self, session_id: str) -> None:
        await self._sandbox().close(session_id)

    async def warm_up(self) -> float:
        """Start the fork server and its warm workers now (one session, one run), not at the first
        code call; returns the seconds it took. A model that writes no code in the solver's warm-up
        would otherwise leave that cost to the first burst of real calls."""
        started = time.perf_counter()
        box = self._sandbox()
        session = await box.open_session()
        try:
            await box.run(session, "print(1)")
        finally:
            await box.close(session)
        return time.perf_counter() - started

    async def stats(self) -> dict[str, int]:
        return self._sandbox().stats()

    async def isolation(self) -> dict[str, Any]:
        """What the OS enforces on this node's workers, plus this actor's pid."""
        return {**await self._sandbox().isolation(), "actor_pid": os.getpid()}

    async def pid(self) -> int:
        return os.getpid()

    async def worker_pids(self) -> list[int]:
        return self._sandbox().worker_pids()

    async def shutdown(self) -> None:
        """Kill all workers (the actor stays usable; new sessions start fresh)."""
        if self._box is not None:
            box, self._box = self._box, None
            await box.aclose()


def sandbox_pool_actor(
    config: SandboxConfig | None = None,
    *,
    name: str | None = None,
    namespace: str | None = None,
    max_concurrency: int = 1000,
    **options: Any,
) -> ActorHandle:
    """Create (or, with ``name``, get) the sandbox pool actor.

    ``num_cpus=0``: the actor itself only waits; its workers' CPU use is bounded by
    ``config.max_workers``. ``max_restarts=-1`` restarts it after a crash;
    ``max_task_retries=2`` re-sends a ``run`` that was in flight, which then runs
    on a fresh session (see module docstring). Extra ``options`` go to
    ``.options()`` (e.g. a node-affinity scheduling strategy).
    """
    remote_cls = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=2)(SandboxPool)
    actor_options: dict[str, Any] = {"max_concurrency": max_concurrency, **options}
    if name is not None:
        actor_options.update(name=name, get_if_exists=True)
        if namespace is not None:
            actor_options["namespace"] = namespace
    return remote_cls.options(**actor_options).remote(config)


class RemoteSandbox:
    """The ``Sandbox`` protocol over a ``SandboxPool`` actor handle."""

    def __init__(self, handle: ActorHandle, owner: str | None = None) -> None:
        self._handle = handle
        self.owner = owner
        """Whose sessions these are (an engine actor's stable name): ``close_owned`` closes them all."""

    async def open_session(self) -> str:
        """Raises ``SandboxLost`` when the pool actor does not answer (the sample is retried)."""
        try:
            return await self._handle.open_session.remote(self.owner)
        except RayError as exc:
            raise SandboxLost(f"the sandbox service is unavailable ({type(exc).__name__})") from exc

    async def run(self, session_id: str, code: str, timeout_s: float | None = None) -> ExecResult:
        """Never raises for code or actor trouble; cancelling it cancels the
        actor task, which kills the worker."""
        ref = self._handle.run.remote(session_id, code, timeout_s, self.owner)
        try:
            return await ref
        except asyncio.CancelledError:
            ray.cancel(ref)
            raise
        except RayError as exc:
            return ExecResult("killed", stderr=f"SandboxError: the sandbox service is unavailable ({type(exc).__name__}); try again")

    async def close(self, session_id: str) -> None:
        try:
            await self._handle.close.remote(session_id)
        except RayError:
            pass

    async def close_owned(self) -> int:
        """Close every session of this owner (0 when the pool does not answer)."""
        if self.owner is None:
            return 0
        try:
            return await self._handle.close_owned.remote(self.owner)
        except RayError:
            return 0

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
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import ActorUnavailableError, RayActorError, RayError

from raysolve.core.errors import SandboxLost
from raysolve.core.protocols import ExecResult
from raysolve.sandbox.config import SandboxConfig
from raysolve.sandbox.session import LocalSandbox

RESTART_NOTE = "Note: the sandbox service was restarted; variables from earlier runs are gone."
_RUN_RESENDS = 2
"""Times a code run is sent again after the pool actor died under it."""
_CLOSED_REMEMBERED = 100_000
"""Closed session ids kept, so that a run arriving after its session's close (a retried task, a
dead caller's last call) does not bring the session back."""


class SandboxPool:
    """Actor body (plain class; ``sandbox_pool_actor`` wraps it with ``ray.remote``)."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self._config = config or SandboxConfig()
        self._box: LocalSandbox | None = None  # made inside the actor's event loop
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._current: dict[str, str] = {}
        """Owner group -> its live incarnation (``claim``)."""

    def _sandbox(self) -> LocalSandbox:
        if self._box is None:
            self._box = LocalSandbox(self._config)
        return self._box

    async def open_session(self, owner: str | None = None) -> str:
        if self._stale(owner):
            raise RuntimeError(f"session owner {owner!r} has been replaced by {self._current[_group(owner)]!r}")
        return await self._sandbox().open_session(owner=owner)

    async def claim(self, owner: str) -> int:
        """``owner`` (``<group>@<incarnation>``, e.g. ``engine-0@<pid>``) is now its group's only
        live member: close the sessions of the group's earlier incarnations (a restarted engine
        actor's samples died without closing theirs) and refuse them new ones from now on, so
        that a dead incarnation's last call cannot open one either. Returns how many were closed."""
        group = _group(owner)
        self._current[group] = owner
        box = self._sandbox()
        stale = [o for o in box.owners() if o != owner and _group(o) == group]
        closed = 0
        for old in stale:
            for sid in box.session_ids(old):
                self._remember_closed(sid)
            closed += await box.close_owned(old)
        return closed

    def _stale(self, owner: str | None) -> bool:
        current = self._current.get(_group(owner)) if owner else None
        return current is not None and current != owner

    def _remember_closed(self, session_id: str) -> None:
        self._closed[session_id] = None
        if len(self._closed) > _CLOSED_REMEMBERED:
            self._closed.popitem(last=False)

    @ray.method(max_task_retries=0)  # RemoteSandbox re-sends it, only while its sample still waits
    async def run(self, session_id: str, code: str, timeout_s: float | None = None,
                  owner: str | None = None) -> ExecResult:
        box = self._sandbox()
        if session_id in self._closed or self._stale(owner):
            return ExecResult("error", stderr="SandboxError: the session was closed")
        recreated = not box.has_session(session_id)
        if recreated:
            await box.open_session(session_id, owner=owner)
        result = await box.run(session_id, code, timeout_s)
        if recreated:
            result = replace(result, stderr=f"{RESTART_NOTE}\n{result.stderr}" if result.stderr else RESTART_NOTE)
        return result

    async def close(self, session_id: str) -> None:
        self._remember_closed(session_id)
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
    ``max_task_retries=2`` re-sends calls that were in flight, except ``run``, which
    ``RemoteSandbox`` re-sends itself while its sample still waits (it then runs on a fresh
    session, see module docstring). Extra ``options`` go to
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
        """Whose sessions these are: ``<group>@<incarnation>`` (``claim``)."""

    async def open_session(self) -> str:
        """Raises ``SandboxLost`` when the pool actor does not answer (the sample is retried)."""
        try:
            return await self._handle.open_session.remote(self.owner)
        except RayError as exc:
            raise SandboxLost(f"the sandbox service is unavailable ({type(exc).__name__})") from exc

    async def run(self, session_id: str, code: str, timeout_s: float | None = None) -> ExecResult:
        """Never raises for code or actor trouble; cancelling it cancels the
        actor task, which kills the worker."""
        # Re-sent here after the pool actor died (it restarts), not by Ray: a re-sent run of a
        # sample that was cancelled meanwhile would bring its closed session back.
        failure: RayError | None = None
        for _ in range(1 + _RUN_RESENDS):
            ref = self._handle.run.remote(session_id, code, timeout_s, self.owner)
            try:
                return await ref
            except asyncio.CancelledError:
                ray.cancel(ref)
                raise
            except (RayActorError, ActorUnavailableError) as exc:
                failure = exc
            except RayError as exc:
                failure = exc
                break
        name = type(failure).__name__
        return ExecResult("killed", stderr=f"SandboxError: the sandbox service is unavailable ({name}); try again")

    async def close(self, session_id: str) -> None:
        try:
            await self._handle.close.remote(session_id)
        except RayError:
            pass

    async def claim(self) -> int:
        """Close the sessions of this owner's earlier incarnations (0 when the pool does not answer)."""
        if self.owner is None:
            return 0
        try:
            return await self._handle.claim.remote(self.owner)
        except RayError:
            return 0


def _group(owner: str | None) -> str:
    """``engine-0`` of ``engine-0@1234``."""
    return (owner or "").split("@", 1)[0]

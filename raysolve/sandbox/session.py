"""``LocalSandbox``: the ``Sandbox`` protocol over worker processes (asyncio, no Ray).

Design:

* One worker process per session, never shared or reused: a worker's globals,
  imported stand-ins and any library state it touched belong to one sample.
  ``close()`` kills it. Workers are forked from a fork server that has loaded
  and warmed numpy/SymPy once (``zygote.py``), so a session starts in a few
  milliseconds; a few are forked ahead of time (``warm_workers``). If the fork
  server dies, the next session start brings up a new one.
* Each session seeds ``random``/``numpy.random`` from its id, so replay redraws
  the same numbers.
* At most ``max_workers`` sessions execute at once (a semaphore); runs of one
  session are serialised (a lock).
* Wall-clock limit per run: the worker's process group gets SIGKILL, the run
  returns ``timeout``. Worker death (memory, RLIMIT_CPU, crash) returns
  ``killed``. Either way the session survives: the next run starts a fresh
  worker and first re-runs the session's earlier cells (those that ran, with or
  without a runtime error; not compile errors and not the killed one) with their
  output discarded, to rebuild the variables. Replay is limited by
  ``replay_budget_s``; if it cannot finish, the model is told which state is lost.
* Idle sessions beyond ``max_live_workers`` lose their worker (least recently
  used first) and are rebuilt the same way when they run again.
* Cancelling ``run`` kills the worker and re-raises ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass, field

from raysolve.core.protocols import ExecResult
from raysolve.sandbox.config import SandboxConfig
from raysolve.sandbox.process import ForkServerProcess, WorkerDied, WorkerProcess, WorkerTimeout, isolation_report

_REPLAY_OUTPUT = 256
_MAX_SPAWN_FAILURES = 3


@dataclass(frozen=True)
class _Cell:
    code: str
    number: int
    timeout_s: float


@dataclass(eq=False)
class _Session:
    id: str
    worker: WorkerProcess | None = None
    cells: list[_Cell] = field(default_factory=list)
    next_cell: int = 1
    last_used: float = field(default_factory=time.monotonic)
    closed: bool = False
    owner: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    seeded: bool = False  # the current worker has had the session's seed

    @property
    def seed(self) -> int:
        return int.from_bytes(hashlib.blake2b(self.id.encode(), digest_size=8).digest(), "big")


class LocalSandbox:
    """Stateful restricted-Python sessions in local worker processes."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._sessions: dict[str, _Session] = {}
        self._running = asyncio.Semaphore(max(1, self.config.max_workers))
        self._warm: list[WorkerProcess] = []
        self._refill_task: asyncio.Task[None] | None = None
        self._server: ForkServerProcess | None = None
        self._server_lock = asyncio.Lock()
        self._server_starts = 0
        self._busy = 0
        self._closed = False
        self.memory_recycled = 0
        """Workers stopped after a run because they held more than ``idle_memory_mb``."""
        self._isolation_checked = False
        self.sessions_abandoned = 0
        """Sessions closed because their sample was gone: idle past ``session_ttl_s``, or owned by
        an earlier incarnation of an engine actor (``close_owned``)."""
        self._next_reap = 0.0

    # ------------------------------------------------------------ protocol

    async def open_session(self, session_id: str | None = None, owner: str | None = None) -> str:
        """Register a session (its worker starts on the first run); ``owner`` groups sessions for
        ``close_owned``. Sessions abandoned for ``session_ttl_s`` are closed on the way."""
        if self._closed:
            raise RuntimeError("sandbox is shut down")
        sid = session_id or uuid.uuid4().hex
        if sid in self._sessions:
            raise ValueError(f"session {sid!r} already exists")
        await self._close_abandoned()
        self._sessions[sid] = _Session(sid, owner=owner)
        self._ensure_warm()
        return sid

    def has_session(self, session_id: str) -> bool:
        return session_id in self._sessions

    async def run(self, session_id: str, code: str, timeout_s: float | None = None) -> ExecResult:
        """Run ``code`` in the session. Raises ``KeyError`` for an unknown
        session (a caller bug); bad, slow or hostile code only yields results."""
        session = self._sessions.get(session_id)
        if session is None:
            raise KeyError(f"unknown sandbox session {session_id!r}")
        timeout = float(timeout_s if timeout_s is not None else self.config.timeout_s)
        try:
            async with session.lock, self._running:
                if session.closed:
                    return ExecResult("error", stderr="SandboxError: the session was closed")
                self._busy += 1
                try:
                    return await self._run_locked(session, code, timeout)
                finally:
                    self._busy -= 1
        finally:
            session.last_used = time.monotonic()
            if session.closed and session.worker is not None:
                session.worker.kill()
                session.worker = None
            self._evict_idle()

    async def close(self, session_id: str) -> None:
        """Forget the session and kill its worker (a running cell ends as ``killed``)."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        session.closed = True
        if session.worker is not None:
            session.worker.kill()
            if not session.lock.locked():
                await session.worker.close()
                session.worker = None

    async def aclose(self) -> None:
        """Kill every worker, warm ones included."""
        self._closed = True
        if self._refill_task is not None:
            self._refill_task.cancel()
            with contextlib.suppress(BaseException):
                await self._refill_task
        workers = [w for w in self._warm]
        self._warm.clear()
        for session in list(self._sessions.values()):
            session.closed = True
            if session.worker is not None:
                workers.append(session.worker)
        self._sessions.clear()
        for worker in workers:
            worker.kill()
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def __aenter__(self) -> LocalSandbox:
        self._ensure_warm()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def stats(self) -> dict[str, int]:
        """Counts for monitoring: sessions, live/warm workers, runs executing now
        (at most ``max_workers``), fork-server starts (1 unless it died)."""
        live = sum(1 for s in self._sessions.values() if s.worker is not None and s.worker.alive)
        return {
            "sessions": len(self._sessions),
            "live_workers": live,
            "warm_workers": sum(1 for w in self._warm if w.alive),
            "running": self._busy,
            "max_workers": max(1, self.config.max_workers),
            "fork_server_starts": self._server_starts,
            "fork_server_pid": self.fork_server_pid or 0,
            "memory_recycled": self.memory_recycled,
            "sessions_abandoned": self.sessions_abandoned,
        }

    def worker_pids(self) -> list[int]:
        """Pids of every worker this sandbox holds (sessions' and warm ones)."""
        workers = [s.worker for s in self._sessions.values() if s.worker is not None]
        return [w.pid for w in [*workers, *self._warm] if w.alive]

    async def isolation(self) -> dict[str, object]:
        """What the OS enforces on this sandbox's workers, measured on a throw-away session's
        worker: ``layers`` (each OS layer: True, a version, or why it is not in force),
        ``complete`` and ``missing`` (see ``missing_layers``), and the ``/proc`` view of its
        uid, namespace, limits, environment and cwd (``isolation_report``)."""
        try:
            server = await self._fork_server()
            worker = await server.fork(self.config.start_timeout_s)  # unchecked: this is the check
        except WorkerDied as exc:
            return {"error": exc.reason, "complete": False, "missing": {"worker": exc.reason}}
        try:
            await worker.request({"op": "run", "code": "pass", "cell": 0, "cpu_s": 5.0}, self.config.start_timeout_s)
            report: dict[str, object] = isolation_report(worker.pid)
            layers = self._layers(worker)
            missing = missing_layers(layers)
            report.update({"layers": layers, "complete": not missing, "missing": missing})
        finally:
            await worker.close()
        return report

    def _layers(self, worker: WorkerProcess) -> dict[str, object]:
        return {**worker.layers, "network_namespace": bool(self._server and self._server.network_isolated)}

    def _check_isolation(self, worker: WorkerProcess) -> None:
        """Once per sandbox: warn when an OS layer is missing, or refuse to run at all with
        ``require_full_isolation`` (the setting for serving untrusted input)."""
        missing = missing_layers(self._layers(worker))
        if not missing:
            self._isolation_checked = True
            return
        text = "; ".join(f"{name}: {why}" for name, why in missing.items())
        if self.config.require_full_isolation:
            worker.kill()
            raise WorkerDied(f"sandbox isolation incomplete and require_full_isolation is set ({text})")
        if not self._isolation_checked:
            self._isolation_checked = True
            logging.getLogger("raysolve.sandbox").warning("sandbox workers run without some OS layers: %s", text)

    @property
    def fork_server_pid(self) -> int | None:
        return self._server.pid if self._server is not None and self._server.alive else None

    # ------------------------------------------------------------ running

    async def _run_locked(self, session: _Session, code: str, timeout: float) -> ExecResult:
        notes: list[str] = []
        try:
            if session.worker is None or not session.worker.alive:
                await self._new_worker(session)
                if session.cells:
                    note = await self._replay(session)
                    if note:
                        notes.append(note)
            return await self._execute(session, code, timeout, notes)
        except WorkerDied as exc:
            self._drop_worker(session)
            return ExecResult("killed", stderr=_join(notes, f"SandboxError: could not start the sandbox ({exc.reason})"))
        except asyncio.CancelledError:
            self._drop_worker(session)
            raise
        except Exception as exc:  # noqa: BLE001 - never raise into the sample
            self._drop_worker(session)
            return ExecResult("killed", stderr=f"SandboxError: internal error ({type(exc).__name__}: {exc})")

    async def _execute(self, session: _Session, code: str, timeout: float, notes: list[str]) -> ExecResult:
        worker = session.worker
        assert worker is not None
        number = session.next_cell
        session.next_cell += 1
        started = time.monotonic()
        kept = " Variables from earlier runs are kept." if session.cells else ""
        try:
            response = await worker.request(self._run_request(session, code, number, timeout), timeout)
        except WorkerTimeout:
            self._drop_worker(session)
            message = f"TimeoutError: the code ran longer than the {timeout:g} s time limit and was stopped.{kept}"
            return ExecResult("timeout", stderr=_join(notes, message), wall_s=time.monotonic() - started)
        except WorkerDied as exc:
            self._drop_worker(session)
            message = f"SandboxError: the sandbox process died ({exc.reason}) and was restarted.{kept}"
            return ExecResult("killed", stderr=_join(notes, message), wall_s=time.monotonic() - started)
        status = "ok" if response.get("status") == "ok" else "error"
        if status == "ok" or response.get("phase") == "run":
            session.cells.append(_Cell(code, number, timeout))
        if worker.grown_mb is not None and worker.grown_mb > self.config.idle_memory_mb:
            self._drop_worker(session)  # too big to keep idle: its state is replayed when it runs again
            self.memory_recycled += 1
        stdout, truncated = _cap(str(response.get("stdout", "")), self.config.max_output_chars)
        return ExecResult(
            status,
            stdout=stdout,
            stderr=_join(notes, str(response.get("stderr", ""))),
            truncated=truncated or bool(response.get("truncated")),
            wall_s=float(response.get("wall_s", time.monotonic() - started)),
        )

    def _run_request(
        self, session: _Session, code: str, number: int, timeout: float, replay: bool = False
    ) -> dict[str, object]:
        request: dict[str, object] = {
            "op": "run",
            "code": code,
            "cell": number,
            "cpu_s": self.config.cpu_limit(timeout),
            "max_output": _REPLAY_OUTPUT if replay else self.config.max_output_chars,
            "replay": replay,
        }
        if not session.seeded:  # the first request a worker gets from this session
            request["seed"] = session.seed
            session.seeded = True
        return request

    async def _replay(self, session: _Session, retry: bool = True) -> str | None:
        """Re-run the session's recorded cells in its fresh worker. Returns a note
        for the model if some state could not be rebuilt.

        A worker that dies during replay may have been killed from outside (the OOM
        killer, an operator): the whole replay is tried once more in a new worker
        before the failing cell and those after it are given up."""
        deadline = time.monotonic() + self.config.replay_budget_s
        cells = list(session.cells)
        for index, cell in enumerate(cells):
            remaining = deadline - time.monotonic()
            problem = None
            if remaining <= 0:
                problem = "the time for restoring ran out"
            else:
                assert session.worker is not None
                limit = min(cell.timeout_s * 1.5 + 0.5, remaining)
                try:
                    await session.worker.request(self._run_request(session, cell.code, cell.number, limit, replay=True),
                                                 limit)
                except WorkerTimeout:
                    problem = "it timed out when re-run"
                except WorkerDied as exc:
                    problem = f"the sandbox process died when re-running it ({exc.reason})"
                    if retry:
                        await self._new_worker(session)
                        return await self._replay(session, retry=False)
            if problem is not None:
                session.cells = cells[:index]
                if session.worker is None or not session.worker.alive:
                    # Start over with what did replay; give up on state if even that fails.
                    await self._new_worker(session)
                    if session.cells and await self._replay(session, retry=False) is not None:
                        session.cells = []
                lost = len(cells) - len(session.cells)
                return (
                    f"Note: the sandbox was restarted and {lost} of {len(cells)} earlier runs could not be "
                    f"restored ({problem}); variables defined there are gone."
                )
        return None

    async def _new_worker(self, session: _Session) -> None:
        """Give the session a fresh worker; its first request will carry the session's seed."""
        session.worker = await self._take_worker()
        session.seeded = False

    def _drop_worker(self, session: _Session) -> None:
        if session.worker is not None:
            session.worker.kill()
            session.worker = None

    # ------------------------------------------------------------ workers

    async def _take_worker(self) -> WorkerProcess:
        while self._warm:
            worker = self._warm.pop()
            if worker.alive:
                self._ensure_warm()
                return worker
        self._ensure_warm()
        return await self._fork()

    async def _fork(self) -> WorkerProcess:
        server = await self._fork_server()
        worker = await server.fork(self.config.start_timeout_s)
        if self.config.require_full_isolation or not self._isolation_checked:
            self._check_isolation(worker)
        return worker

    async def _fork_server(self) -> ForkServerProcess:
        """The running fork server, (re)started if needed."""
        async with self._server_lock:
            if self._closed:
                raise WorkerDied("sandbox is shut down")
            if self._server is None or not self._server.alive:
                if self._server is not None:
                    await self._server.close()
                self._server = await ForkServerProcess.start(self.config)
                self._server_starts += 1
            return self._server

    def _ensure_warm(self) -> None:
        if self._closed or self.config.warm_workers <= 0 or len(self._warm) >= self.config.warm_workers:
            return
        if self._refill_task is None or self._refill_task.done():
            self._refill_task = asyncio.get_running_loop().create_task(self._refill())

    async def _refill(self) -> None:
        failures = 0
        while not self._closed and len(self._warm) < self.config.warm_workers and failures < _MAX_SPAWN_FAILURES:
            try:
                worker = await self._fork()
            except (WorkerDied, OSError):
                failures += 1
                await asyncio.sleep(1.0)
                continue
            if self._closed:
                await worker.close()
                return
            self._warm.append(worker)

    def owners(self) -> set[str]:
        """The owners of open sessions."""
        return {s.owner for s in self._sessions.values() if s.owner is not None}

    def session_ids(self, owner: str) -> list[str]:
        """Ids of the open sessions of ``owner``."""
        return [sid for sid, s in self._sessions.items() if s.owner == owner]

    async def close_owned(self, owner: str) -> int:
        """Close every session of ``owner``; returns how many."""
        sids = self.session_ids(owner)
        for sid in sids:
            await self.close(sid)
        self.sessions_abandoned += len(sids)
        return len(sids)

    async def _close_abandoned(self) -> None:
        """Close sessions unused for ``session_ttl_s`` (their samples ended without closing them).
        Looks at most once every ``session_ttl_s / 60`` (a minute by default): not per session opened."""
        now = time.monotonic()
        if now < self._next_reap:
            return
        self._next_reap = now + self.config.session_ttl_s / 60
        cutoff = now - self.config.session_ttl_s
        stale = [sid for sid, s in self._sessions.items() if s.last_used < cutoff and not s.lock.locked()]
        for sid in stale:
            await self.close(sid)
        self.sessions_abandoned += len(stale)

    def _evict_idle(self) -> None:
        live = [s for s in self._sessions.values() if s.worker is not None and s.worker.alive]
        excess = len(live) - self.config.max_live_workers
        if excess <= 0:
            return
        idle = sorted((s for s in live if not s.lock.locked()), key=lambda s: s.last_used)
        for session in idle[:excess]:
            self._drop_worker(session)


REQUIRED_LAYERS = ("landlock", "seccomp", "no_new_privs", "not_dumpable", "network_namespace", "dropped_root",
                   "cpu_limit")


def missing_layers(layers: dict[str, object]) -> dict[str, str]:
    """The OS layers not in force, with why. ``dropped_root`` counts only where the host is
    root (elsewhere workers already run unprivileged)."""
    missing: dict[str, str] = {}
    for name in REQUIRED_LAYERS:
        value = layers.get(name)
        if name == "dropped_root" and os.geteuid() != 0:
            continue
        if value is True or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            continue
        missing[name] = str(value) if isinstance(value, str) else "not in force"
    return missing


def _join(notes: list[str], text: str) -> str:
    return "\n".join([*notes, text] if text else notes)


def _cap(text: str, limit: int) -> tuple[str, bool]:
    """Host-side guard on output size (the worker already keeps head and tail)."""
    slack = limit + 200  # room for the worker's truncation marker
    if len(text) <= slack:
        return text, False
    head = limit * 2 // 3
    return f"{text[:head]}\n...[{len(text) - limit} characters truncated]...\n{text[-(limit - head):]}", True

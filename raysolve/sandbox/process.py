"""Host side of the sandbox processes (asyncio, no Ray).

``ForkServerProcess`` starts ``python -m raysolve.sandbox.zygote`` in its own
session, in a fresh network namespace where ``unshare`` is allowed, with a
minimal environment and an empty temp dir as cwd (unlinked once it is up), and
asks it for workers. ``WorkerProcess`` is the handle of one forked worker: it
speaks the framed protocol of ``worker.py`` over the worker's socket, kills a worker
whose reply is not one well-formed frame answering the request's id and nonce, and has
its process group SIGKILLed on a deadline or cancel.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from raysolve.sandbox.config import SandboxConfig

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the dir holding `raysolve/`
_LINE_LIMIT = 16 * 2**20  # longest response line accepted from a worker
_network_prefix: list[str] | None = None
_SEQPACKET_MESSAGE = 65536


class WorkerDied(Exception):
    """The worker exited or was killed; ``reason`` is short and readable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WorkerTimeout(Exception):
    """No answer before the deadline; the worker has been killed."""


def parse_frame(line: bytes) -> dict[str, Any]:
    """``<length> <json>\n`` from a worker; ``ValueError`` for anything else."""
    head, sep, rest = line.partition(b" ")
    if not sep or not head.isdigit() or not rest.endswith(b"\n"):
        raise ValueError("not a frame")
    body = rest[:-1]
    if len(body) != int(head):
        raise ValueError(f"frame length {int(head)} but {len(body)} bytes")
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("frame is not a JSON object")
    return message


def worker_pythonpath(parent: str | None = None) -> str:
    """Where the worker finds raysolve and its libraries: this package's root, then the
    parent's ``PYTHONPATH`` entries (paths, not secrets: packages installed by path, as
    Ray's runtime environments and offline GPU images do, must import in the worker too)."""
    parent = os.environ.get("PYTHONPATH", "") if parent is None else parent
    entries = [_PACKAGE_ROOT, *(e for e in parent.split(os.pathsep) if e)]
    return os.pathsep.join(dict.fromkeys(entries))


def worker_env(workdir: str) -> dict[str, str]:
    """A clean environment: nothing inherited (Ray workers carry credentials and
    cluster addresses) but the module search path, one thread per numeric library,
    fixed hash seed so a replayed cell iterates sets in the same order."""
    one = "1"
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": worker_pythonpath(),
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": one,
        "PYTHONNOUSERSITE": one,
        "PYTHONIOENCODING": "utf-8",
        "MALLOC_ARENA_MAX": "2",
        "OPENBLAS_NUM_THREADS": one,
        "OMP_NUM_THREADS": one,
        "MKL_NUM_THREADS": one,
        "NUMEXPR_NUM_THREADS": one,
        "VECLIB_MAXIMUM_THREADS": one,
    }


async def network_prefix(enabled: bool) -> list[str]:
    """``unshare`` arguments that put the worker in an empty network namespace,
    or [] where unshare is missing or not permitted (checked once per process)."""
    global _network_prefix
    if not enabled:
        return []
    if _network_prefix is None:
        unshare = shutil.which("unshare", path="/usr/bin:/bin")
        candidate = [unshare, "--net"] if unshare else []
        if candidate and os.geteuid() != 0:
            candidate.append("--map-root-user")
        if candidate:
            try:
                probe = await asyncio.create_subprocess_exec(
                    *candidate, "true", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
                )
                ok = await asyncio.wait_for(probe.wait(), 10) == 0
            except (OSError, asyncio.TimeoutError):
                ok = False
            candidate = candidate if ok else []
        _network_prefix = candidate
    return list(_network_prefix)


def describe_exit(returncode: int | None) -> str:
    """Why a worker ended, in words a model can act on."""
    if returncode is None:
        return "stopped responding"
    if returncode < 0:
        sig = -returncode
        if sig == signal.SIGXCPU:
            return "CPU time limit exceeded"
        if sig == signal.SIGKILL:
            return "killed (out of memory or stopped from outside)"
        if sig == signal.SIGSEGV:
            return "crashed with a segmentation fault (for example recursion too deep)"
        if sig == signal.SIGABRT:
            return "aborted (for example out of memory inside a library)"
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exited with status {returncode}"


_LIMIT_NAMES = {
    "Max cpu time": "cpu_s",
    "Max file size": "file_size_bytes",
    "Max processes": "processes",
    "Max open files": "open_files",
    "Max address space": "address_space_bytes",
    "Max core file size": "core_bytes",
}


def isolation_report(pid: int) -> dict[str, Any]:
    """What the OS enforces on a worker process, read from ``/proc`` (same node only):
    uid, network namespace, rlimits, environment variable names, cwd contents."""
    report: dict[str, Any] = {"pid": pid}
    try:
        with open(f"/proc/{pid}/status") as fh:
            uid_line = next(line for line in fh if line.startswith("Uid:"))
        report["uid"] = int(uid_line.split()[1])
        report["network_namespace"] = os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        limits: dict[str, str] = {}
        with open(f"/proc/{pid}/limits") as fh:
            for line in fh:
                for label, key in _LIMIT_NAMES.items():
                    if line.startswith(label):
                        limits[key] = line[len(label):].split()[0]
        report["limits"] = limits
        with open(f"/proc/{pid}/environ", "rb") as fh:
            report["env"] = sorted(item.split(b"=", 1)[0].decode() for item in fh.read().split(b"\0") if item)
        report["cwd_entries"] = len(os.listdir(f"/proc/{pid}/cwd"))
    except (OSError, StopIteration, ValueError) as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
    return report


class ForkServerProcess:
    """The fork server of one ``LocalSandbox`` and the control channel to it."""

    def __init__(self, proc: asyncio.subprocess.Process, control: socket.socket, workdir: str) -> None:
        self._proc = proc
        self._control = control
        self._workdir = workdir
        self._loop = asyncio.get_running_loop()
        self._next_token = 0
        self._forks: dict[int, asyncio.Future[tuple[int, asyncio.Future[int | None]]]] = {}
        self._exits: dict[int, asyncio.Future[int | None]] = {}  # workers not reaped yet
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._dead = False
        self.network_isolated = False
        """Started in a network namespace of its own (no interface but loopback)."""
        self.pid = proc.pid
        control.setblocking(False)
        self._loop.add_reader(control.fileno(), self._on_message)

    @classmethod
    async def start(cls, config: SandboxConfig) -> ForkServerProcess:
        """Start the fork server; returns once it has loaded and warmed up."""
        workdir = tempfile.mkdtemp(prefix="raysolve-sbx-")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        prefix = await network_prefix(config.isolate_network)
        command = [
            *prefix,
            config.python or sys.executable, "-P", "-s", "-B", "-m", "raysolve.sandbox.zygote",
            json.dumps(config.worker_options()), str(theirs.fileno()),
        ]
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                cwd=workdir,
                env=worker_env(workdir),
                start_new_session=True,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        finally:
            theirs.close()
        server = cls(proc, ours, workdir)
        server.network_isolated = bool(prefix)
        try:
            done, _ = await asyncio.wait(
                [server._ready, asyncio.ensure_future(proc.wait())],
                timeout=config.start_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:  # cancelled while starting: kill and reap, then re-raise
            await asyncio.shield(server.close())
            raise
        if server._ready in done and not server._dead:
            # The server keeps the (empty) dir as its cwd; unlinking it now means nothing
            # can be created there and nothing is left behind if this process is killed.
            shutil.rmtree(workdir, ignore_errors=True)
            return server
        if not done:
            await server.close()
            raise WorkerDied(f"sandbox fork server did not start within {config.start_timeout_s:.0f} s")
        details = await _stderr_tail(proc)
        reason = describe_exit(await _wait(proc, 2.0))
        await server.close()
        raise WorkerDied(f"sandbox fork server failed to start ({reason}){': ' + details if details else ''}")

    @property
    def alive(self) -> bool:
        return not self._dead and self._proc.returncode is None

    async def fork(self, start_timeout_s: float) -> WorkerProcess:
        """A new worker, ready for its first request."""
        if not self.alive:
            raise WorkerDied("the sandbox fork server is not running")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._next_token += 1
        token = self._next_token
        forked: asyncio.Future[tuple[int, asyncio.Future[int | None]]] = self._loop.create_future()
        self._forks[token] = forked
        try:
            socket.send_fds(self._control, [json.dumps({"op": "fork", "token": token}).encode()], [theirs.fileno()])
            theirs.close()
            pid, exited = await asyncio.wait_for(forked, start_timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            ours.close()
            theirs.close()
            raise WorkerDied(f"the sandbox fork server did not answer ({type(exc).__name__})") from None
        except BaseException:
            ours.close()
            theirs.close()
            raise
        finally:
            self._forks.pop(token, None)
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=_LINE_LIMIT)
        worker = WorkerProcess(pid, reader, writer, self, exited)
        try:
            line = await asyncio.wait_for(reader.readline(), start_timeout_s)
        except asyncio.TimeoutError:
            worker.kill()
            raise WorkerDied(f"worker did not start within {start_timeout_s:.0f} s") from None
        except BaseException:
            worker.kill()
            raise
        if not line:
            reason = describe_exit(await worker.exit_code(2.0))
            worker.kill()
            raise WorkerDied(f"worker failed to start ({reason})")
        try:
            message = parse_frame(line)
        except ValueError:
            message = {}
        if message.get("op") != "ready":
            worker.kill()
            raise WorkerDied(f"unexpected first message from worker: {line[:200]!r}")
        worker.uid = message.get("uid")
        worker.layers = dict(message.get("layers") or {})
        worker.cpu_s = float(message.get("cpu_s") or 0.0)
        return worker

    def kill_worker(self, pid: int) -> None:
        """SIGKILL a worker's process group (a no-op once it has exited)."""
        if self.alive:
            try:
                self._control.send(json.dumps({"op": "kill", "pid": pid}).encode())
            except OSError:
                pass

    def _on_message(self) -> None:
        while True:
            try:
                data = self._control.recv(_SEQPACKET_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._mark_dead()
                return
            message = json.loads(data)
            op = message.get("op")
            if op == "ready" and not self._ready.done():
                self._ready.set_result(None)
            elif op in ("forked", "error"):
                future = self._forks.get(message.get("token"))
                if future is not None and not future.done():
                    if op == "forked":
                        pid = int(message["pid"])
                        exited = self._exits[pid] = self._loop.create_future()
                        future.set_result((pid, exited))
                    else:
                        future.set_exception(OSError(message.get("error", "fork failed")))
            elif op == "exit":
                exited = self._exits.pop(int(message["pid"]), None)
                if exited is not None and not exited.done():
                    exited.set_result(message.get("returncode"))

    def _mark_dead(self) -> None:
        if self._dead:
            return
        self._dead = True
        try:
            self._loop.remove_reader(self._control.fileno())
        except (ValueError, OSError):
            pass
        for forked in self._forks.values():
            if not forked.done():
                forked.set_exception(OSError("the sandbox fork server died"))
        for exited in self._exits.values():  # its workers die with it (parent-death signal)
            if not exited.done():
                exited.set_result(None)
        self._exits.clear()
        if not self._ready.done():
            self._ready.set_result(None)

    async def close(self) -> None:
        """Kill the fork server; its workers die with it (parent-death signal)."""
        self._mark_dead()
        self._control.close()
        if self._proc.returncode is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        await _wait(self._proc, 5.0)
        shutil.rmtree(self._workdir, ignore_errors=True)


class WorkerProcess:
    """One session's worker, forked by a ``ForkServerProcess``."""

    def __init__(
        self,
        pid: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        server: ForkServerProcess,
        exited: asyncio.Future[int | None],
    ) -> None:
        self.pid = pid
        self.uid: int | None = None
        self.layers: dict[str, Any] = {}
        """The OS layers the worker reported in force (``worker.lock_down``)."""
        self.cpu_s = 0.0
        """CPU seconds the worker had used at its last reply."""
        self.grown_mb: float | None = None
        """Resident memory the worker added since it was forked, at its last reply."""
        self._reader = reader
        self._writer = writer
        self._server = server
        self._next_id = 0
        self._killed = False
        self._exit = exited

    @property
    def alive(self) -> bool:
        return not self._killed and not self._exit.done()

    async def request(self, message: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """Send one request and wait for its answer.

        Raises ``WorkerTimeout`` (worker killed) after ``timeout`` seconds and
        ``WorkerDied`` if the worker exits or breaks the protocol; on cancellation the
        worker is killed and ``CancelledError`` propagates.
        """
        if not self.alive:
            raise WorkerDied(describe_exit(self._exit.result() if self._exit.done() else None))
        self._next_id += 1
        nonce = secrets.token_hex(8)
        payload = dict(message, id=self._next_id, nonce=nonce)
        try:
            self._writer.write((json.dumps(payload) + "\n").encode("utf-8"))
            await self._writer.drain()
            line = await asyncio.wait_for(self._reader.readline(), timeout)
        except asyncio.TimeoutError:
            self.kill()
            raise WorkerTimeout() from None
        except (BrokenPipeError, ConnectionResetError):
            line = b""
        except ValueError:  # a line over the stream limit
            self.kill()
            raise WorkerDied("response too large") from None
        except BaseException:  # CancelledError included: never leave a run going
            self.kill()
            raise
        if not line:
            reason = describe_exit(await self.exit_code(2.0))
            self.kill()
            raise WorkerDied(reason)
        try:
            response = parse_frame(line)
        except ValueError as exc:
            response = {"_invalid": str(exc)}
        if response.get("id") != payload["id"] or response.get("nonce") != nonce:
            self.kill()  # a forged, stale or malformed reply: nothing this worker says can be trusted
            raise WorkerDied("the sandbox worker broke the reply protocol")
        self.cpu_s = float(response.get("cpu_s") or self.cpu_s)
        self.grown_mb = response.get("grown_mb")
        return response

    async def exit_code(self, timeout: float) -> int | None:
        """The worker's return code once the fork server has reaped it (None if unknown)."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._exit), timeout)
        except asyncio.TimeoutError:
            return None

    def kill(self) -> None:
        """SIGKILL the worker's process group and close its socket (idempotent)."""
        if not self._killed:
            self._killed = True
            if not self._exit.done():
                self._server.kill_worker(self.pid)
            self._writer.transport.abort()

    async def close(self) -> None:
        """Kill, and wait until the worker has been reaped."""
        self.kill()
        await self.exit_code(5.0)


async def _wait(proc: asyncio.subprocess.Process, timeout: float) -> int | None:
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except asyncio.TimeoutError:
        return None


async def _stderr_tail(proc: asyncio.subprocess.Process) -> str:
    if proc.stderr is None:
        return ""
    try:
        data = await asyncio.wait_for(proc.stderr.read(65536), 2.0)
    except (asyncio.TimeoutError, ValueError):
        return ""
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return " | ".join(lines[-3:])[:500]

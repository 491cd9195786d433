"""Host-side handle of one worker child process (asyncio, no Ray).

Starts ``python -m raysolve.sandbox.worker`` in its own session (process group),
in a fresh network namespace where ``unshare`` is allowed, with a minimal
environment and an empty temp dir as cwd (unlinked once the worker is up), speaks
the JSON-lines protocol with it, and kills the whole group with SIGKILL on a
deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from raysolve.sandbox.config import SandboxConfig

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the dir holding `raysolve/`
_LINE_LIMIT = 16 * 2**20  # longest response line accepted from a worker
_network_prefix: list[str] | None = None


class WorkerDied(Exception):
    """The worker exited or was killed; ``reason`` is short and readable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WorkerTimeout(Exception):
    """No answer before the deadline; the worker has been killed."""


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


class WorkerProcess:
    """One running worker. ``spawn`` returns once it reported ready."""

    def __init__(self, proc: asyncio.subprocess.Process, workdir: str) -> None:
        self._proc = proc
        self._workdir = workdir
        self._next_id = 0
        self._killed = False
        self.pid = proc.pid

    @classmethod
    async def spawn(cls, config: SandboxConfig) -> WorkerProcess:
        workdir = tempfile.mkdtemp(prefix="raysolve-sbx-")
        command = [
            *await network_prefix(config.isolate_network),
            config.python or sys.executable, "-P", "-s", "-B", "-m", "raysolve.sandbox.worker",
            json.dumps(config.worker_options()),
        ]
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=workdir,
                env=worker_env(workdir),
                start_new_session=True,
                limit=_LINE_LIMIT,
            )
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        worker = cls(proc, workdir)
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), config.start_timeout_s)
        except asyncio.TimeoutError:
            worker.kill()
            raise WorkerDied(f"worker did not start within {config.start_timeout_s:.0f} s") from None
        except BaseException:  # cancelled while starting: kill and reap, then re-raise
            await asyncio.shield(worker.close())
            raise
        if not line:
            details = await worker._stderr_tail()
            reason = describe_exit(await worker._wait(2.0))
            worker.kill()
            raise WorkerDied(f"worker failed to start ({reason}){': ' + details if details else ''}")
        message = json.loads(line)
        if message.get("op") != "ready":
            worker.kill()
            raise WorkerDied(f"unexpected first message from worker: {line[:200]!r}")
        # The worker keeps the (empty) dir as its cwd; unlinking it now means nothing
        # can be created there and nothing is left behind if this process is killed.
        shutil.rmtree(workdir, ignore_errors=True)
        return worker

    @property
    def alive(self) -> bool:
        return not self._killed and self._proc.returncode is None

    async def request(self, message: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """Send one request and wait for its answer.

        Raises ``WorkerTimeout`` (worker killed) after ``timeout`` seconds and
        ``WorkerDied`` if the worker exits; on cancellation the worker is killed
        and ``CancelledError`` propagates.
        """
        if not self.alive:
            raise WorkerDied(describe_exit(self._proc.returncode))
        self._next_id += 1
        payload = dict(message, id=self._next_id)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write((json.dumps(payload) + "\n").encode("utf-8"))
            await self._proc.stdin.drain()
            line = await asyncio.wait_for(self._proc.stdout.readline(), timeout)
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
            reason = describe_exit(await self._wait(2.0))
            self.kill()
            raise WorkerDied(reason)
        return json.loads(line)

    def kill(self) -> None:
        """SIGKILL the worker's process group and remove its temp dir (idempotent)."""
        if not self._killed:
            self._killed = True
            if self._proc.returncode is None:  # not reaped yet, so the pgid is still ours
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            # Close the pipes now rather than when the loop gets to it (it may be closing).
            transport = getattr(self._proc, "_transport", None)
            if transport is not None:
                transport.close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    async def close(self) -> None:
        """Kill and reap."""
        self.kill()
        await self._wait(5.0)

    async def _wait(self, timeout: float) -> int | None:
        try:
            return await asyncio.wait_for(self._proc.wait(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _stderr_tail(self) -> str:
        if self._proc.stderr is None:
            return ""
        try:
            data = await asyncio.wait_for(self._proc.stderr.read(65536), 2.0)
        except (asyncio.TimeoutError, ValueError):
            return ""
        lines = data.decode("utf-8", "replace").strip().splitlines()
        return " | ".join(lines[-3:])[:500]

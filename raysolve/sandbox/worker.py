"""One session's worker process: OS limits, then a request loop (child side).

A worker is forked by the fork server (``zygote.py``) with numpy, SymPy and a
pristine ``Interpreter`` already loaded. It becomes a session leader, drops root
if it has it, starts the thread that runs cells, sets its rlimits and then
serves one session over its own socket, one JSON object per line:

    -> {"op": "run", "id": 1, "code": "...", "cell": 3, "cpu_s": 3.0,
        "max_output": 4000, "replay": false, "seed": 12345}
    <- {"op": "result", "id": 1, "status": "ok"|"error", "phase": "run"|"compile",
        "stdout": "...", "stderr": "...", "truncated": false, "wall_s": 0.01}
    <- {"op": "ready", "pid": 1234, "uid": 65534}   (once, before any request)

Results cross as JSON text only: sandbox objects never reach the host.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raysolve.sandbox.restricted import Interpreter

DEFAULTS: dict[str, Any] = {
    "memory_mb": 1536,  # RLIMIT_AS; numpy + sympy take ~300 MB of address space
    "max_output": 4000,
    "max_recursion": 100_000,  # cap for the sandbox's sys.setrecursionlimit
    "stack_mb": 256,  # executor thread stack, for deep (memoised) recursion
    "nofile": 32,
    "fsize_bytes": 0,
    "int_max_str_digits": 100_000,
    "drop_root": True,
}

UNPRIVILEGED_UID = 65534  # "nobody" on every Linux distribution
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent thread exits (best effort)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _set_limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass


def apply_limits(options: dict[str, Any]) -> None:
    """Process-wide limits, set once before serving (hard limits included, so
    sandbox code cannot raise them even after an escape)."""
    _set_limit(resource.RLIMIT_CORE, 0)
    _set_limit(resource.RLIMIT_FSIZE, int(options["fsize_bytes"]))
    _set_limit(resource.RLIMIT_NOFILE, int(options["nofile"]))
    _set_limit(resource.RLIMIT_NPROC, 0)  # no fork, no threads (not enforced for real root)
    if options.get("memory_mb"):
        _set_limit(resource.RLIMIT_AS, int(options["memory_mb"]) * 2**20)


def drop_root() -> bool:
    """As real root (common in GPU containers), become ``nobody``: RLIMIT_NPROC is
    then enforced, root-only files are unreadable, other processes can't be
    signalled. Inside a user namespace (``unshare --map-root-user``) uid 0 is
    already unprivileged on the host and ``nobody`` is unmapped: nothing to do."""
    if os.geteuid() != 0:
        return False
    try:
        os.setgroups([])
        os.setgid(UNPRIVILEGED_UID)
        os.setuid(UNPRIVILEGED_UID)
    except OSError:
        return False
    return True


def arm_cpu_limit(seconds: float) -> None:
    """RLIMIT_CPU counts CPU time since process start, so before each run the
    soft limit is moved to ``used + seconds``; the kernel's SIGXCPU then kills the
    worker (default action), which ``except:`` in sandbox code cannot swallow.
    The hard limit stays where it is, so the soft limit can move up next time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + max(seconds, 0.1)) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


class Executor:
    """A single long-lived thread with a big stack that runs the cells.

    Created before RLIMIT_NPROC forbids new threads; deep recursion through C
    (``lru_cache``) needs more than the main thread's 8 MB stack.
    """

    def __init__(self, stack_mb: int) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        previous = threading.stack_size(max(stack_mb, 8) * 2**20)
        try:
            threading.Thread(target=self._loop, name="sandbox-exec", daemon=True).start()
        finally:
            threading.stack_size(previous)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                result = job()
            except BaseException as exc:  # noqa: BLE001
                result = {"status": "error", "phase": "run", "stdout": "", "stderr": f"internal sandbox error: {exc!r}", "truncated": False, "wall_s": 0.0}
            self._results.put(result)

    def call(self, job: Callable[[], Any]) -> Any:
        self._jobs.put(job)
        return self._results.get()


def send(channel: socket.socket, message: dict[str, Any]) -> None:
    channel.sendall((json.dumps(message, ensure_ascii=True) + "\n").encode("ascii"))


def serve_session(interpreter: Interpreter, channel: socket.socket, options: dict[str, Any], parent: int) -> None:
    """Lock the process down, then answer requests until the channel closes."""
    executor = Executor(int(options["stack_mb"]))
    dropped = drop_root() if options.get("drop_root", True) else False
    die_with_parent()  # again: a change of credentials clears the parent-death signal
    if os.getppid() != parent:
        return
    apply_limits(options)
    send(channel, {"op": "ready", "pid": os.getpid(), "uid": os.getuid(), "dropped_root": dropped})
    requests = channel.makefile("rb")
    for line in requests:
        try:
            request = json.loads(line)
        except ValueError:
            send(channel, {"op": "result", "status": "error", "phase": "protocol", "stderr": "bad request"})
            continue
        op = request.get("op")
        if op == "exit":
            break
        if op == "ping":
            send(channel, {"op": "pong", "id": request.get("id")})
            continue
        if op != "run":
            send(channel, {"op": "result", "id": request.get("id"), "status": "error", "phase": "protocol", "stderr": f"unknown op {op!r}"})
            continue
        if request.get("seed") is not None:
            interpreter.reseed(int(request["seed"]))
        code = str(request.get("code", ""))
        cell = int(request.get("cell", 0))
        max_output = int(request.get("max_output") or options["max_output"])
        arm_cpu_limit(float(request.get("cpu_s", 10.0)))
        result = executor.call(lambda: interpreter.run(code, cell, max_output))
        if request.get("replay"):
            result["stdout"] = ""
        send(channel, {"op": "result", "id": request.get("id"), **_clean(result)})


def _clean(result: dict[str, Any]) -> dict[str, Any]:
    """Make text fields safe to encode (lone surrogates from sandbox strings)."""
    for key in ("stdout", "stderr"):
        value = result.get(key)
        if isinstance(value, str):
            result[key] = value.encode("utf-8", "replace").decode("utf-8")
    return result

"""Sandbox worker process: ``python -m raysolve.sandbox.worker '<json options>'``.

One worker serves one session. Start-up: take the protocol pipes away from
fds 0/1 (so C-level writes by sandbox code cannot corrupt the protocol), import
numpy and SymPy once, start the executor thread, then drop privileges via
rlimits. Then a loop: one JSON request per line on the request pipe, one JSON
response per line on the response pipe. Results cross as JSON text only.

Protocol::

    -> {"op": "run", "id": 1, "code": "...", "cell": 3, "cpu_s": 3.0,
        "max_output": 4000, "replay": false}
    <- {"op": "result", "id": 1, "status": "ok"|"error", "phase": "run"|"compile",
        "stdout": "...", "stderr": "...", "truncated": false, "wall_s": 0.01}
    <- {"op": "ready", "pid": 1234}            (once, after start-up)
"""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

DEFAULTS: dict[str, Any] = {
    "memory_mb": 1536,  # RLIMIT_AS; numpy + sympy take ~250 MB of address space
    "max_output": 4000,
    "max_recursion": 100_000,  # cap for the sandbox's sys.setrecursionlimit
    "stack_mb": 256,  # executor thread stack, for deep (memoised) recursion
    "nofile": 32,
    "fsize_bytes": 0,
    "int_max_str_digits": 100_000,
}

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when the spawning thread exits (best effort)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _claim_protocol_channel() -> tuple[BinaryIO, int]:
    """Move the request/response pipes off fds 0/1; point 0/1 at /dev/null.

    fd 2 keeps the parent's pipe until start-up is done so import errors are
    visible; ``_silence_stderr`` closes it.
    """
    request_fd = os.dup(0)
    response_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    return os.fdopen(request_fd, "rb"), response_fd


def _silence_stderr() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _send(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message, ensure_ascii=True) + "\n").encode("ascii")
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _set_limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass


def apply_limits(options: dict[str, Any]) -> None:
    """Process-wide limits, set once after start-up (hard limits included)."""
    _set_limit(resource.RLIMIT_CORE, 0)
    _set_limit(resource.RLIMIT_FSIZE, int(options["fsize_bytes"]))
    _set_limit(resource.RLIMIT_NOFILE, int(options["nofile"]))
    _set_limit(resource.RLIMIT_NPROC, 0)  # no fork/threads (not enforced for root)
    if options.get("memory_mb"):
        _set_limit(resource.RLIMIT_AS, int(options["memory_mb"]) * 2**20)


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


def serve(options: dict[str, Any]) -> None:
    """Start up, then answer requests until the request pipe closes."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes fail with EFBIG instead
    _die_with_parent()
    requests, response_fd = _claim_protocol_channel()

    from raysolve.sandbox.restricted import Interpreter

    interpreter = Interpreter(
        output_limit=int(options["max_output"]),
        memory_mb=options.get("memory_mb"),
        max_recursion=int(options["max_recursion"]),
        int_max_str_digits=options["int_max_str_digits"],
    )
    # Library code that prints (sympy.pprint, numpy warnings) lands in the cell's output.
    sys.stdout = sys.stderr = interpreter.sink  # type: ignore[assignment]
    executor = Executor(int(options["stack_mb"]))
    apply_limits(options)
    _silence_stderr()
    _send(response_fd, {"op": "ready", "pid": os.getpid()})

    for line in requests:
        try:
            request = json.loads(line)
        except ValueError:
            _send(response_fd, {"op": "result", "status": "error", "phase": "protocol", "stderr": "bad request"})
            continue
        op = request.get("op")
        if op == "exit":
            break
        if op == "ping":
            _send(response_fd, {"op": "pong", "id": request.get("id")})
            continue
        if op != "run":
            _send(response_fd, {"op": "result", "id": request.get("id"), "status": "error", "phase": "protocol", "stderr": f"unknown op {op!r}"})
            continue
        code = str(request.get("code", ""))
        cell = int(request.get("cell", 0))
        max_output = int(request.get("max_output") or options["max_output"])
        arm_cpu_limit(float(request.get("cpu_s", 10.0)))
        result = executor.call(lambda: interpreter.run(code, cell, max_output))
        if request.get("replay"):
            result["stdout"] = ""
        _send(response_fd, {"op": "result", "id": request.get("id"), **_clean(result)})


def _clean(result: dict[str, Any]) -> dict[str, Any]:
    """Make text fields safe to encode (lone surrogates from sandbox strings)."""
    for key in ("stdout", "stderr"):
        value = result.get(key)
        if isinstance(value, str):
            result[key] = value.encode("utf-8", "replace").decode("utf-8")
    return result


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    options = dict(DEFAULTS)
    if args:
        options.update(json.loads(args[0]))
    serve(options)


if __name__ == "__main__":
    main()

"""One session's worker process: the OS layer, then a request loop (child side).

A worker is forked by the fork server (``zygote.py``) with numpy, SymPy and a
pristine ``Interpreter`` already loaded. Assuming the language filter will be escaped,
it locks itself down before it serves (``lock_down``), each layer recorded in its
``ready`` message:

1. Landlock (``landlock.py``): read-only access to the libraries, no other file, no
   signal or abstract socket outside the worker;
2. the thread that runs cells, started now (no threads can be made later);
3. real root dropped to ``nobody``; not dumpable (no ``/proc/<pid>/mem`` or ptrace by
   processes of the same uid); rlimits with hard = soft, and a hard CPU limit for the
   whole session (``session_cpu_s``);
4. seccomp (``seccomp.py``) with ``no_new_privs`` on both threads: no exec, fork,
   signals to others, sockets or filesystem writes; the cell thread may moreover not
   change any limit and may write only to descriptors 0-2 (``/dev/null``), so only this
   trusted main thread arms each run's CPU limit and answers the host.

One session is served over the worker's own socket, one frame per message: the JSON
text's length in bytes, a space, the JSON text, a newline.

    -> {"op": "run", "id": 1, "nonce": "9f..", "code": "...", "cell": 3, "cpu_s": 3.0,
        "max_output": 4000, "replay": false, "seed": 12345}
    <- {"op": "result", "id": 1, "nonce": "9f..", "status": "ok"|"error", "phase": "run"|"compile",
        "stdout": "...", "stderr": "...", "truncated": false, "wall_s": 0.01, "cpu_s": 0.4, "grown_mb": 21.5}
    <- {"op": "ready", "pid": 1234, "uid": 65534, "layers": {...}, "cpu_s": 0.1}   (once, first)

The host kills a worker whose reply is not one well-formed frame answering the id and
nonce it sent. Results cross as JSON text only: sandbox objects never reach the host.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import resource
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raysolve.sandbox import landlock, seccomp

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
    "session_cpu_s": 600,  # hard RLIMIT_CPU of a worker: all its runs together
    "landlock": True,
    "seccomp": True,
    "unrestricted_for_tests": False,
}

UNPRIVILEGED_UID = 65534  # "nobody" on every Linux distribution
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PROTOCOL_FDS = 2
"""The cell thread may write to descriptors up to this one (stdin/stdout/stderr: /dev/null)."""


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
    """Soft = hard = ``value`` (never above an existing hard limit): code that escapes the
    filter cannot raise a soft limit either."""
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass


def apply_limits(options: dict[str, Any]) -> None:
    """Process-wide limits, set once before serving: soft = hard, except CPU, whose hard limit
    bounds the whole session and whose soft limit ``arm_cpu_limit`` moves before each run."""
    _set_limit(resource.RLIMIT_CPU, int(options["session_cpu_s"]))
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


def arm_cpu_limit(seconds: float) -> bool:
    """RLIMIT_CPU counts CPU time since process start, so before each run the soft limit is
    moved to ``used + seconds``; the kernel's SIGXCPU then kills the worker (default action),
    which ``except:`` in sandbox code cannot swallow. Only this main thread may do it (the
    cell thread's seccomp filter refuses limit changes); never above the session's hard limit."""
    soft = int(cpu_seconds() + max(seconds, 0.1)) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ValueError, OSError):
        return False
    return True


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def resident_mb() -> float | None:
    """Resident memory from ``/proc/self/statm`` (microseconds to read, unlike ``smaps``)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE_MB
    except (OSError, ValueError, IndexError):
        return None


def _not_dumpable() -> bool:
    """No core dumps, and processes of the same uid may not ptrace this one or read its memory."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _layer(apply: Callable[[], Any]) -> Any:
    """Run one lock-down step; its result, or the reason it is not in force."""
    try:
        result = apply()
    except Exception as exc:  # noqa: BLE001 - reported, and refused by the host if required
        return f"unavailable: {type(exc).__name__}: {exc}"
    return True if result is None else result


def lock_down(options: dict[str, Any]) -> tuple["Executor", dict[str, Any]]:
    """Apply the OS layer (see the module docstring) in its order; returns the cell thread and
    what is in force, layer by layer (True, a version, or ``"unavailable: why"``)."""
    layers: dict[str, Any] = {}
    if options.get("landlock", True):
        layers["landlock"] = _layer(lambda: landlock.restrict(landlock.default_read_paths()))
    else:
        layers["landlock"] = "unavailable: switched off"
    executor = Executor(int(options["stack_mb"]))
    layers["dropped_root"] = drop_root() if options.get("drop_root", True) else False
    die_with_parent()  # again: a change of credentials clears the parent-death signal
    layers["not_dumpable"] = _not_dumpable()
    apply_limits(options)
    if options.get("seccomp", True):
        cell_thread = executor.call(lambda: _layer(lambda: seccomp.install(fd_writes_up_to=_PROTOCOL_FDS)))
        main_thread = _layer(lambda: seccomp.install(fd_writes_up_to=None))
        layers["seccomp"] = cell_thread if cell_thread is not True else main_thread
    else:
        layers["seccomp"] = "unavailable: switched off"
    layers["no_new_privs"] = seccomp.no_new_privs()
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    layers["cpu_limit"] = hard if hard != resource.RLIM_INFINITY else "unavailable: no hard CPU limit"
    return executor, layers


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
    """One frame: the JSON text's length, a space, the text, a newline."""
    text = json.dumps(message, ensure_ascii=True)
    channel.sendall(f"{len(text)} {text}\n".encode("ascii"))


def serve_session(interpreter: Interpreter, channel: socket.socket, options: dict[str, Any], parent: int) -> None:
    """Lock the process down, then answer requests until the channel closes."""
    executor, layers = lock_down(options)
    if os.getppid() != parent:
        return
    send(channel, {"op": "ready", "pid": os.getpid(), "uid": os.getuid(), "dropped_root": layers["dropped_root"],
                   "layers": layers, "cpu_s": cpu_seconds()})
    requests = channel.makefile("rb")
    libc = ctypes.CDLL(None)
    baseline = resident_mb() or 0.0  # what the worker holds from the fork server's libraries
    for line in requests:
        try:
            request = json.loads(line)
        except ValueError:
            send(channel, {"op": "result", "status": "error", "phase": "protocol", "stderr": "bad request"})
            continue
        op = request.get("op")
        echo = {"id": request.get("id"), "nonce": request.get("nonce")}
        if op == "exit":
            break
        if op == "ping":
            send(channel, {"op": "pong", **echo})
            continue
        if op == "unrestricted" and options.get("unrestricted_for_tests"):
            arm_cpu_limit(float(request.get("cpu_s", 10.0)))
            result = executor.call(lambda: _run_unrestricted(str(request.get("code", ""))))
        elif op != "run":
            send(channel, {"op": "result", **echo, "status": "error", "phase": "protocol", "stderr": f"unknown op {op!r}"})
            continue
        else:
            if request.get("seed") is not None:
                interpreter.reseed(int(request["seed"]))
            code = str(request.get("code", ""))
            cell = int(request.get("cell", 0))
            max_output = int(request.get("max_output") or options["max_output"])
            arm_cpu_limit(float(request.get("cpu_s", 10.0)))
            result = executor.call(lambda: interpreter.run(code, cell, max_output))
            if request.get("replay"):
                result["stdout"] = ""
        resident = resident_mb()
        grown = None if resident is None else max(0.0, resident - baseline)
        if grown is not None and grown > 64:
            try:
                libc.malloc_trim(0)  # a run that grew the heap: give what it freed back
            except AttributeError:
                pass
            resident = resident_mb()
            grown = None if resident is None else max(0.0, resident - baseline)
        send(channel, {"op": "result", **echo, **_clean(result), "cpu_s": cpu_seconds(),
                       "grown_mb": None if grown is None else round(grown, 1)})


def _run_unrestricted(code: str) -> dict[str, Any]:
    """TESTS ONLY (``SandboxConfig.unrestricted_for_tests``): run ``code`` as plain Python on the
    cell thread, the way code that escaped the language filter would run, to check that the OS
    layer alone contains it. ``print`` output is collected in memory."""
    import builtins
    import contextlib
    import io
    import traceback

    out = io.StringIO()
    status, err = "ok", ""
    with contextlib.redirect_stdout(out):
        try:
            exec(compile(code, "<unrestricted>", "exec"), {"__builtins__": builtins, "__name__": "__escaped__"})
        except BaseException:  # noqa: BLE001 - reported to the test
            status, err = "error", traceback.format_exc(limit=3)
    return {"status": status, "phase": "run", "stdout": out.getvalue()[-20000:], "stderr": err[-4000:],
            "truncated": False, "wall_s": 0.0}


def _clean(result: dict[str, Any]) -> dict[str, Any]:
    """Make text fields safe to encode (lone surrogates from sandbox strings)."""
    for key in ("stdout", "stderr"):
        value = result.get(key)
        if isinstance(value, str):
            result[key] = value.encode("utf-8", "replace").decode("utf-8")
    return result

"""Fork server for session workers: ``python -m raysolve.sandbox.zygote OPTIONS FD``.

Importing numpy and SymPy and building the curated modules takes ~0.4 s of CPU
(seconds where an image ships no ``.pyc`` files), and the first SymPy solve in a
process another ~0.1 s. The fork server pays that once: it starts with a clean
environment (in its own network namespace where allowed), loads and warms an
``Interpreter``, and then forks one worker per session on request. A fork costs
a few milliseconds and shares the loaded libraries copy-on-write.

It stays single-threaded (forking a threaded process is unsafe) and never runs
sandbox code itself. Control protocol on a SOCK_SEQPACKET socket (FD), one JSON
object per message:

    -> {"op": "fork", "token": 7}  + the worker's end of a socketpair (SCM_RIGHTS)
    <- {"op": "forked", "token": 7, "pid": 4242}   or  {"op": "error", "token": 7, ...}
    -> {"op": "kill", "pid": 4242}                 (SIGKILL to its process group)
    <- {"op": "exit", "pid": 4242, "returncode": -9}  (when a worker is reaped)
    <- {"op": "ready", "pid": 4200}                (once, after warm-up)

Kills go through the fork server because it alone reaps the workers, so a pid
it kills is never one the kernel has already given to another process.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
from typing import Any

from raysolve.sandbox.worker import DEFAULTS, die_with_parent, serve_session

_MAX_MESSAGE = 65536


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    try:
        control.send(json.dumps(message).encode("utf-8"))
    except OSError:
        pass


def _null_std_fds() -> None:
    """Point fds 0-2 at /dev/null: C code that writes there can't reach a pipe."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


class ForkServer:
    def __init__(self, options: dict[str, Any], control: socket.socket) -> None:
        from raysolve.sandbox.restricted import Interpreter

        self.options = options
        self.control = control
        self.interpreter = Interpreter(
            output_limit=int(options["max_output"]),
            memory_mb=options.get("memory_mb"),
            max_recursion=int(options["max_recursion"]),
            int_max_str_digits=options["int_max_str_digits"],
        )
        self.interpreter.warm_up()
        # Library code that prints (sympy.pprint, numpy warnings) lands in the cell's output.
        sys.stdout = sys.stderr = self.interpreter.sink  # type: ignore[assignment]
        self.children: set[int] = set()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd fires

    def serve(self) -> None:
        _send(self.control, {"op": "ready", "pid": os.getpid()})
        while True:
            readable, _, _ = select.select([self.control, self.wake_r], [], [])
            if self.wake_r in readable:
                os.read(self.wake_r, 4096)
                self._reap()
            if self.control in readable:
                data, fds, _, _ = socket.recv_fds(self.control, _MAX_MESSAGE, 1)
                if not data:  # the host closed the channel (or died): stop
                    return
                self._handle(json.loads(data), fds)

    def _handle(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        if op == "fork" and fds:
            channel_fd = fds[0]
            try:
                pid = os.fork()
            except OSError as exc:
                os.close(channel_fd)
                _send(self.control, {"op": "error", "token": message.get("token"), "error": str(exc)})
                return
            if pid == 0:
                self._become_worker(channel_fd)  # never returns
            os.close(channel_fd)
            self.children.add(pid)
            _send(self.control, {"op": "forked", "token": message.get("token"), "pid": pid})
        elif op == "kill":
            pid = int(message.get("pid", 0))
            if pid in self.children:  # not reaped yet: the pid (and group) is still that worker's
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                        break
                    except OSError:
                        continue
        else:
            for fd in fds:
                os.close(fd)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            _send(self.control, {"op": "exit", "pid": pid, "returncode": os.waitstatus_to_exitcode(status)})

    def _become_worker(self, channel_fd: int) -> None:
        """In the forked child: cut every tie to the fork server, then serve."""
        code = 0
        try:
            parent = os.getppid()
            os.setsid()  # own process group: the host kills the whole group
            die_with_parent()
            if os.getppid() != parent:
                os._exit(1)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.control.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            _null_std_fds()
            serve_session(self.interpreter, socket.socket(fileno=channel_fd), self.options, parent)
        except BaseException:  # noqa: BLE001 - nothing may unwind into the fork server's loop
            code = 1
        finally:
            os._exit(code)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    options = dict(DEFAULTS)
    options.update(json.loads(args[0]))
    control = socket.socket(fileno=int(args[1]))
    control.setblocking(True)
    die_with_parent()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes fail with EFBIG instead
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    server = ForkServer(options, control)  # start-up errors still reach the host's stderr pipe
    _null_std_fds()
    server.serve()


if __name__ == "__main__":
    main()

"""Equivalence by math-verify, bounded in time on any thread.

math-verify's own timeouts use ``signal.alarm``, which only works on the main thread;
the coordinator grades on a worker thread, where a comparison that makes SymPy build
an astronomically large number would never return. So:

- on the main thread, math-verify's timeouts do the bounding;
- off it, with a timeout, the comparison runs in a grading process (spawned once per
  process, math-verify imported there) that is killed and replaced when it overruns;
- without a timeout, inputs that would make SymPy compute for long (``10^{10^{10}}``,
  ``(10^9)!``, very long strings) are screened out and grade False.

math-verify sees the strings as written (``5\\text{ dollars}``), so it can drop units and
``\\text{}`` the way it intends.
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading
from typing import Any, Iterable

__all__ = ["math_verify_equal", "warm_up"]

_MAX_VERIFY_CHARS = 1000
_MAX_EXPONENT = 100_000
_MAX_LOG10 = 10_000  # |numeric powers| within 10^(+-10000)
_MAX_FACTORIAL = 10_000
_SPAWN_TIMEOUT_S = 120.0  # the grading process's start-up (imports SymPy): not the call's time


def math_verify_equal(gold: str, predicted: str, *, timeout_s: float | None = None) -> bool:
    """Whether math-verify finds ``predicted`` equal to ``gold``; False when either does not
    parse, is too large to compare safely, or the comparison overruns ``timeout_s``."""
    if len(gold) > _MAX_VERIFY_CHARS or len(predicted) > _MAX_VERIFY_CHARS:
        return False
    if timeout_s is None or threading.current_thread() is threading.main_thread():
        return _compare(gold, predicted, timeout_s)
    return _PROCESS.compare(gold, predicted, timeout_s)


def warm_up() -> None:
    """Import math-verify and SymPy here (seconds, once), so that the first problem's grade
    does not pay for it. The grading process starts only when a comparison needs it: most
    grades are decided by the vote keys alone."""
    _compare("x+1", "1+x", None)


def _compare(gold: str, predicted: str, timeout_s: float | None) -> bool:
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    from raysolve.core.canonical import quiet_math_verify

    quiet_math_verify()
    seconds = max(1, round(timeout_s)) if timeout_s is not None else None
    try:
        g = parse(f"${gold}$", parsing_timeout=seconds)  # type: ignore[arg-type]
        p = parse(f"${predicted}$", parsing_timeout=seconds)  # type: ignore[arg-type]
        if not g or not p or not (_tame(g) and _tame(p)):
            return False
        return bool(verify(g, p, timeout_seconds=seconds))
    except (Exception, TimeoutException):  # TimeoutException is a BaseException
        return False


def _tame(parsed: Iterable[Any]) -> bool:
    """True when no power or factorial in the parsed SymPy trees is large enough to stall an
    exact comparison. Children are checked before parents, so every ``evalf`` here works on
    bounded arguments; SymPy Floats carry huge exponents, so these checks cannot overflow."""
    from sympy import Basic, Float, Pow, postorder_traversal
    from sympy.functions.combinatorial.factorials import factorial, factorial2

    max_exp = Float(_MAX_EXPONENT)
    big, tiny = Float(f"1e{_MAX_LOG10}"), Float(f"1e-{_MAX_LOG10}")
    try:
        for expr in parsed:
            if not isinstance(expr, Basic):
                continue
            for node in postorder_traversal(expr):
                if isinstance(node, Pow):
                    if not node.exp.free_symbols and bool(abs(node.exp.evalf(15)) > max_exp):
                        return False  # (x+1)^{10^{10}} would stall expansion too
                    if not node.free_symbols:
                        v = abs(node.evalf(15))
                        if v != 0 and bool(v > big or v < tiny):
                            return False
                elif isinstance(node, (factorial, factorial2)):
                    arg = node.args[0]
                    if not arg.free_symbols and bool(abs(arg.evalf(15)) > _MAX_FACTORIAL):
                        return False
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return False  # an undecidable comparison (nan, zoo): don't risk it
    return True


def _serve(conn: Any) -> None:
    """The grading process: answer ``(gold, predicted, timeout_s)`` requests until the pipe
    closes. Its main thread gives math-verify's own timeouts too."""
    _compare("1", "1", None)  # imports before the ready signal
    conn.send("ready")
    while True:
        try:
            gold, predicted, timeout_s = conn.recv()
        except EOFError:
            return
        conn.send(_compare(gold, predicted, timeout_s))


class _GradingProcess:
    """One grading process per Python process, started on first use and replaced after a
    comparison overran (it is killed: that is the only way to stop SymPy mid-computation)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        atexit.register(self.stop)

    def compare(self, gold: str, predicted: str, timeout_s: float) -> bool:
        with self._lock:
            try:
                conn = self._started()
                conn.send((gold, predicted, timeout_s))
                if conn.poll(timeout_s):
                    return bool(conn.recv())
            except (OSError, EOFError, TimeoutError):
                pass
            self._stop()  # overran or died: the next comparison gets a fresh process
            return False

    def _started(self) -> Any:
        if self._proc is not None and self._proc.is_alive():
            return self._conn
        self._stop()
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded (Ray) process
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child,), name="raysolve-grading", daemon=True)
        self._proc.start()
        child.close()
        if not self._conn.poll(_SPAWN_TIMEOUT_S) or self._conn.recv() != "ready":
            raise TimeoutError("the grading process did not start")
        return self._conn

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def stop(self) -> None:
        with self._lock:
            self._stop()


_PROCESS = _GradingProcess()

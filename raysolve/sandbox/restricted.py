"""Restricted execution of model-written cells, inside the worker process.

One ``Interpreter`` holds one session: a single globals dict shared by every
cell (a separate locals dict would break recursion and comprehensions), guarded
builtins (``guards.py``), the compiler policy (``policy.py``) and curated
modules (``modules.py``). This is a language filter only: the worker process and
its OS limits are the real boundary.
"""

from __future__ import annotations

import builtins
import collections
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

from RestrictedPython import compile_restricted_exec, safe_builtins
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

from raysolve.sandbox.guards import (
    NATIVE_ATTRIBUTE_TYPES,
    OPEN_CONTAINERS,
    OWN_CLASSES,
    PLAIN_VALUES,
    check_item,
    guarded_apply,
    guarded_delattr,
    guarded_getattr,
    guarded_getitem,
    guarded_hasattr,
    guarded_setattr,
    guarded_type,
    inplace_attr,
    inplace_item,
    inplace_var,
    sandbox_metaclass,
    write_guard,
)
from raysolve.sandbox.modules import INSTEAD, ModuleRegistry, StandIn, make_fake_module
from raysolve.sandbox.policy import SandboxPolicy, format_compile_errors
from raysolve.sandbox.scope import cell_function, keeps_names_global

_MAX_ERROR_CHARS = 2000
_MAX_FRAMES = 8


class StopCell(BaseException):
    """Raised by ``exit()``/``quit()``/``sys.exit()``: ends the cell, not the worker."""


# ---------------------------------------------------------------- output


class OutputSink:
    """Bounded collector for ``print`` and library writes to stdout/stderr.

    Keeps the head and the tail of the text (the answer is usually printed
    last) and counts what was dropped in between.
    """

    __slots__ = ("_head", "_head_len", "_tail", "_tail_len", "_total", "_limit")
    encoding = "utf-8"
    errors = "replace"

    def __init__(self, limit: int = 4000) -> None:
        self._reset(limit)

    def _reset(self, limit: int) -> None:
        self._limit = max(int(limit), 64)
        self._head: list[str] = []
        self._head_len = 0
        self._tail: list[str] = []
        self._tail_len = 0
        self._total = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        size = len(text)
        self._total += size
        head_cap = self._limit * 2 // 3
        room = head_cap - self._head_len
        if room > 0:
            piece = text[:room]
            self._head.append(piece)
            self._head_len += len(piece)
            text = text[room:] if size > room else ""
        if text:
            tail_cap = self._limit - head_cap
            self._tail.append(text)
            self._tail_len += len(text)
            if self._tail_len > 2 * tail_cap:
                kept = "".join(self._tail)[-tail_cap:]
                self._tail = [kept]
                self._tail_len = len(kept)
        return size

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def _getvalue(self) -> tuple[str, bool]:
        """The collected text and whether anything was cut out."""
        head = "".join(self._head)
        tail = "".join(self._tail)
        if self._total <= self._limit:
            return head + tail, False
        tail_cap = self._limit - self._limit * 2 // 3
        tail = tail[-tail_cap:]
        dropped = self._total - len(head) - len(tail)
        return f"{head}\n...[{dropped} characters truncated]...\n{tail}", True

    def _call_print(self, *objects: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False) -> None:
        if file is None or file is self:
            builtins.print(*objects, sep=sep, end=end, file=self)
        else:
            guarded_getattr(file, "write")
            builtins.print(*objects, sep=sep, end=end, file=file)


# ---------------------------------------------------------------- errors


def _exception_line(exc: BaseException, memory_mb: int | None) -> str:
    name = type(exc).__name__
    if isinstance(exc, MemoryError):
        limit = f" (sandbox limit {memory_mb} MB)" if memory_mb else ""
        return f"MemoryError: out of memory{limit}"
    try:
        message = str(exc)
    except BaseException:
        message = "<exception message could not be printed>"
    if len(message) > _MAX_ERROR_CHARS:
        message = message[:_MAX_ERROR_CHARS] + "...[truncated]"
    return f"{name}: {message}" if message else name


def _repeated(repeats: int) -> list[str]:
    extra = repeats - 2
    if extra <= 0:
        return []
    return [f"  [Previous line repeated {extra} more time{'s' if extra != 1 else ''}]"]


def format_exception(exc: BaseException, sources: dict[str, str], memory_mb: int | None = None) -> str:
    """A short traceback that shows only frames of sandbox cells, then the
    exception line, the way Python prints it."""
    frames: collections.deque[tuple[str, int, str]] = collections.deque(maxlen=_MAX_FRAMES)
    skipped = 0
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename in sources:
            if len(frames) == frames.maxlen:
                skipped += 1
            frames.append((filename, lineno, frame.f_code.co_name))
    parts = []
    if frames:
        parts.append("Traceback (most recent call last):")
        if skipped:
            parts.append(f"  [... {skipped} earlier frames not shown ...]")
        previous, repeats = None, 0
        for frame_info in frames:
            if frame_info == previous:
                repeats += 1
                if repeats >= 3:  # like Python: three identical frames, then a count
                    continue
            else:
                parts.extend(_repeated(repeats))
                previous, repeats = frame_info, 0
            filename, lineno, func = frame_info
            parts.append(f'  File "{filename}", line {lineno}, in {func}')
            lines = sources[filename].splitlines()
            if 0 < lineno <= len(lines) and lines[lineno - 1].strip():
                parts.append(f"    {lines[lineno - 1].strip()[:200]}")
        parts.extend(_repeated(repeats))
    parts.append(_exception_line(exc, memory_mb))
    return "\n".join(parts)


# ---------------------------------------------------------------- interpreter


def _sandbox_dir(*args: Any) -> list[str]:
    """``dir()``: the public names of an object, or of the cell's own variables (no guard
    names, nothing starting with ``_``)."""
    if len(args) > 1:
        raise TypeError(f"dir expected at most 1 argument, got {len(args)}")
    if args:
        names = dir(args[0])
    else:
        names = list(sys._getframe(1).f_globals)  # the cell's globals (cells run at module level)
    return sorted(n for n in names if not n.startswith("_") and n not in _HIDDEN_GLOBALS)


_HIDDEN_GLOBALS = frozenset({"printed"})


def _unavailable(name: str, why: str = "") -> Callable[..., Any]:
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(f"{name}() is not available in the sandbox{why}")

    unavailable.__name__ = name
    return unavailable


def _stop_cell(code: Any = None) -> None:
    raise StopCell(code)


_EXCEPTIONS = (
    "RecursionError", "TimeoutError", "PermissionError", "FileNotFoundError",
    "ModuleNotFoundError", "StopAsyncIteration", "ZeroDivisionError",
)


def build_builtins(import_hook: Callable[..., Any]) -> dict[str, Any]:
    """safe_builtins, minus process-ending exceptions, plus what math code uses."""
    names = dict(safe_builtins)
    for name in ("SystemExit", "KeyboardInterrupt", "GeneratorExit", "BaseException", "_getattr_"):
        names.pop(name, None)
    names.update(
        {
            "sorted": sorted, "zip": zip, "tuple": tuple, "bytes": bytes, "bytearray": bytearray,
            "range": range, "enumerate": enumerate, "map": map, "filter": filter, "sum": sum,
            "min": min, "max": max, "abs": abs, "all": all, "any": any, "list": list,
            "dict": dict, "set": set, "frozenset": frozenset, "reversed": reversed,
            "round": round, "divmod": divmod, "pow": pow, "isinstance": isinstance,
            "issubclass": issubclass, "len": len, "iter": iter, "next": next, "bin": bin,
            "ascii": ascii, "format": format, "object": object, "super": super,
            "property": property, "staticmethod": staticmethod, "classmethod": classmethod,
            "NotImplemented": NotImplemented, "type": guarded_type,
            "getattr": guarded_getattr, "hasattr": guarded_hasattr,
            "setattr": guarded_setattr, "delattr": guarded_delattr,
            "exit": _stop_cell, "quit": _stop_cell, "__import__": import_hook,
            "open": _unavailable("open", " (no file access)"),
            "input": _unavailable("input", " (no standard input)"),
            "eval": _unavailable("eval"), "exec": _unavailable("exec"),
            "compile": _unavailable("compile"), "globals": _unavailable("globals"),
            "locals": _unavailable("locals"), "vars": _unavailable("vars"),
            "dir": _sandbox_dir, "help": _unavailable("help"),
            "memoryview": _unavailable("memoryview"),
        }
    )
    for name in _EXCEPTIONS:
        names[name] = getattr(builtins, name)
    return names


WARM_UP_CELL = """
import math, itertools, fractions, collections, functools
import numpy as np
from sympy import *
x, y = symbols('x y')
solve([x + y - 3, x - y - 1], [x, y]); solve(x**2 - 2, x); factor(x**4 - 1); expand((x + y)**3)
simplify((x**2 - 1) / (x - 1)); Matrix([[1, 2], [3, 4]]).det(); Matrix([[1, 2], [3, 4]]).inv()
nsolve(x**2 - 2, x, 1); N(pi, 30); Rational(1, 3) + Rational('1/6'); isprime(97); factorint(360)
summation(x**2, (x, 1, 10)); limit(sin(x) / x, x, 0); diff(sin(x) * x, x); integrate(x**2, (x, 0, 1))
print(np.arange(6).reshape(2, 3), np.linalg.det(np.eye(2)), np.array([1.5, 2.25]))
"""
"""A cell run once in the fork server before any session (see ``Interpreter.warm_up``)."""


_WALRUS_REFUSED = ("assignment expression", "named expression")
"""Python's errors for `:=` where it may not stand ("assignment expression cannot be used in a
comprehension iterable expression", "'named expression' can not be used within an annotation")."""


def _walrus_refused(text: str) -> bool:
    return any(marker in text for marker in _WALRUS_REFUSED)


class Interpreter:
    """One sandbox session: compile each cell with RestrictedPython and run it
    in the session's persistent globals.

    Importing this class does not import numpy or sympy; constructing it does
    (and hardens SymPy process-wide), which is why only the worker builds one.
    """

    def __init__(
        self,
        *,
        output_limit: int = 4000,
        memory_mb: int | None = None,
        max_recursion: int = 20000,
        int_max_str_digits: int = 100_000,
        preload: bool = True,
    ) -> None:
        from raysolve.sandbox.hardening import install_sympy_hardening

        install_sympy_hardening()
        if int_max_str_digits is not None and hasattr(sys, "set_int_max_str_digits"):
            sys.set_int_max_str_digits(int_max_str_digits)
        self.output_limit = output_limit
        self.memory_mb = memory_mb
        self.max_recursion = max_recursion
        self.sink = OutputSink(output_limit)
        self.sources: dict[str, str] = {}
        self.registry = ModuleRegistry(fakes={"sys": self._fake_sys()})
        if preload:
            self.registry.preload()
        registry = self.registry

        class Policy(SandboxPolicy):
            star_names = staticmethod(registry.star_names)

        class GuardedPolicy(Policy):
            fast_subscripts = False

        class ModulePolicy(Policy):
            function_scope = False

        class GuardedModulePolicy(GuardedPolicy):
            function_scope = False

        self._policy, self._guarded_policy = Policy, GuardedPolicy
        self._module_policy, self._guarded_module_policy = ModulePolicy, GuardedModulePolicy
        self.builtins = build_builtins(self._import)
        self.globals = self._fresh_globals()

    def reset(self) -> None:
        """Forget every variable and cell: the state a new session starts from."""
        self.globals = self._fresh_globals()
        self.sources.clear()
        self.sink._reset(self.output_limit)

    def reseed(self, seed: int) -> None:
        """Seed ``random`` and ``numpy.random``: each session draws its own numbers,
        and a session rebuilt by replay draws the same ones again."""
        import random

        import numpy

        random.seed(seed)
        numpy.random.seed(seed % 2**32)

    def warm_up(self) -> None:
        """Run the library paths model code hits first (SymPy's solvers and caches,
        NumPy's printing), then reset: a fork server calls this once so that no
        session pays for lazy imports and first-call set-up."""
        self.run(WARM_UP_CELL, 0)
        self.reset()

    # -- wiring

    def _fresh_globals(self) -> dict[str, Any]:
        sink = self.sink
        return {
            "__builtins__": self.builtins,
            "__name__": "__main__",
            "__metaclass__": sandbox_metaclass,
            "_getattr_": guarded_getattr,
            "_getitem_": guarded_getitem,
            "_getiter_": iter,
            "_write_": write_guard,
            "_inplacevar_": inplace_var,
            "_inplaceitem_": inplace_item,
            "_inplaceattr_": inplace_attr,
            "_apply_": guarded_apply,
            "_print_": lambda _getattr=None: sink,
            "_unpack_sequence_": guarded_unpack_sequence,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            "_type_": type,
            "_plain_values_": PLAIN_VALUES,
            "_plain_types_": NATIVE_ATTRIBUTE_TYPES,
            "_own_classes_": OWN_CLASSES,
            "_open_containers_": OPEN_CONTAINERS,
            "_checkitem_": check_item,
        }

    def _import(self, name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> StandIn:
        """``__import__``: stand-ins of allowlisted modules only.

        C code that imports lazily (``PyImport_Import``, e.g. numpy's array
        printing) looks ``__import__`` up in the builtins of the running Python
        frame, which is the sandbox's; it passes a *list* as ``fromlist`` and
        then takes the module from ``sys.modules``, ignoring the return value.
        Import statements compile to a tuple or None, so list-fromlist calls are
        the library's and get the real import.
        """
        if type(fromlist) is list:
            return builtins.__import__(name, globals, locals, fromlist, level)
        if level:
            raise ImportError("relative imports are not allowed")
        if type(name) is not str or not self.registry.allowed(name):
            hint = INSTEAD.get(name.split(".")[0], "")
            raise ImportError(f"import of '{name}' is not allowed{'; ' + hint if hint else ''}")
        module = self.registry.get(name)
        if fromlist:
            for item in fromlist:
                if item != "*" and item not in module.__dict__:
                    hidden = item in module.__dict__.get("_hidden", ())
                    why = " (not available in the sandbox)" if hidden else ""
                    raise ImportError(f"cannot import name '{item}' from '{name}'{why}")
            return module
        return self.registry.get(name.split(".", 1)[0])

    def _fake_sys(self) -> StandIn:
        sink = self.sink
        limit = self.max_recursion

        def setrecursionlimit(n: int) -> None:
            if not isinstance(n, int) or n < 1:
                raise ValueError("recursion limit must be a positive integer")
            sys.setrecursionlimit(max(100, min(int(n), limit)))

        def set_int_max_str_digits(n: int) -> None:
            sys.set_int_max_str_digits(n)

        attrs: dict[str, Any] = {
            "setrecursionlimit": setrecursionlimit,
            "getrecursionlimit": sys.getrecursionlimit,
            "set_int_max_str_digits": set_int_max_str_digits,
            "get_int_max_str_digits": sys.get_int_max_str_digits,
            "maxsize": sys.maxsize, "float_info": sys.float_info, "int_info": sys.int_info,
            "version": sys.version, "version_info": sys.version_info, "hexversion": sys.hexversion,
            "byteorder": sys.byteorder, "platform": sys.platform, "maxunicode": sys.maxunicode,
            "float_repr_style": sys.float_repr_style, "argv": [],
            "stdout": sink, "stderr": sink, "exit": _stop_cell,
        }
        return make_fake_module("sys", attrs, "The sandbox's sys: recursion and int-digit limits, stdout.")

    # -- running

    def _compile_with(self, code: str, filename: str, fast: type, guarded: type) -> Any:
        """RestrictedPython's compile with the inline fast paths, or with guard calls only where
        they met a place Python keeps ``:=`` out of."""
        try:
            result = compile_restricted_exec(code, filename=filename, policy=fast)
            if not (result.code is None and any(_walrus_refused(e) for e in result.errors)):
                return result
        except SyntaxError as exc:
            if not _walrus_refused(str(exc)):
                raise
        return compile_restricted_exec(code, filename=filename, policy=guarded)

    def compile(self, code: str, filename: str) -> tuple[types.CodeType | None, str]:
        """The cell's code: its top level as a function (``scope.py``) where that runs the same,
        else as a module; an error names what Python or the policy found at module level."""
        try:
            try:
                result = self._compile_with(code, filename, self._policy, self._guarded_policy)
                if result.code is not None and not result.errors:
                    function = cell_function(result.code)
                    if function is None:  # left at module level (``from __future__``, ``return``, …)
                        return result.code, ""
                    if keeps_names_global(function):
                        return function, ""
            except SyntaxError:
                pass
            result = self._compile_with(code, filename, self._module_policy, self._guarded_module_policy)
        except (SyntaxError, ValueError, TypeError) as exc:
            return None, f"SyntaxError: {exc}"
        except RecursionError:
            return None, "SyntaxError: code is nested too deeply to compile"
        if result.errors or result.code is None:
            return None, format_compile_errors(list(result.errors) or ["Line 1: could not compile"])
        return result.code, ""

    def run(self, code: str, cell: int = 0, output_limit: int | None = None) -> dict[str, Any]:
        """Run one cell; returns ``status`` (ok/error), ``phase`` (compile/run),
        ``stdout``, ``stderr``, ``truncated`` and ``wall_s``. Never raises."""
        filename = f"<cell {cell}>"
        self.sink._reset(output_limit or self.output_limit)
        started = time.perf_counter()
        compiled, error = self.compile(code, filename)
        if compiled is None:
            return self._result("error", "compile", error, started)
        self.sources[filename] = code
        status, error = "ok", ""
        try:
            exec(compiled, self.globals)
        except StopCell as stop:
            if stop.args and stop.args[0] not in (None, 0) and not isinstance(stop.args[0], int):
                error = str(stop.args[0])
        except BaseException as exc:  # noqa: BLE001 - everything becomes text for the model
            status = "error"
            error = format_exception(exc, self.sources, self.memory_mb)
            exc.__traceback__ = None
        return self._result(status, "run", error, started)

    def _result(self, status: str, phase: str, error: str, started: float) -> dict[str, Any]:
        stdout, truncated = self.sink._getvalue()
        self.sink._reset(self.output_limit)
        return {
            "status": status,
            "phase": phase,
            "stdout": stdout,
            "stderr": error,
            "truncated": truncated,
            "wall_s": round(time.perf_counter() - started, 6),
        }

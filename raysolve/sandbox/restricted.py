"""Restricted execution of model-written cells, inside the worker process.

One ``Interpreter`` holds one session: a single globals dict shared by every
cell (a separate locals dict would break recursion and comprehensions), guarded
builtins, and the guard functions RestrictedPython's compiler wires attribute,
item, iteration and write operations to. This is a language filter only: the
worker process and its OS limits are the real boundary.
"""

from __future__ import annotations

import _string  # type: ignore[import-not-found]  # str.format's field parser
import ast
import builtins
import collections
import operator
import re
import string
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

from RestrictedPython import compile_restricted_exec, safe_builtins
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import (
    INSPECT_ATTRIBUTES,
    IOPERATOR_TO_STR,
    RestrictingNodeTransformer,
    copy_locations,
)

from raysolve.sandbox.modules import ModuleRegistry, StandIn, make_fake_module

_MAX_ERROR_CHARS = 2000
_MAX_FRAMES = 6

# Attributes refused at run time (the compiler refuses literal ``_x`` and the
# inspect names; ``getattr(obj, name)`` and ``str.format`` come through here).
DENIED_ATTRIBUTES = frozenset(INSPECT_ATTRIBUTES) | {
    "mro", "gi_running", "gi_suspended", "cr_running", "ag_running",
    "func_globals", "func_code", "f_lasti", "tb_lasti",
    "tofile", "dump", "ctypes", "cffi",  # numpy: file writes, raw pointers, C function pointers
}

# Dunder attributes that may be read (``super().__init__(...)``, ``type(x).__name__``).
READABLE_DUNDERS = frozenset({"__init__", "__name__"})

# Dunder methods sandbox classes may define (RestrictedPython allows only
# __init__, comparisons and __contains__).
EXTRA_MAGIC_METHODS = frozenset(
    {
        "__init__", "__repr__", "__str__", "__hash__", "__len__", "__iter__", "__next__",
        "__getitem__", "__setitem__", "__delitem__", "__call__", "__bool__",
        "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
        "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__",
        "__rmod__", "__pow__", "__rpow__", "__neg__", "__pos__", "__abs__",
        "__matmul__", "__and__", "__or__", "__xor__", "__lshift__", "__rshift__",
        "__enter__", "__exit__", "__contains__",
        "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
    }
)

_INPLACE_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul,
    "/=": operator.itruediv, "//=": operator.ifloordiv, "%=": operator.imod,
    "**=": operator.ipow, "<<=": operator.ilshift, ">>=": operator.irshift,
    "|=": operator.ior, "^=": operator.ixor, "&=": operator.iand, "@=": operator.imatmul,
}


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
        self.reset(limit)

    def reset(self, limit: int) -> None:
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

    def getvalue(self) -> tuple[str, bool]:
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


# ---------------------------------------------------------------- guards


def _refuse_attribute(name: str) -> AttributeError:
    if name.startswith("_"):
        return AttributeError(f"access to '{name}' is not allowed in the sandbox (names starting with '_' are private)")
    return AttributeError(f"access to '{name}' is not allowed in the sandbox")


def _is_foreign_module(value: object) -> bool:
    return isinstance(value, types.ModuleType) and not isinstance(value, StandIn)


class _GuardedFormatter(string.Formatter):
    """``str.format`` whose ``{0.attr}`` / ``{0[key]}`` fields go through the guards."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, key in rest:
            obj = guarded_getattr(obj, key) if is_attr else guarded_getitem(obj, key)
        return obj, first


_FORMATTER = _GuardedFormatter()


def _safe_format_method(template: str, name: str) -> Callable[..., str]:
    if name == "format":

        def format(*args: Any, **kwargs: Any) -> str:
            return _FORMATTER.vformat(template, args, kwargs)

        return format

    def format_map(mapping: Any) -> str:
        return _FORMATTER.vformat(template, (), mapping)

    return format_map


def _safe_unbound_format(name: str) -> Callable[..., str]:
    def unbound(template: str, *args: Any, **kwargs: Any) -> str:
        if not isinstance(template, str):
            raise TypeError(f"descriptor '{name}' requires a 'str' object")
        return _safe_format_method(template, name)(*args, **kwargs)

    return unbound


_MISSING = object()


def guarded_getattr(obj: Any, name: str, default: Any = _MISSING) -> Any:
    """``_getattr_`` and the ``getattr`` builtin: no private names, no deny-listed
    names, no real modules in or out; ``str.format`` is replaced by a guarded one."""
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if (name.startswith("_") and name not in READABLE_DUNDERS) or name in DENIED_ATTRIBUTES:
        raise _refuse_attribute(name)
    if _is_foreign_module(obj):
        raise AttributeError(f"access to module '{getattr(obj, '__name__', '?')}' is not allowed in the sandbox")
    if name in ("format", "format_map"):
        if isinstance(obj, str):
            return _safe_format_method(obj, name)
        if isinstance(obj, type) and issubclass(obj, str):
            return _safe_unbound_format(name)
    try:
        value = getattr(obj, name)
    except AttributeError:
        if default is _MISSING:
            raise
        return default
    if _is_foreign_module(value):
        raise AttributeError(f"'{name}' is a module that is not available in the sandbox")
    return value


def guarded_hasattr(obj: Any, name: str) -> bool:
    try:
        guarded_getattr(obj, name)
    except AttributeError:
        return False
    return True


def guarded_getitem(obj: Any, index: Any) -> Any:
    value = obj[index]
    if _is_foreign_module(value):
        raise TypeError("modules are not available in the sandbox")
    return value


SANDBOX_CLASSES: set[type] = set()


def sandbox_metaclass(name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> type:
    """``__metaclass__``: build the class with its natural metaclass and remember
    it, so ``_write_`` lets its instances set attributes (``self.x = 1``)."""
    meta: type = type
    for base in bases:
        candidate = type(base)
        if issubclass(meta, candidate):
            continue
        if issubclass(candidate, meta):
            meta = candidate
            continue
        raise TypeError("metaclass conflict: the metaclass of a derived class must be a subclass of the metaclasses of all its bases")
    cls = meta(name, bases, namespace, **kwargs)
    SANDBOX_CLASSES.add(cls)
    return cls


class _ReadOnly:
    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def _describe(self) -> str:
        target = object.__getattribute__(self, "_target")
        if isinstance(target, types.ModuleType):
            return f"module '{target.__name__}'"
        return f"class '{getattr(target, '__name__', '?')}'"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot set attributes of {self._describe()} in the sandbox")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete attributes of {self._describe()} in the sandbox")

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError(f"{self._describe()} does not support item assignment in the sandbox")

    def __delitem__(self, key: Any) -> None:
        raise TypeError(f"{self._describe()} does not support item deletion in the sandbox")


class _Writable:
    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_target"), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(object.__getattribute__(self, "_target"), name)

    def __setitem__(self, key: Any, value: Any) -> None:
        object.__getattribute__(self, "_target")[key] = value

    def __delitem__(self, key: Any) -> None:
        del object.__getattribute__(self, "_target")[key]


def write_guard(obj: Any) -> Any:
    """``_write_``: modules and library classes are read-only; everything else
    (containers, arrays, matrices, instances) can be written."""
    kind = type(obj)
    if kind is dict or kind is list or kind in SANDBOX_CLASSES:
        return obj
    if isinstance(obj, type):
        return obj if obj in SANDBOX_CLASSES else _ReadOnly(obj)
    if isinstance(obj, types.ModuleType):
        return _ReadOnly(obj)
    return _Writable(obj)


def _check_write_name(name: Any) -> None:
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if name.startswith("_") or name in DENIED_ATTRIBUTES:
        raise _refuse_attribute(name)


def guarded_setattr(obj: Any, name: str, value: Any) -> None:
    _check_write_name(name)
    setattr(write_guard(obj), name, value)


def guarded_delattr(obj: Any, name: str) -> None:
    _check_write_name(name)
    delattr(write_guard(obj), name)


def inplace_var(op: str, target: Any, value: Any) -> Any:
    """``_inplacevar_``: ``x += y`` on a plain name."""
    return _INPLACE_OPS[op](target, value)


def inplace_item(obj: Any, key: Any, op: str, value: Any) -> None:
    """``d[k] += v``: read through ``_getitem_``, write through ``_write_``."""
    write_guard(obj)[key] = _INPLACE_OPS[op](guarded_getitem(obj, key), value)


def inplace_attr(obj: Any, name: str, op: str, value: Any) -> None:
    """``self.n += 1``: read through ``_getattr_``, write through ``_write_``."""
    setattr(write_guard(obj), name, _INPLACE_OPS[op](guarded_getattr(obj, name), value))


def guarded_apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


def guarded_type(obj: Any, /) -> type:
    """One-argument ``type`` only: creating classes goes through ``class``."""
    return type(obj)


# ---------------------------------------------------------------- compiler policy


class SandboxPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy plus a few things model code writes a lot:
    ``d[k] += 1`` / ``self.n += 1``, ``x: int = 1``, ``nonlocal``,
    ``if __name__ == "__main__":``, common dunder methods in classes, and
    ``from sympy import *`` (expanded to the stand-in's public names)."""

    star_names: Callable[[str], list[str] | None] = staticmethod(lambda name: None)

    def check_name(self, node: Any, name: str | None, allow_magic_methods: bool = False) -> None:
        if allow_magic_methods and name in EXTRA_MAGIC_METHODS and getattr(node, "col_offset", 0) != 0:
            return
        super().check_name(node, name, allow_magic_methods)

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id == "__name__" and isinstance(node.ctx, ast.Load):
            return node
        return super().visit_Name(node)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        if node.attr in READABLE_DUNDERS and isinstance(node.ctx, ast.Load):
            call = ast.Call(
                func=ast.Name("_getattr_", ast.Load()),
                args=[self.visit(node.value), ast.Constant(node.attr)],
                keywords=[],
            )
            copy_locations(call, node)
            ast.fix_missing_locations(call)
            return call
        return super().visit_Attribute(node)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> Any:
        for name in node.names:
            self.check_name(node, name)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
        if node.value is None:
            self.visit(node.target)
            return copy_locations(ast.Pass(), node)
        assign = ast.Assign(targets=[node.target], value=node.value)
        copy_locations(assign, node)
        return self.visit_Assign(assign)

    def _check_attr_target(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_"):
            self.error(node, f'"{node.attr}" is an invalid attribute name because it starts with "_".')
        elif node.attr in INSPECT_ATTRIBUTES:
            self.error(node, f'"{node.attr}" is a restricted name, that is forbidden to access in RestrictedPython.')

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        target = node.target
        op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
        if isinstance(target, ast.Subscript):
            args = [self.visit(target.value), self.visit(target.slice), op, self.visit(node.value)]
            helper = "_inplaceitem_"
        elif isinstance(target, ast.Attribute):
            self._check_attr_target(target)
            args = [self.visit(target.value), ast.Constant(target.attr), op, self.visit(node.value)]
            helper = "_inplaceattr_"
        else:
            return super().visit_AugAssign(node)
        call = ast.Call(func=ast.Name(helper, ast.Load()), args=args, keywords=[])
        stmt = ast.Expr(value=call)
        copy_locations(stmt, node)
        ast.fix_missing_locations(stmt)
        return stmt

    def visit_ImportFrom(self, node: ast.ImportFrom) -> Any:
        if any(alias.name == "*" for alias in node.names):
            names = self.star_names(node.module or "") if node.level == 0 else None
            if names is None:
                # Let the guarded __import__ give the usual ImportError at run time.
                stmt = ast.Import(names=[ast.alias(name=node.module or ".")])
            else:
                stmt = ast.ImportFrom(module=node.module, names=[ast.alias(name=n) for n in names], level=0)
            copy_locations(stmt, node)
            for alias in stmt.names:
                copy_locations(alias, node)
            node = stmt  # type: ignore[assignment]
            if isinstance(node, ast.Import):
                return self.visit_Import(node)
        return super().visit_ImportFrom(node)


# ---------------------------------------------------------------- errors


_COMPILE_ERROR = re.compile(r"^Line (\d+): (?:(SyntaxError|IndentationError|TabError): )?(.*)$", re.S)


def format_compile_errors(errors: list[str]) -> str:
    """RestrictedPython's ``Line 3: ...`` messages as ``SyntaxError: line 3: ...``."""
    lines = []
    for error in errors[:5]:
        match = _COMPILE_ERROR.match(error)
        if match:
            lineno, kind, message = match.groups()
            lines.append(f"{kind or 'SyntaxError'}: line {lineno}: {message.strip()}")
        else:
            lines.append(f"SyntaxError: {error}")
    if len(errors) > 5:
        lines.append(f"... and {len(errors) - 5} more errors")
    return "\n".join(lines)


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
        for filename, lineno, func in frames:
            parts.append(f'  File "{filename}", line {lineno}, in {func}')
            lines = sources[filename].splitlines()
            if 0 < lineno <= len(lines) and lines[lineno - 1].strip():
                parts.append(f"    {lines[lineno - 1].strip()[:200]}")
    parts.append(_exception_line(exc, memory_mb))
    return "\n".join(parts)


# ---------------------------------------------------------------- interpreter


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
            "dir": _unavailable("dir"), "help": _unavailable("help"),
            "memoryview": _unavailable("memoryview"),
        }
    )
    for name in _EXCEPTIONS:
        names[name] = getattr(builtins, name)
    return names


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

        self._policy = Policy
        self.builtins = build_builtins(self._import)
        self.globals = self._fresh_globals()

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
            raise ImportError(f"import of '{name}' is not allowed")
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

    def compile(self, code: str, filename: str) -> tuple[types.CodeType | None, str]:
        try:
            result = compile_restricted_exec(code, filename=filename, policy=self._policy)
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
        self.sink.reset(output_limit or self.output_limit)
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
        stdout, truncated = self.sink.getvalue()
        self.sink.reset(self.output_limit)
        return {
            "status": status,
            "phase": phase,
            "stdout": stdout,
            "stderr": error,
            "truncated": truncated,
            "wall_s": round(time.perf_counter() - started, 6),
        }

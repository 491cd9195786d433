"""Guard functions RestrictedPython's compiled code calls (worker side).

``_getattr_``/``getattr``: no private names, no deny-listed names, no real
modules in or out, ``str.format`` (however it is reached, ``super()`` included)
replaced by a guarded formatter, metaclasses seen only through ``MetaclassView``
(no three-argument class creation). ``_write_``: modules, library classes and
library objects' attributes are read-only (items of containers and arrays stay
writable). ``_apply_``: no keyword names starting with ``_`` from ``**`` mappings.
``__metaclass__`` remembers classes the sandbox defines, whose instances may set
attributes.
"""

from __future__ import annotations

import _string  # type: ignore[import-not-found]  # str.format's field parser
import collections
import operator
import string
import types
from collections.abc import Callable
from typing import Any

from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from raysolve.sandbox.modules import StandIn, view_of_metaclass

# Attributes refused at run time (the compiler refuses literal ``_x`` and the
# inspect names; ``getattr(obj, name)`` and ``str.format`` come through here).
DENIED_ATTRIBUTES = frozenset(INSPECT_ATTRIBUTES) | {
    "mro", "gi_running", "gi_suspended", "cr_running", "ag_running",
    "func_globals", "func_code", "f_lasti", "tb_lasti",
    "tofile", "dump", "ctypes", "cffi",  # numpy: file writes, raw pointers, C function pointers
}

# Dunder attributes that may be read (``super().__init__(...)``, ``type(x).__name__``).
READABLE_DUNDERS = frozenset({"__init__", "__name__"})

_INPLACE_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul,
    "/=": operator.itruediv, "//=": operator.ifloordiv, "%=": operator.imod,
    "**=": operator.ipow, "<<=": operator.ilshift, ">>=": operator.irshift,
    "|=": operator.ior, "^=": operator.ixor, "&=": operator.iand, "@=": operator.imatmul,
}


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


_NAMEDTUPLE_API = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})


def _is_namedtuple(obj: Any) -> bool:
    cls = obj if isinstance(obj, type) else type(obj)
    return issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple)


_PLAIN_TYPES = frozenset({
    list, dict, set, frozenset, tuple, str, int, float, complex, bool, bytes, bytearray, range,
    collections.deque, collections.Counter, collections.defaultdict, collections.OrderedDict,
})
"""Built-in values whose public attributes are methods and numbers: never a module, a
metaclass or an unguarded formatter (``format``/``format_map`` take the slow path)."""

GUARDED_NAMES = DENIED_ATTRIBUTES | {"format", "format_map"}
"""Names that never take a fast path: the deny list and ``str``'s formatter (compiled cells
read every other public name of plain values natively, ``raysolve.sandbox.policy``)."""
_SLOW_NAMES = GUARDED_NAMES


def guarded_getattr(obj: Any, name: str, default: Any = _MISSING) -> Any:
    """``_getattr_`` and the ``getattr`` builtin: no private names (but namedtuple's documented
    ``_replace``/``_asdict``/…), no deny-listed names, no real modules in or out; ``str.format``
    is replaced by a guarded one. Public names of plain built-in values take a fast path (a loop's
    ``xs.append`` or ``d.get`` costs one check, not ten)."""
    if type(obj) in _PLAIN_TYPES and type(name) is str and name[:1] != "_" and name not in _SLOW_NAMES:
        return getattr(obj, name) if default is _MISSING else getattr(obj, name, default)
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    private_ok = name in _NAMEDTUPLE_API and _is_namedtuple(obj)
    if (name.startswith("_") and name not in READABLE_DUNDERS and not private_ok) or name in DENIED_ATTRIBUTES:
        raise _refuse_attribute(name)
    if name == "__init__" and not _may_reinit(obj):
        if isinstance(obj, type):
            return _sandbox_only_init(obj)
        raise AttributeError("'__init__' can only be used on objects of classes defined in the sandbox")
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
    if name in ("format", "format_map") and isinstance(getattr(value, "__self__", None), str):
        # str.format bound to a str subclass instance, e.g. through super(): its field syntax
        # walks attributes unguarded, so it gets the guarded formatter on the same text
        return _safe_format_method(str.__str__(value.__self__), name)
    return view_of_metaclass(value)


def _may_reinit(obj: Any) -> bool:
    """``__init__`` re-runs a constructor: only on sandbox-made classes/instances
    and ``super()`` proxies (whose object is then the sandbox's own)."""
    return isinstance(obj, super) or obj in SANDBOX_CLASSES or type(obj) in SANDBOX_CLASSES


def _sandbox_only_init(cls: type) -> Callable[..., None]:
    """``Exception.__init__(self, msg)`` / ``dict.__init__(self)`` from a sandbox
    subclass: the unbound constructor, usable on sandbox instances only."""
    init = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if type(self) not in SANDBOX_CLASSES:
            raise TypeError(f"{cls.__name__}.__init__ can only be called on objects of classes defined in the sandbox")
        init(self, *args, **kwargs)

    return __init__


def guarded_hasattr(obj: Any, name: str) -> bool:
    try:
        guarded_getattr(obj, name)
    except AttributeError:
        return False
    return True


def _plain_values() -> frozenset[type]:
    """Types of values an index may hand a cell without a check: numbers, strings, built-in
    containers, and numpy's arrays and scalars (never a module or a metaclass)."""
    import decimal
    import fractions

    kinds = {int, float, complex, bool, str, bytes, type(None), tuple, list, dict, set, frozenset, range,
             fractions.Fraction, decimal.Decimal}
    try:
        import numpy

        kinds |= {numpy.ndarray, *(k for k in set(numpy.sctypeDict.values()) if isinstance(k, type))}
    except ImportError:
        pass
    return frozenset(kinds)


PLAIN_VALUES = _plain_values()

OPEN_CONTAINERS = frozenset({list, dict, collections.Counter, collections.defaultdict, collections.OrderedDict})
"""Containers whose items compiled cells update natively (``c[i] += v``)."""


def check_item(value: Any) -> Any:
    """What ``_getitem_`` does to a value: no foreign module, metaclasses only as views."""
    if isinstance(value, (type, types.ModuleType)):
        if _is_foreign_module(value):
            raise TypeError("modules are not available in the sandbox")
        return view_of_metaclass(value)
    return value


def guarded_getitem(obj: Any, index: Any) -> Any:
    value = obj[index]
    if isinstance(value, (type, types.ModuleType)):  # rare: the checks only for these
        if _is_foreign_module(value):
            raise TypeError("modules are not available in the sandbox")
        return view_of_metaclass(value)
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
    if meta is type and all(c in SANDBOX_CLASSES or c is object for c in cls.__mro__):
        OWN_CLASSES.add(cls)
        NATIVE_ATTRIBUTE_TYPES.add(cls)
    return cls


OWN_CLASSES: set[type] = set()
"""Sandbox classes with no library or built-in base but ``object``: every attribute of their
instances is the cell's own doing, so reading or updating one needs no check."""

NATIVE_ATTRIBUTE_TYPES: set[type] = set(_PLAIN_TYPES)
"""``_plain_types_``: types whose public attributes compiled cells read natively — plain built-in
values (``str``'s formatter is always guarded by name) and ``OWN_CLASSES``."""


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


_LIBRARY_WRITABLE = {
    ("numpy", "ndarray"): frozenset({"shape"}),
    ("decimal", "Context"): frozenset({"prec", "rounding", "Emin", "Emax", "capitals", "clamp"}),
    ("mpmath.ctx_mp", "MPContext"): frozenset({"dps", "prec", "pretty"}),
}
"""Attributes of library objects a cell may set: reshaping an array in place, the precision
of ``decimal``/``mpmath``. Any other attribute of a library object is read-only: SymPy's
printers put ``str()`` of attributes such as ``Integer.p`` or ``Symbol.name`` into source
they compile outside the guards."""


def _may_set(target: Any, name: str) -> bool:
    kind = type(target)
    if kind in SANDBOX_CLASSES or kind is types.SimpleNamespace:
        return True
    return name in _LIBRARY_WRITABLE.get((kind.__module__, kind.__name__), ())


class _Writable:
    """A library object as ``_write_`` hands it out: items writable, attributes read-only."""

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __setattr__(self, name: str, value: Any) -> None:
        target = object.__getattribute__(self, "_target")
        if not _may_set(target, name):
            raise AttributeError(f"cannot set attribute '{name}' of a {type(target).__name__} object in the sandbox"
                                 " (library objects are read-only; make a new one instead)")
        setattr(target, name, value)

    def __delattr__(self, name: str) -> None:
        target = object.__getattribute__(self, "_target")
        if not _may_set(target, name):
            raise AttributeError(f"cannot delete attribute '{name}' of a {type(target).__name__} object in the sandbox")
        delattr(target, name)

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
    """``d[k] += v``: read through ``_getitem_``, write through ``_write_``; a list's or a dict's
    item directly (the old value only meets the operator, never the cell)."""
    kind = type(obj)
    if kind is list or kind is dict:
        obj[key] = _INPLACE_OPS[op](obj[key], value)
        return
    write_guard(obj)[key] = _INPLACE_OPS[op](guarded_getitem(obj, key), value)


def inplace_attr(obj: Any, name: str, op: str, value: Any) -> None:
    """``self.n += 1``: read through ``_getattr_``, write through ``_write_``; an attribute of the
    cell's own object directly."""
    if type(obj) in SANDBOX_CLASSES and name[:1] != "_" and name not in _SLOW_NAMES:
        setattr(obj, name, _INPLACE_OPS[op](getattr(obj, name), value))
        return
    setattr(write_guard(obj), name, _INPLACE_OPS[op](guarded_getattr(obj, name), value))


def guarded_apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``_apply_``, for calls with ``*``/``**``: keyword names from a mapping are checked like
    literal ones (library constructors copy them into class dicts, e.g. SymPy's ``Function``)."""
    for key in kwargs:
        if key.startswith("_"):
            raise TypeError(f"keyword argument '{key}' is not allowed in the sandbox (names starting with '_' are private)")
    return func(*args, **kwargs)


def guarded_type(obj: Any, /) -> Any:
    """One-argument ``type`` only: creating classes goes through ``class``; the type of a class
    is shown as a ``MetaclassView``."""
    return view_of_metaclass(type(obj))

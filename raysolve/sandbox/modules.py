"""Curated stand-in modules: what sandbox code gets from ``import``.

Runs only inside the worker process. Real modules leak the host through plain
attributes (``fractions.sys``, ``numpy.f2py.subprocess``, ``sympy.parsing``...),
so ``__import__`` never returns a real module: it returns a ``StandIn`` holding
only the allowed public names of one module, with module-valued attributes
dropped unless that submodule is itself on the allowlist.
"""

from __future__ import annotations

import importlib
import keyword
import types
from collections.abc import Iterable
from dataclasses import dataclass, field

# Names that never reach sandbox code, whatever the module.
_SYMPY_DENY = frozenset(
    {
        # evaluate strings / generated source
        "sympify", "parse_expr", "lambdify", "var", "evaluate_and_print",
        "autowrap", "ufuncify", "binary_function", "codegen", "pycode",
        # run external programs, pagers, GUIs, interactive sessions
        "preview", "pager_print", "print_gtk", "init_session", "init_printing",
        "interactive_traversal", "plot", "plot_implicit", "plot_parametric",
        "plot_backends", "textplot", "plotting", "test", "doctest",
        # submodules that are not on the allowlist (no import side effects)
        "parsing", "printing", "interactive", "external", "utilities",
        "testing", "release", "multipledispatch", "strategies", "algebras",
        "assumptions", "tensor", "physics", "stats", "categories", "codegen",
        "crypto", "diffgeom", "holonomic", "liealgebras", "unify", "vector",
        "benchmarks",
    }
)
_NUMPY_DENY = frozenset(
    {
        # file I/O and memory maps
        "load", "loadtxt", "save", "savetxt", "savez", "savez_compressed",
        "fromfile", "fromregex", "genfromtxt", "memmap", "DataSource",
        # foreign code, build and test helpers, config/doc printers
        "ctypeslib", "f2py", "testing", "distutils", "show_config",
        "show_runtime", "info", "get_include", "lookfor", "source",
        # submodules left out (listed so they are never imported lazily)
        "char", "rec", "ma", "lib", "core", "typing", "dtypes", "exceptions",
        "strings", "matlib", "doc", "version", "compat", "conftest",
    }
)
_FUNCTOOLS_DENY = frozenset(
    # singledispatch evaluates string annotations; update_wrapper/wraps copy
    # arbitrary (underscore) attributes in C.
    {"singledispatch", "singledispatchmethod", "update_wrapper", "wraps", "RLock", "GenericAlias"}
)
_OPERATOR_DENY = frozenset({"attrgetter", "methodcaller"})  # C-level getattr

_TYPING_ONLY = (
    "Any", "Callable", "DefaultDict", "Deque", "Dict", "FrozenSet", "Generator",
    "Iterable", "Iterator", "List", "Literal", "Mapping", "Optional", "Sequence",
    "Set", "Tuple", "Union", "cast", "TYPE_CHECKING",
)
_TIME_ONLY = ("time", "time_ns", "perf_counter", "perf_counter_ns", "monotonic", "process_time", "sleep")

_FORBIDDEN_NAMES = frozenset({"print", "printed", "builtins", "breakpoint"})


def _denied_objects() -> dict[int, object]:
    """Objects hidden whatever name a module re-exports them under (sympy's
    polytools re-exports ``functools.wraps``, for example)."""
    import builtins
    import functools
    import operator
    import threading
    import typing

    objects: list[object] = [
        functools.wraps, functools.update_wrapper, functools.singledispatch,
        functools.singledispatchmethod, operator.attrgetter, operator.methodcaller,
        typing.get_type_hints, threading.Thread, threading.RLock, threading.Lock,
    ]
    for name in (
        "open", "eval", "exec", "compile", "getattr", "setattr", "delattr", "vars",
        "globals", "locals", "__import__", "dir", "input", "breakpoint", "help",
        "memoryview", "exit", "quit",
    ):
        if hasattr(builtins, name):
            objects.append(getattr(builtins, name))
    return {id(obj): obj for obj in objects}  # values keep the ids valid


@dataclass(frozen=True)
class ModuleRule:
    """How to build one stand-in: ``only`` lists the names kept (else all public
    names), ``deny`` removes names."""

    only: tuple[str, ...] | None = None
    deny: frozenset[str] = field(default_factory=frozenset)


_SYMPY = ModuleRule(deny=_SYMPY_DENY)
_NUMPY = ModuleRule(deny=_NUMPY_DENY)

DEFAULT_RULES: dict[str, ModuleRule] = {
    "math": ModuleRule(),
    "cmath": ModuleRule(),
    "fractions": ModuleRule(),
    "decimal": ModuleRule(),
    "itertools": ModuleRule(),
    "functools": ModuleRule(deny=_FUNCTOOLS_DENY),
    "collections": ModuleRule(),
    "collections.abc": ModuleRule(),
    "operator": ModuleRule(deny=_OPERATOR_DENY),
    "heapq": ModuleRule(),
    "bisect": ModuleRule(),
    "random": ModuleRule(),
    "statistics": ModuleRule(),
    "re": ModuleRule(),
    "copy": ModuleRule(),
    "string": ModuleRule(only=("ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits",
                               "octdigits", "punctuation", "printable", "whitespace", "capwords")),
    "dataclasses": ModuleRule(only=("dataclass", "field", "fields", "asdict", "astuple", "replace",
                                    "is_dataclass", "FrozenInstanceError", "InitVar", "KW_ONLY", "MISSING")),
    "typing": ModuleRule(only=_TYPING_ONLY),
    "time": ModuleRule(only=_TIME_ONLY),
    "__future__": ModuleRule(),
    "numpy": _NUMPY,
    "numpy.linalg": _NUMPY,
    "numpy.random": _NUMPY,
    "numpy.fft": _NUMPY,
    "numpy.polynomial": _NUMPY,
    "numpy.polynomial.polynomial": _NUMPY,
    "sympy": _SYMPY,
    "sympy.abc": _SYMPY,
    "sympy.core": _SYMPY,
    "sympy.core.numbers": _SYMPY,
    "sympy.core.symbol": _SYMPY,
    "sympy.ntheory": _SYMPY,
    "sympy.ntheory.modular": _SYMPY,
    "sympy.ntheory.factor_": _SYMPY,
    "sympy.ntheory.primetest": _SYMPY,
    "sympy.ntheory.generate": _SYMPY,
    "sympy.ntheory.residue_ntheory": _SYMPY,
    "sympy.ntheory.continued_fraction": _SYMPY,
    "sympy.solvers": _SYMPY,
    "sympy.solvers.diophantine": _SYMPY,
    "sympy.solvers.inequalities": _SYMPY,
    "sympy.utilities.iterables": _SYMPY,
    "sympy.combinatorics": _SYMPY,
    "sympy.functions": _SYMPY,
    "sympy.functions.combinatorial.numbers": _SYMPY,
    "sympy.functions.combinatorial.factorials": _SYMPY,
    "sympy.polys": _SYMPY,
    "sympy.polys.polytools": _SYMPY,
    "sympy.matrices": _SYMPY,
    "sympy.geometry": _SYMPY,
    "sympy.sets": _SYMPY,
    "sympy.series": _SYMPY,
    "sympy.simplify": _SYMPY,
    "sympy.concrete": _SYMPY,
    "sympy.integrals": _SYMPY,
    "sympy.logic": _SYMPY,
    "sympy.discrete": _SYMPY,
}


INSTEAD = {
    "sympify": "build expressions from Symbol/symbols and numbers instead of strings",
    "parse_expr": "build expressions from Symbol/symbols and numbers instead of strings",
    "lambdify": "use expr.subs(x, value).evalf() or nsolve/N",
    "mpmath": "use sympy's N(expr, digits) or Float(..., digits) for high precision",
    "fromfile": "there are no files in the sandbox",
    "memmap": "there are no files in the sandbox",
}
"""A one-line alternative a model can act on, for names that are refused."""


class MetaclassView:
    """What a cell gets instead of a metaclass (``type``, SymPy's ``FunctionClass``, ``ABCMeta``):
    its name and its one-argument use, never the metaclass itself, whose three-argument call
    builds a class with any dunder in its namespace (and from there, with numpy's array
    protocol, raw memory access). Equal to the metaclass it stands for."""

    __slots__ = ("_meta",)

    def __init__(self, meta: type) -> None:
        object.__setattr__(self, "_meta", meta)

    def __call__(self, obj: object, /) -> object:
        return view_of_metaclass(type(obj))

    def __eq__(self, other: object) -> bool:
        meta = object.__getattribute__(self, "_meta")
        return other is meta or (type(other) is MetaclassView and object.__getattribute__(other, "_meta") is meta)

    def __hash__(self) -> int:
        return hash(object.__getattribute__(self, "_meta"))

    def __repr__(self) -> str:
        return repr(object.__getattribute__(self, "_meta"))

    @property
    def __name__(self) -> str:  # type: ignore[override]
        return object.__getattribute__(self, "_meta").__name__

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("metaclasses are read-only in the sandbox")


def view_of_metaclass(value: object) -> object:
    """``value``, or a ``MetaclassView`` of it when it is a metaclass."""
    if isinstance(value, type) and issubclass(value, type):
        return MetaclassView(value)
    return value


class StandIn(types.ModuleType):
    """A module object that holds copies of allowed names only.

    The guards treat a ``StandIn`` as the only acceptable kind of module value;
    a missing name raises a readable ``AttributeError``.
    """

    def __getattr__(self, name: str):  # only called when the name is missing
        real = self.__dict__.get("_real_name", self.__name__)
        hidden = name in self.__dict__.get("_hidden", ())
        why = " (not available in the sandbox)" if hidden else ""
        hint = INSTEAD.get(name, "")
        raise AttributeError(f"module '{real}' has no attribute '{name}'{why}{'; ' + hint if hint else ''}")


def _public_names(real: types.ModuleType) -> Iterable[str]:
    try:
        return list(dir(real))
    except Exception:
        return list(vars(real))


class ModuleRegistry:
    """Builds and caches stand-ins for an allowlist of dotted module names.

    ``fakes`` supplies ready-made stand-ins (the worker's ``sys``); parents of
    allowed dotted names (``sympy.functions.combinatorial``) become shells that
    hold just their allowed children.
    """

    def __init__(self, rules: dict[str, ModuleRule] | None = None, fakes: dict[str, StandIn] | None = None):
        self._rules = dict(DEFAULT_RULES if rules is None else rules)
        self._fakes = dict(fakes or {})
        self._cache: dict[str, StandIn] = {}
        self._denied = _denied_objects()
        names = set(self._rules) | set(self._fakes)
        self._shells = {n.rsplit(".", i)[0] for n in names for i in range(1, n.count(".") + 1)} - names

    def allowed(self, name: str) -> bool:
        return name in self._rules or name in self._fakes or name in self._shells

    def names(self) -> list[str]:
        return sorted(set(self._rules) | set(self._fakes))

    def get(self, name: str) -> StandIn:
        mod = self._cache.get(name)
        if mod is None:
            if name in self._fakes:
                mod = self._fakes[name]
            elif name in self._rules:
                mod = self._build(name, self._rules[name])
            elif name in self._shells:
                mod = self._shell(name)
            else:
                raise ImportError(f"import of '{name}' is not allowed")
            self._cache[name] = mod
        return mod

    def preload(self) -> None:
        """Build every stand-in now, so no module is imported during a run."""
        for name in self.names():
            try:
                self.get(name)
            except ImportError:  # a library version without this submodule
                self._rules.pop(name, None)
                self._cache.clear()
        self._cache.clear()
        for name in self.names():
            self.get(name)

    def star_names(self, name: str) -> list[str] | None:
        """Names bound by ``from <name> import *`` (None if not importable)."""
        if not self.allowed(name):
            return None
        return list(self.get(name).__dict__.get("_star", ()))

    def _children(self, name: str) -> list[str]:
        prefix = name + "."
        every = set(self._rules) | set(self._fakes) | self._shells
        return sorted(n for n in every if n.startswith(prefix) and "." not in n[len(prefix):])

    def _shell(self, name: str) -> StandIn:
        mod = StandIn(name)
        for child in self._children(name):
            setattr(mod, child.rsplit(".", 1)[1], self.get(child))
        mod._star = []
        return mod

    def _build(self, name: str, rule: ModuleRule) -> StandIn:
        real = importlib.import_module(name)
        children = {c.rsplit(".", 1)[1]: c for c in self._children(name)}
        mod = StandIn(name, getattr(real, "__doc__", None))
        kept: dict[str, object] = {}
        hidden: set[str] = set()
        candidates = rule.only if rule.only is not None else _public_names(real)
        for attr in candidates:
            if attr.startswith("_"):
                continue
            if attr in rule.deny:
                hidden.add(attr)
                continue
            try:
                value = getattr(real, attr)
            except Exception:
                continue
            if isinstance(value, types.ModuleType) or id(value) in self._denied:
                hidden.add(attr)
                continue
            kept[attr] = view_of_metaclass(value)
        for attr, child in children.items():
            # `sympy.simplify` is the function, not the submodule: keep what the
            # package itself binds unless that is the module.
            current = getattr(real, attr, None)
            if current is None or isinstance(current, types.ModuleType):
                kept[attr] = self.get(child)
        for attr, value in kept.items():
            setattr(mod, attr, value)
        declared = getattr(real, "__all__", None)
        star_source = declared if isinstance(declared, (list, tuple)) and rule.only is None else kept
        mod._star = [
            n
            for n in star_source
            if n in kept
            and not isinstance(kept[n], types.ModuleType)
            and n.isidentifier()
            and not keyword.iskeyword(n)
            and n not in _FORBIDDEN_NAMES
        ]
        mod._hidden = frozenset(hidden)
        return mod


def make_fake_module(name: str, attrs: dict[str, object], doc: str | None = None) -> StandIn:
    """A stand-in that is not backed by a real module (the sandbox's ``sys``)."""
    mod = StandIn(name, doc)
    for key, value in attrs.items():
        setattr(mod, key, value)
    mod._star = [k for k in attrs if not k.startswith("_")]
    return mod


def is_safe_identifier(name: object) -> bool:
    """True for plain ASCII identifiers that are safe to print into source code."""
    return (
        type(name) is str
        and name.isascii()
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith("__")
    )


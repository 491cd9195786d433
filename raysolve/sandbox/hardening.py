"""Switch off SymPy's code-evaluating paths inside the worker process.

SymPy evaluates strings (``sympify``/``parse_expr``, reached from ``simplify("...")``,
``expr.subs("x", "...")``, ``S("...")``) and execs generated source (``lambdify``,
reached from ``nsolve`` and some ``evalf`` paths). Removing the names from the
stand-in is not enough, because library code calls them internally, so the
function objects themselves are re-pointed here (their ``__code__`` is swapped,
which also patches every ``from ... import parse_expr`` copy):

* ``parse_expr`` only accepts purely numeric formulas (``"3/2"``, ``"sqrt(2)/3"``),
  which SymPy's own lookup tables and ``nsimplify`` need; anything else raises
  ``SympifyError``.
* ``lambdify`` only accepts trees built from SymPy's own classes whose symbol
  names are plain identifiers, no undefined functions, strings, custom printers
  or module dicts, so the generated source cannot carry injected code.
"""

from __future__ import annotations

import inspect
import io
import sys
import tokenize
import types
from collections.abc import Callable

from raysolve.sandbox.modules import is_safe_identifier

_NUMERIC_NAMES = frozenset(
    {
        "sqrt", "cbrt", "root", "log", "exp", "pi", "E", "I", "oo", "zoo", "nan",
        "GoldenRatio", "EulerGamma", "Catalan", "Rational", "Integer", "Float",
        "sin", "cos", "tan", "gamma",
    }
)
_NUMERIC_OPS = frozenset({"+", "-", "*", "/", "**", "(", ")", ","})
_SAFE_LAMBDIFY_MODULES = frozenset({"math", "mpmath", "numpy", "sympy", "cmath"})
_MAX_FORMULA = 2000


def is_numeric_formula(text: object) -> bool:
    """True for strings made only of numbers, + - * / ** ( ) , and a few constants."""
    if type(text) is not str or not text.isascii() or len(text) > _MAX_FORMULA:
        return False
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return False
    for tok in tokens:
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
            continue
        if tok.type == tokenize.NUMBER:
            continue
        if tok.type == tokenize.OP and tok.string in _NUMERIC_OPS:
            continue
        if tok.type == tokenize.NAME and tok.string in _NUMERIC_NAMES:
            continue
        return False
    return True


def _inside_sympy_import() -> bool:
    """True while a SymPy module's top-level code is running (a lazy import such
    as ``sympy.physics.units`` from ``simplify``): its strings are SymPy's own.
    Sandbox cells run as ``<module>`` too, but their ``__name__`` is ``__main__``
    and they cannot rebind it."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and str(frame.f_globals.get("__name__", "")).startswith("sympy."):
            return True
        frame = frame.f_back
    return False


def _swap(func: types.FunctionType, hook: Callable[..., object], tag: str) -> types.FunctionType:
    """Make ``func`` call ``hook``; return an untouched copy of the original."""
    original = types.FunctionType(
        func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__
    )
    original.__kwdefaults__ = func.__kwdefaults__
    original.__qualname__ = func.__qualname__
    hook_name = f"_raysolve_sandbox_hook_{tag}"
    func.__globals__[hook_name] = hook
    namespace: dict[str, object] = {}
    exec(f"def trampoline(*args, **kwargs):\n    return {hook_name}(*args, **kwargs)\n", namespace)
    func.__code__ = namespace["trampoline"].__code__  # type: ignore[attr-defined]
    func.__defaults__ = None
    func.__kwdefaults__ = None
    return original


def _check_lambdify_tree(obj: object, depth: int = 0) -> None:
    from sympy import Basic, preorder_traversal
    from sympy.core.function import AppliedUndef, UndefinedFunction
    from sympy.matrices import MatrixBase

    if depth > 50:
        raise ValueError("lambdify input is nested too deeply")
    if obj is None or type(obj) in (int, float, complex, bool):
        return
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _check_lambdify_tree(item, depth + 1)
        return
    if isinstance(obj, MatrixBase) and not isinstance(obj, Basic):
        for item in obj:
            _check_lambdify_tree(item, depth + 1)
        return
    if not isinstance(obj, Basic):
        raise ValueError(f"lambdify of {type(obj).__name__} objects is disabled in the sandbox")
    for node in preorder_traversal(obj):
        cls = type(node)
        if not (cls.__module__ or "").startswith("sympy.") or isinstance(node, AppliedUndef) or isinstance(cls, UndefinedFunction):
            raise ValueError(f"lambdify of {cls.__name__} objects is disabled in the sandbox")
        if getattr(node, "is_Symbol", False) or cls.__name__ in ("MatrixSymbol", "IndexedBase", "Idx", "Str"):
            name = getattr(node, "name", None)
            if not is_safe_identifier(name):
                raise ValueError(f"lambdify of symbol name {name!r} is disabled in the sandbox")


def _check_lambdify_modules(modules: object) -> None:
    if modules is None:
        return
    items = modules if isinstance(modules, (list, tuple)) else [modules]
    for item in items:
        if type(item) is not str or item not in _SAFE_LAMBDIFY_MODULES:
            raise ValueError("lambdify modules other than 'math', 'mpmath', 'numpy', 'sympy' are disabled in the sandbox")


def install_sympy_hardening() -> None:
    """Patch SymPy's parser and lambdify in this process (idempotent)."""
    import importlib

    # import_module, not `import a.b as c`: the package attribute `sympy.utilities.lambdify`
    # is the function, which shadows the module.
    sympy_parser = importlib.import_module("sympy.parsing.sympy_parser")
    lambdify_mod = importlib.import_module("sympy.utilities.lambdify")
    from sympy.core.sympify import SympifyError

    if getattr(sympy_parser, "_raysolve_hardened", False):
        return

    original_parse = sympy_parser.parse_expr
    parse_copy: types.FunctionType | None = None

    class StringParsingDisabled(SympifyError):
        def __str__(self) -> str:
            return str(self.expr)

    StringParsingDisabled.__name__ = StringParsingDisabled.__qualname__ = "SympifyError"

    def parse_hook(s, *args, **kwargs):
        if not (is_numeric_formula(s) or _inside_sympy_import()):
            raise StringParsingDisabled(
                "parsing strings is disabled in the sandbox; build expressions from "
                "symbols instead, e.g. x = symbols('x'); expr = x**2 + 1"
            )
        assert parse_copy is not None
        return parse_copy(s, *args, **kwargs)

    # eval_expr stays: parse_expr is its only caller and the parsing module is unreachable.
    parse_copy = _swap(original_parse, parse_hook, "parse_expr")

    original_lambdify = lambdify_mod.lambdify
    signature = inspect.signature(original_lambdify)
    lambdify_copy: types.FunctionType | None = None

    def lambdify_hook(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        params = bound.arguments
        printer = params.get("printer")
        printer_cls = printer if isinstance(printer, type) else type(printer)
        if printer is not None and not (printer_cls.__module__ or "").startswith("sympy."):
            raise ValueError("custom lambdify printers are disabled in the sandbox")
        _check_lambdify_modules(params.get("modules"))
        _check_lambdify_tree(params.get("args"))
        _check_lambdify_tree(params.get("expr"))
        assert lambdify_copy is not None
        return lambdify_copy(*bound.args, **bound.kwargs)

    lambdify_copy = _swap(original_lambdify, lambdify_hook, "lambdify")
    sympy_parser._raysolve_hardened = True


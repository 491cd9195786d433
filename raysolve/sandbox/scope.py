"""Run a cell's top level as a function: the sandbox's loops at CPython speed.

At module level every name is a ``LOAD_NAME``/``STORE_NAME`` dictionary lookup, and
the inline guards (``_type_(_gi_ := xs[i]) in _plain_values_``) add four of them per
subscript, which made index-heavy loops 3× slower than CPython. Compiled as the body
of a function that declares the cell's names ``global``, the cell's names become
cached ``LOAD_GLOBAL``s, and the guards' temporaries plain fast locals. The globals
dict is still the session's, so variables, functions and classes persist across
cells exactly as before, and classes and functions keep their plain ``__qualname__``
(Python names them by the global declaration, not by the wrapper).

Every identifier the cell mentions is declared, not only those it binds at top level:
a declaration changes nothing for a name that is only read (globals, then builtins, as
at module level), and nothing inside nested functions, classes and comprehensions,
whose own bindings stay their own. What Python allows only at module level either
fails to compile as a function (``from __future__``, ``nonlocal``, ``global`` after a
use, an annotated name) or is found here (a top-level ``return``); the interpreter then
compiles the cell as a module, and also falls back when the compiled function would
keep a name local or be a generator (``keeps_names_global``).
"""

from __future__ import annotations

import ast
import types

CELL_FUNCTION = "<module>"
"""The wrapper's name: tracebacks read ``in <module>`` as they did."""

FAST_LOCALS = frozenset({"_gi_", "_go_", "_gw_", "_ga_", "_gc_", "_print"})
"""The guards' temporaries and RestrictedPython's print collector: the only names the
wrapper may keep as locals (none of them can be named by a cell)."""

_GENERATOR_FLAGS = 0x20 | 0x80 | 0x100 | 0x200  # generator, coroutine, iterable coroutine, async generator
_OWN_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _returns_at_top(body: list[ast.stmt]) -> bool:
    """A ``return`` outside any def: a SyntaxError at module level, legal in the wrapper."""
    pending = list(body)
    while pending:
        stmt = pending.pop()
        if isinstance(stmt, ast.Return):
            return True
        if isinstance(stmt, _OWN_SCOPES):
            continue
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            pending.extend(getattr(stmt, field, ()))
    return False


def as_function(module: ast.Module, names: set[str]) -> ast.Module:
    """``module`` (already checked and rewritten by the policy, which collected ``names``,
    every identifier it holds) with its body moved into ``def <module>(): global <names>; …``
    in place (RestrictedPython compiles the tree it parsed), unless it returns at top level."""
    if not module.body or _returns_at_top(module.body):
        return module
    first = module.body[0]
    declared = sorted(names - FAST_LOCALS)
    prelude: list[ast.stmt] = [ast.copy_location(ast.Global(names=declared), first)] if declared else []
    args = ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])
    function = ast.FunctionDef(name=CELL_FUNCTION, args=args, body=prelude + module.body, decorator_list=[],
                               returns=None, type_comment=None)
    module.body = [ast.copy_location(function, first)]
    return module


def cell_function(code: types.CodeType) -> types.CodeType | None:
    """The wrapper's code inside a cell compiled from ``as_function``'s tree, else ``None``."""
    inner = [c for c in code.co_consts if isinstance(c, types.CodeType) and c.co_name == CELL_FUNCTION]
    return inner[0] if len(inner) == 1 else None


def keeps_names_global(function: types.CodeType) -> bool:
    """Whether running ``function`` in the session's globals is the same as running the cell
    at module level: no name of the cell stays local (it would be gone after the cell), and
    the body is not a generator."""
    kept_local = set(function.co_varnames) | set(function.co_cellvars)
    return not (kept_local - FAST_LOCALS or function.co_freevars or function.co_flags & _GENERATOR_FLAGS)

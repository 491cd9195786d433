"""The compiler policy: RestrictedPython's checks plus what model code often
writes (worker side), and readable compile errors."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Any

from RestrictedPython.transformer import (
    INSPECT_ATTRIBUTES,
    IOPERATOR_TO_STR,
    RestrictingNodeTransformer,
    copy_locations,
)

from raysolve.sandbox.guards import READABLE_DUNDERS

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
        # numeric and container protocols model code also defines; their bodies are
        # compiled under the same guards, and none hands out memory or class internals
        "__missing__", "__index__", "__int__", "__float__", "__complex__", "__round__",
        "__floor__", "__ceil__", "__trunc__", "__invert__", "__divmod__", "__rdivmod__",
        "__rmatmul__", "__rand__", "__ror__", "__rxor__", "__rlshift__", "__rrshift__",
        "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__",
        "__ipow__", "__iand__", "__ior__", "__ixor__", "__reversed__", "__format__",
    }
)

NAMEDTUPLE_ATTRIBUTES = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})
"""The documented underscore API of ``collections.namedtuple`` classes and instances."""

RESERVED_PRIVATE_NAMES = frozenset({"_print"})
"""Single-underscore names RestrictedPython itself binds (the guard names all end in ``_``)."""


def is_private_name(name: str | None) -> bool:
    """``_memo``, ``_helper``, ``_i``: a cell's own private names, allowed as variables,
    functions and arguments. Not dunders, and not names ending in ``_``: RestrictedPython's and
    raysolve's guards (``_getattr_``, ``_write_``, ``_inplaceitem_``, …) all do, so a cell can
    never rebind one."""
    return (
        name is not None
        and len(name) > 1
        and name.startswith("_")
        and not name.startswith("__")
        and not name.endswith("_")
        and name not in RESERVED_PRIVATE_NAMES
    )


class SandboxPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy plus a few things model code writes a lot:
    ``d[k] += 1`` / ``self.n += 1``, ``x: int = 1`` (annotations kept), ``nonlocal``,
    ``if __name__ == "__main__":``, common dunder methods in classes, private names
    such as ``_memo`` for variables and functions, namedtuple's ``_replace``/``_asdict``,
    and ``from sympy import *`` (expanded to the stand-in's public names)."""

    star_names: Callable[[str], list[str] | None] = staticmethod(lambda name: None)

    def check_name(self, node: Any, name: str | None, allow_magic_methods: bool = False) -> None:
        if allow_magic_methods and name in EXTRA_MAGIC_METHODS and getattr(node, "col_offset", 0) != 0:
            return
        if is_private_name(name):
            return
        super().check_name(node, name, allow_magic_methods)

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id == "__name__" and isinstance(node.ctx, ast.Load):
            return node
        return super().visit_Name(node)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        if (node.attr in READABLE_DUNDERS or node.attr in NAMEDTUPLE_ATTRIBUTES) and isinstance(node.ctx, ast.Load):
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
        if isinstance(node.target, ast.Name):  # `x: int` / `x: int = 1`: kept, so classes get
            self.check_name(node, node.target.id)  # their annotations (dataclasses need them)
            node.annotation = self.visit(node.annotation)
            if node.value is not None:
                node.value = self.visit(node.value)
            return node
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

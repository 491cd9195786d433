"""The compiler policy: RestrictedPython's checks plus what model code often
writes (worker side), and readable compile errors."""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Callable
from typing import Any

from RestrictedPython.transformer import (
    INSPECT_ATTRIBUTES,
    IOPERATOR_TO_STR,
    RestrictingNodeTransformer,
    copy_locations,
)

from raysolve.sandbox.guards import GUARDED_NAMES, READABLE_DUNDERS
from raysolve.sandbox.scope import as_function

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

FAST_ATTRIBUTE_EXCLUDED = GUARDED_NAMES
"""Attribute names that always go through ``_getattr_`` (the guards' deny list, str's formatter)."""

NAMEDTUPLE_ATTRIBUTES = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})
"""The documented underscore API of ``collections.namedtuple`` classes and instances."""

METHOD_ARGUMENT_NODES = 40
"""Arguments up to this many AST nodes are written into both branches of a method call."""


def _at_most(limit: int, *nodes: ast.AST) -> bool:
    """Whether ``nodes`` hold at most ``limit`` AST nodes (stops counting past it)."""
    pending, seen = list(nodes), 0
    while pending:
        seen += 1
        if seen > limit:
            return False
        pending.extend(ast.iter_child_nodes(pending.pop()))
    return True


def _type_in(holder: str, value: ast.expr, kinds: str) -> ast.expr:
    """``_type_(<holder> := value) in <kinds>``: the inline check every fast path starts with; the
    value is then read from ``holder`` (a name no cell can write, as all guard names end in ``_``)."""
    bound = ast.NamedExpr(target=ast.Name(holder, ast.Store()), value=value)
    return ast.Compare(left=ast.Call(func=ast.Name("_type_", ast.Load()), args=[bound], keywords=[]),
                       ops=[ast.In()], comparators=[ast.Name(kinds, ast.Load())])


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
    fast_subscripts: bool = True
    """Read ``xs[i]`` inline when the value is a plain one (see ``visit_Subscript``)."""
    function_scope: bool = True
    """Compile the top level as a function whose names are global (``scope.as_function``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scopes: list[str] = ["module"]
        self._annotations: set[int] = set()
        """ids of annotation nodes: Python keeps `:=` out of annotations."""
        self._no_walrus = 0
        """> 0 where Python forbids ``:=`` (a comprehension's iterable, a comprehension in a class body)."""
        self._raw_reads: set[int] = set()
        """ids of ``Subscript`` loads that are operator operands (``_raw_operands``)."""
        self._names: set[str] = set()
        """Every identifier the cell holds (``scope.as_function`` declares them global)."""

    def visit_Module(self, node: ast.Module) -> Any:
        node = super().visit_Module(node)
        return as_function(node, self._names) if self.function_scope and not self.errors else node

    def visit_alias(self, node: ast.alias) -> Any:
        self._names.add(node.asname or node.name.split(".")[0])
        return super().visit_alias(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> Any:
        if node.name:
            self._names.add(node.name)
        return super().visit_ExceptHandler(node)

    def visit_Global(self, node: ast.Global) -> Any:
        self._names.update(node.names)
        return super().visit_Global(node)

    def _raw_operands(self, *operands: ast.expr) -> None:
        """Item reads among ``operands`` that may skip the value check: where every other operand
        is a literal, the item only meets its own type's operator method and a built-in one of the
        literal's type, and the cell gets the operator's result (results of operators are not
        checked anywhere). Any other operand could be an object of the cell's own class whose
        reflected method (``__radd__``, ``__eq__``) would receive the unchecked item, so then
        every item is checked. ``-xs[i]``, ``xs[i] % 7`` and ``xs[i] == 0`` run as plain Python."""
        items = [o for o in operands if isinstance(o, ast.Subscript) and isinstance(o.ctx, ast.Load)]
        if len(items) == 1 and all(o is items[0] or isinstance(o, ast.Constant) for o in operands):
            self._raw_reads.add(id(items[0]))

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        self._raw_operands(node.left, node.right)
        return super().visit_BinOp(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        self._raw_operands(node.operand)
        return super().visit_UnaryOp(node)

    def visit_Compare(self, node: ast.Compare) -> Any:
        self._raw_operands(node.left, *node.comparators)
        return super().visit_Compare(node)

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        """``xs[i]`` (a load) becomes ``_gi_ if _type_(_gi_ := xs[i]) in _plain_values_ else
        _checkitem_(_gi_)``: ints, strings, lists and the like come back with a type check instead
        of a guard call (loops index a lot); anything else still meets the guard. Stores and
        deletes go through ``_write_`` as in RestrictedPython. ``_gi_`` and the helpers end in
        ``_``, so no cell can name them."""
        if id(node) in self._raw_reads:
            return self.node_contents_visit(node)
        if isinstance(node.ctx, ast.Store) and self.fast_subscripts and self._no_walrus == 0:
            # `c[k] = v`: a built-in container is written as it is, anything else through `_write_`
            node = self.node_contents_visit(node)
            test = _type_in("_gw_", node.value, "_open_containers_")
            guarded = ast.Call(func=ast.Name("_write_", ast.Load()), args=[ast.Name("_gw_", ast.Load())], keywords=[])
            node.value = ast.IfExp(test=test, body=ast.Name("_gw_", ast.Load()), orelse=guarded)
            copy_locations(node.value, node)
            ast.fix_missing_locations(node)
            return node
        if not (isinstance(node.ctx, ast.Load) and self.fast_subscripts and self._no_walrus == 0):
            return super().visit_Subscript(node)
        node = self.node_contents_visit(node)
        raw = ast.Subscript(value=node.value, slice=node.slice, ctx=ast.Load())
        test = _type_in("_gi_", raw, "_plain_values_")
        checked = ast.Call(func=ast.Name("_checkitem_", ast.Load()), args=[ast.Name("_gi_", ast.Load())], keywords=[])
        expr = ast.IfExp(test=test, body=ast.Name("_gi_", ast.Load()), orelse=checked)
        copy_locations(expr, node)
        ast.fix_missing_locations(expr)
        return expr

    def _fast_attribute(self, node: ast.Attribute) -> bool:
        return (isinstance(node.ctx, ast.Load) and self.fast_subscripts and self._no_walrus == 0
                and not node.attr.startswith("_") and node.attr not in FAST_ATTRIBUTE_EXCLUDED)

    @staticmethod
    def _guarded_read(attr: str) -> ast.expr:
        """``_getattr_(_go_, "attr")``."""
        return ast.Call(func=ast.Name("_getattr_", ast.Load()), args=[ast.Name("_go_", ast.Load()), ast.Constant(attr)],
                        keywords=[])

    @classmethod
    def _attribute_read(cls, obj: ast.expr, attr: str) -> ast.expr:
        """``_go_.attr if _type_(_go_ := obj) in _plain_types_ else _getattr_(_go_, "attr")``."""
        fast = ast.Attribute(value=ast.Name("_go_", ast.Load()), attr=attr, ctx=ast.Load())
        return ast.IfExp(test=_type_in("_go_", obj, "_plain_types_"), body=fast, orelse=cls._guarded_read(attr))

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        """``obj.name`` (a load of a public name) becomes ``_go_.name if _type_(_go_ := obj) in
        _plain_types_ else _getattr_(_go_, "name")``: built-in values and instances of the cell's own
        classes read attributes natively; everything else meets ``_getattr_``."""
        if not self._fast_attribute(node):
            return self._visit_attribute_guarded(node)
        node = self.node_contents_visit(node)
        expr = self._attribute_read(node.value, node.attr)
        copy_locations(expr, node)
        ast.fix_missing_locations(expr)
        return expr

    def visit_Call(self, node: ast.Call) -> Any:
        """``obj.method(args)`` becomes ``_go_.method(args) if _type_(_go_ := obj) in _plain_types_
        else _getattr_(_go_, "method")(args)``: the fast branch stays a method call (no bound
        method built per call, as ``visit_Attribute``'s form would), which is most of the guards'
        cost in loops that ``append``. The arguments are written twice (one branch runs), so only
        short ones; ``*``/``**`` calls go through ``_apply_`` as before."""
        func = node.func
        if not (isinstance(func, ast.Attribute) and self._fast_attribute(func)
                and not any(isinstance(arg, ast.Starred) for arg in node.args)
                and all(keyword.arg is not None for keyword in node.keywords)):
            return super().visit_Call(node)
        obj = self.visit(func.value)
        args = [self.visit(arg) for arg in node.args]
        keywords = [self.visit(keyword) for keyword in node.keywords]
        if not _at_most(METHOD_ARGUMENT_NODES, *args, *keywords):  # the attribute read, then a call of it
            expr: ast.expr = ast.Call(func=self._attribute_read(obj, func.attr), args=args, keywords=keywords)
        else:
            fast = ast.Call(func=ast.Attribute(value=ast.Name("_go_", ast.Load()), attr=func.attr, ctx=ast.Load()),
                            args=args, keywords=keywords)
            slow = ast.Call(func=self._guarded_read(func.attr), args=copy.deepcopy(args),
                            keywords=copy.deepcopy(keywords))
            expr = ast.IfExp(test=_type_in("_go_", obj, "_plain_types_"), body=fast, orelse=slow)
        copy_locations(expr, node)
        ast.fix_missing_locations(expr)
        return expr

    def _scoped(self, kind: str, visit: Callable[[Any], Any], node: Any) -> Any:
        self._scopes.append(kind)
        try:
            return visit(node)
        finally:
            self._scopes.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        self._names.add(node.name)
        return self._scoped("class", super().visit_ClassDef, node)

    def visit(self, node: Any) -> Any:
        if id(node) in self._annotations:
            self._no_walrus += 1
            try:
                return super().visit(node)
            finally:
                self._no_walrus -= 1
        return super().visit(node)

    def _mark_annotations(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        a = node.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, *([a.vararg] if a.vararg else []),
                    *([a.kwarg] if a.kwarg else [])]:
            if arg.annotation is not None:
                self._annotations.add(id(arg.annotation))
        if node.returns is not None:
            self._annotations.add(id(node.returns))

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        self._names.add(node.name)
        self._mark_annotations(node)
        return self._scoped("function", super().visit_FunctionDef, node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> Any:
        self._names.add(node.name)
        self._mark_annotations(node)
        return self._scoped("function", super().visit_AsyncFunctionDef, node)

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        return self._scoped("function", super().visit_Lambda, node)

    def _comprehension(self, visit: Callable[[Any], Any], node: Any) -> Any:
        in_class = self._scopes[-1] == "class"
        self._no_walrus += in_class
        try:
            return self._scoped("function", visit, node)
        finally:
            self._no_walrus -= in_class

    def visit_ListComp(self, node: ast.ListComp) -> Any:
        return self._comprehension(super().visit_ListComp, node)

    def visit_SetComp(self, node: ast.SetComp) -> Any:
        return self._comprehension(super().visit_SetComp, node)

    def visit_DictComp(self, node: ast.DictComp) -> Any:
        return self._comprehension(super().visit_DictComp, node)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> Any:
        return self._comprehension(super().visit_GeneratorExp, node)

    def visit_comprehension(self, node: ast.comprehension) -> Any:
        self._no_walrus += 1  # its iterable may not hold `:=` (its conditions could, but rarely index)
        try:
            return super().visit_comprehension(node)
        finally:
            self._no_walrus -= 1

    def check_name(self, node: Any, name: str | None, allow_magic_methods: bool = False) -> None:
        if allow_magic_methods and name in EXTRA_MAGIC_METHODS and getattr(node, "col_offset", 0) != 0:
            return
        if is_private_name(name):
            return
        super().check_name(node, name, allow_magic_methods)

    def visit_Name(self, node: ast.Name) -> Any:
        self._names.add(node.id)
        if node.id == "__name__" and isinstance(node.ctx, ast.Load):
            return node
        return super().visit_Name(node)

    def _visit_attribute_guarded(self, node: ast.Attribute) -> Any:
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
            self._annotations.add(id(node.annotation))
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

    def _native_augassign(self, node: ast.AugAssign, holder: str, kinds: str, fallback: ast.stmt) -> ast.stmt:
        """``if _type_(<holder> := obj) in <kinds>: <holder>.x += v  else: <fallback>``: the plain
        statement on the cell's own objects and built-in containers, the guard call otherwise."""
        target = node.target
        obj = target.value  # already visited by the caller
        test = _type_in(holder, obj, kinds)
        if isinstance(target, ast.Attribute):
            native_target: ast.expr = ast.Attribute(value=ast.Name(holder, ast.Load()), attr=target.attr, ctx=ast.Store())
        else:
            native_target = ast.Subscript(value=ast.Name(holder, ast.Load()), slice=target.slice, ctx=ast.Store())
        native = ast.AugAssign(target=native_target, op=node.op, value=node.value)
        stmt = ast.If(test=test, body=[native], orelse=[fallback])
        copy_locations(stmt, node)
        ast.fix_missing_locations(stmt)
        return stmt

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        target = node.target
        fast = self.fast_subscripts and self._no_walrus == 0
        if fast and isinstance(target, ast.Attribute) and not target.attr.startswith("_") \
                and target.attr not in FAST_ATTRIBUTE_EXCLUDED:
            self._check_attr_target(target)
            op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
            node.target.value = self.visit(target.value)
            node.value = self.visit(node.value)
            fallback = ast.Expr(value=ast.Call(func=ast.Name("_inplaceattr_", ast.Load()), args=[
                ast.Name("_ga_", ast.Load()), ast.Constant(target.attr), op, copy.deepcopy(node.value)], keywords=[]))
            return self._native_augassign(node, "_ga_", "_own_classes_", fallback)
        if fast and isinstance(target, ast.Subscript):
            op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
            node.target.value = self.visit(target.value)
            node.target.slice = self.visit(target.slice)
            node.value = self.visit(node.value)
            fallback = ast.Expr(value=ast.Call(func=ast.Name("_inplaceitem_", ast.Load()), args=[
                ast.Name("_gc_", ast.Load()), copy.deepcopy(node.target.slice), op, copy.deepcopy(node.value)],
                keywords=[]))
            return self._native_augassign(node, "_gc_", "_open_containers_", fallback)
        op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
        if isinstance(target, ast.Subscript):
            args = [self.visit(target.value), self.visit(target.slice), op, self.visit(node.value)]
            helper = "_inplaceitem_"
        elif isinstance(target, ast.Attribute):
            self._check_attr_target(target)
            args = [self.visit(target.value), ast.Constant(target.attr), op, self.visit(node.value)]
            helper = "_inplaceattr_"
        else:  # `n += 1` on a name: plain Python, as `n = n + 1` (an unguarded BinOp) would be
            return self.node_contents_visit(node)
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

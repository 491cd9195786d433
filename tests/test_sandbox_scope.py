"""A cell's top level runs as a function whose names are global (``sandbox/scope.py``), method
calls and operator operands take the inline fast paths (``sandbox/policy.py``): the cell must
behave exactly as the same code at module level in CPython, and the guards must still hold.

In-process (``Interpreter``, no worker): these are about compilation, not containment.
"""

from __future__ import annotations

import contextlib
import io

import pytest

from raysolve.sandbox.restricted import Interpreter

CO_OPTIMIZED = 0x1


@pytest.fixture(scope="module")
def interp() -> Interpreter:
    return Interpreter(preload=False)


def cpython(*cells: str) -> str:
    """What CPython prints for ``cells`` run one after another at module level."""
    scope: dict = {"__name__": "__main__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for cell in cells:
            exec(compile(cell, "<cell>", "exec"), scope)
    return out.getvalue()


def sandbox(interp: Interpreter, *cells: str) -> str:
    interp.reset()
    printed = []
    for i, cell in enumerate(cells):
        result = interp.run(cell, i)
        assert result["status"] == "ok", (cell, result["stderr"])
        printed.append(result["stdout"])
    return "".join(printed)


SAME_AS_CPYTHON = {
    "loop variables persist": ("t = 0\nfor i in range(5):\n    for j in range(3):\n        t += i * j\n", "print(t, i, j)"),
    "functions and recursion": ("def f(n):\n    return 1 if n < 2 else n * f(n - 1)\n", "print(f(12))"),
    "private memo": ("_memo = {}\ndef fib(n):\n    if n not in _memo:\n        _memo[n] = n if n < 2 else fib(n-1) + fib(n-2)\n"
                     "    return _memo[n]\nprint(fib(80))", "print(len(_memo))"),
    "classes keep their plain names": ("class P:\n    def __init__(self):\n        self.v = 0\np = P()\n"
                                       "for i in range(10):\n    p.v += i\nprint(p.v, P.__name__, type(p).__name__)",),
    "dataclass repr uses the class name": ("from dataclasses import dataclass\n@dataclass\nclass Q:\n    a: int\n"
                                           "    b: int = 2\nprint(Q(1))", "print(Q(3, 4) == Q(3, 4))"),
    "annotated names": ("x: int = 5\ny: int\nprint(x)", "print('y' in dir())"),
    "global statements at top level": ("global z\nz = 3\ndef g():\n    global z\n    z += 1\ng()\nprint(z)",
                                       "for k in range(2):\n    global w\n    w = k\nprint(w)"),
    "walrus in a comprehension binds at top level": ("ys = [(last := k * k) for k in range(4)]\nprint(ys, last)",),
    "comprehension variables stay inside": ("k = 'outer'\nsq = [k for k in range(3)]\nprint(k, sq)",),
    "except-as is unbound afterwards": ("try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    msg = str(e)\n"
                                        "print(msg, 'e' in dir())",),
    "imports bind their names": ("import math as m, itertools\nimport collections.abc\nfrom fractions import Fraction as F\n"
                                 "print(m.isqrt(99), F(1, 3), collections.abc.Sized is not None)",),
    "del and unpacking": ("a, (b, *c) = 1, (2, 3, 4)\nprint(a, b, c)\ndel a\nprint('a' in dir())",),
    "with binds": ("class Box:\n    def __enter__(self):\n        return 7\n    def __exit__(self, *exc):\n        return True\n"
                   "with Box() as s:\n    d = {}\n    d['x']\nprint(s)",),
    "nested functions and nonlocal": ("def outer():\n    v = 1\n    def inner():\n        nonlocal v\n        v += 1\n"
                                      "    inner()\n    return v\nprint(outer())",),
    "a later cell sees an earlier cell's function": ("def sq(n):\n    return n * n\n", "print(sum(sq(i) for i in range(10)))"),
    "a function reads a global bound after it": ("def show():\n    print(late)\nlate = 4\nshow()",),
    "lambdas and closures": ("adders = [lambda x, k=k: x + k for k in range(3)]\nprint([f(10) for f in adders])",),
    "method calls on built-ins": ("s = []\nfor i in range(5):\n    s.append(str(i))\nprint(''.join(s).upper(), 'a,b'.split(','))",),
    "operators on items": ("xs = [3, 1, 4, 1, 5]\nt = 0\nfor i in range(5):\n    t += xs[i] * xs[-1 - i] % 7\n"
                           "    if xs[i] > 2 and -xs[i] < 0:\n        t += 1\nprint(t, xs[0] == 3, not xs[1])",),
    "item assignment and augmented items": ("c = [0] * 5\nd = {}\nfor i in range(20):\n    c[i % 5] += i\n"
                                            "    d[i % 3] = d.get(i % 3, 0) + 1\nprint(c, d)",),
    "__name__ guard": ("if __name__ == '__main__':\n    print('main')",),
    "future import stays at module level": ("from __future__ import annotations\ndef f(a: int) -> int:\n    return a\nprint(f(2))",),
    "generators defined at top level": ("def g():\n    yield from range(3)\nprint(list(g()))",),
}


@pytest.mark.parametrize("name", sorted(SAME_AS_CPYTHON))
def test_cells_behave_as_module_level_cpython(interp, name):
    cells = SAME_AS_CPYTHON[name]
    assert sandbox(interp, *cells) == cpython(*cells)


def test_the_top_level_is_compiled_as_a_function_with_global_names(interp):
    code, error = interp.compile("t = 0\nfor i in range(3):\n    t += i\n", "<c>")
    assert not error and code.co_flags & CO_OPTIMIZED  # fast locals: a function's code, not a module's
    assert set(code.co_varnames) <= {"_gi_", "_go_", "_gw_", "_ga_", "_gc_", "_print"}
    assert {"t", "i"} <= set(code.co_names)  # the cell's names are globals


@pytest.mark.parametrize("cell, message", [
    ("return 5", "'return' outside function"),
    ("x = 1\nyield x", "'yield' outside function"),
    ("nonlocal q", "nonlocal declaration not allowed at module level"),
])
def test_what_python_allows_only_in_functions_is_still_refused(interp, cell, message):
    result = interp.run(cell, 0)
    assert result["status"] == "error" and result["phase"] == "compile" and message in result["stderr"]


def test_errors_still_point_at_the_cell_line(interp):
    interp.reset()
    result = interp.run("x = 1\nprint(undefined_name)", 3)
    assert result["stderr"].splitlines()[-3:] == [
        '  File "<cell 3>", line 2, in <module>', "    print(undefined_name)",
        "NameError: name 'undefined_name' is not defined"]


def test_fast_paths_still_meet_the_guards(interp):
    interp.reset()
    interp.globals["kinds"] = [type]  # as if a library's container held the real metaclass
    for i, cell in enumerate([
        "k = kinds[0]",  # an item read
        "k = [kinds[0]][0]",
        "class Grab:\n    def __radd__(self, other):\n        global k\n        k = other\n        return 0\n"
        "kinds[0] + Grab()",  # an operand handed to the cell's own reflected operator
        "class Eq:\n    def __eq__(self, other):\n        global k\n        k = other\n        return True\n"
        "kinds[0] == Eq()",
    ]):
        result = interp.run(cell + "\nprint(k('X', (), {}))", i)
        assert result["status"] == "error" and "TypeError" in result["stderr"], (cell, result)
    # Items beside literals are read raw (only their own and a built-in operator meet them).
    assert interp.run("xs = [5, -2]\nprint(-xs[0], xs[1] % 7, xs[0] == 5, 0 < xs[0] < 9)", 9)["stdout"] == "-5 5 True True\n"
    # Method calls on library objects still go through _getattr_; `**` mappings through _apply_.
    assert "TypeError" in interp.run("d = dict(a=1)\nd.update(**{'_x': 1})", 10)["stderr"]
    hidden = interp.run("import fractions\nfractions.Fraction(1, 3).__reduce__()", 11)
    assert hidden["status"] == "error" and hidden["phase"] == "compile"
    assert interp.run("class A:\n    pass\nA().missing()", 12)["stderr"].endswith(
        "AttributeError: 'A' object has no attribute 'missing'")

"""The import contract: a lower layer never imports a higher one, and the core never imports Ray.

Layers, lowest first (see the package docstring in ``raysolve/__init__.py``):
core → sandbox, io → tiny → engines → runtime → competition, bench → serve → cli.
Every import is checked, including the lazy ones inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "raysolve"

ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "sandbox": {"core", "sandbox"},
    "io": {"core", "io"},
    "tiny": {"core", "sandbox", "tiny"},
    "engines": {"core", "tiny", "engines"},
    "runtime": {"core", "sandbox", "io", "tiny", "engines", "runtime"},
    "competition": {"core", "sandbox", "io", "tiny", "engines", "runtime", "competition"},
    "bench": {"core", "sandbox", "io", "tiny", "engines", "runtime", "competition", "bench"},
    "serve": {"core", "io", "runtime", "serve"},
    "cli": set(),  # the top: anything
    "__init__": {"core", "io", "runtime"},  # lazy re-exports only (checked below)
}
"""Layer -> the layers its modules may import from."""

HEAVY = ("torch", "transformers", "vllm", "tensorrt_llm", "fastapi", "pandas", "pyarrow")
"""Libraries the core may use only lazily (inside the function that needs them)."""


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.name != "__init__.py" else "__init__"


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, lazy ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(("raysolve", *path.relative_to(PACKAGE).with_suffix("").parts))
    if path.name == "__init__.py":
        package += ".__init__"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            if name == "raysolve":  # from raysolve import x: x is a subpackage
                found += [(node.lineno, f"raysolve.{alias.name}") for alias in node.names]
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_the_tree_has_the_expected_layers():
    top = {layer_of(p) for p in MODULES}
    assert top <= set(ALLOWED), f"modules outside the layer map: {top - set(ALLOWED)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path):
    layer = layer_of(path)
    allowed = ALLOWED[layer]
    bad = []
    for line, name in imports_of(path):
        parts = name.split(".")
        if parts[0] != "raysolve" or len(parts) < 2 or layer == "cli":
            continue
        target = parts[1]
        if target not in allowed:
            bad.append(f"line {line}: {name} ({layer} may import only {sorted(allowed)})")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_never_imports_ray_and_heavy_libraries_only_lazily(path):
    bad = [f"line {line}: {name}" for line, name in imports_of(path) if name.split(".")[0] == "ray"]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad += [f"line {node.lineno}: {n} at module level" for n in names if n.split(".")[0] in HEAVY]
    assert not bad, "\n".join(bad)


def test_the_scheduler_has_no_timers_and_no_clock_of_its_own():
    names = {name.split(".")[0] for _, name in imports_of(PACKAGE / "core" / "scheduling.py")}
    assert not names & {"asyncio", "time", "threading", "ray"}, names


def test_importing_every_core_module_loads_no_ray():
    modules = [f"raysolve.core.{p.stem}" for p in sorted((PACKAGE / "core").glob("*.py")) if p.stem != "__init__"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            "bad = [m for m in ('ray', 'torch', 'transformers') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_package_root_loads_nothing_until_asked():
    code = ("import sys, raysolve\nassert 'ray' not in sys.modules\n"
            "from raysolve import SolveOptions, Problem\nassert 'ray' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)

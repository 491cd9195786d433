"""Importing an engine backend stays cheap: torch, transformers and the engine libraries are
imported by ``start()``, not at import (``raysolve.engines`` promises it for its registry).

Each check runs in a fresh interpreter, since this test process may have imported them already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "vllm", "tensorrt_llm")


def heavy_modules_after_import(module: str) -> list[str]:
    code = (f"import json, sys, {module}; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)


@pytest.mark.parametrize("module", [
    "raysolve.engines",
    "raysolve.engines.hf",
    "raysolve.engines.hf.engine",
    "raysolve.engines.hf.compat",
    "raysolve.engines.vllm",
    "raysolve.engines.trtllm",
    "raysolve.engines.adapter",
])
def test_importing_a_backend_imports_no_model_library(module):
    assert heavy_modules_after_import(module) == []


def test_every_registered_backend_resolves_without_model_libraries():
    code = ("import importlib, json, sys; from raysolve.engines import BACKENDS; "
            "[getattr(importlib.import_module(m), c) and getattr(importlib.import_module(m), k) "
            " for m, c, k in BACKENDS.values()]; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout) == []

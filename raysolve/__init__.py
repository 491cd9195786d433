"""raysolve: a distributed batch solver for competition math on Ray.

Problems fan out as tool-integrated samples over engine actors; sandbox actors run
the model's code; a majority vote with early stopping decides.

The package is layered; a module imports only from its own layer or the ones below
(``tests/test_layers.py`` enforces it):

- ``core``: pure logic with no Ray — answers, voting, prompting, the tool loop, the
  per-problem scheduling state machine, records, replay;
- ``sandbox``, ``io``, ``tiny``, ``engines``: restricted execution, problem loading and
  result files, the embedded model, inference backends;
- ``runtime``: configuration, the Ray actors and the ``Solver`` builder;
- ``competition``, ``bench``: the AIMO-style runner and the benchmarks, on top of the runtime;
- ``serve`` and ``cli``: the entry points.

``raysolve.Solver``, ``raysolve.SolverConfig`` and ``raysolve.Problem`` are loaded on
first use, so importing a core module never imports Ray.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Problem": "raysolve.io.problems",
    "SolveOptions": "raysolve.core.scheduling",
    "Solver": "raysolve.runtime.solver",
    "SolverConfig": "raysolve.runtime.config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'raysolve' has no attribute {name!r}")

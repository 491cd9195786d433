"""Where a benchmark's results go: ``OUT.json``, ``OUT.csv`` and ``OUT.png`` side by side.

The names are built by appending the extension, never with ``Path.with_suffix``, which
reads a dot in the name as a suffix and turned ``engine-compare-h100-1.5b`` into
``engine-compare-h100-1.json``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable


def result_path(out: Path, ext: str) -> Path:
    """``OUT.ext`` next to ``OUT``, keeping any dots in ``OUT``'s name."""
    return out.parent / f"{out.name}.{ext}"


def write_results(out: Path, report: dict[str, Any], rows: list[dict[str, Any]],
                  plot: Callable[[dict[str, Any], Path], None] | None = None) -> None:
    """``OUT.json`` (the whole report), ``OUT.csv`` (one row per measurement, columns in order of
    first appearance) and, with ``plot``, ``OUT.png`` drawn from the report."""
    out.parent.mkdir(parents=True, exist_ok=True)
    result_path(out, "json").write_text(json.dumps(report, indent=1) + "\n")
    with result_path(out, "csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
    if plot is not None:
        plot(report, result_path(out, "png"))

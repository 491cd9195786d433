"""Sandbox designs side by side: raysolve's sessions vs subprocess-per-call vs in-process.

    python jobs/bench_sandbox.py --out results/sandbox-bench          # ~3 min on 2 cores
    python jobs/bench_sandbox.py --corpus --out results/sandbox-bench # also the corpora

Three designs run the same snippets on the same machine in one run:

* ``raysolve``: ``LocalSandbox`` — one restricted-Python worker per session, forked
  from a fork server that loaded numpy/SymPy once, state kept between calls;
* ``subprocess``: a fresh ``python -c`` per execution with a clean environment and
  a temp cwd (Numina's AIMO-1 code and NeMo-Skills' non-session path). It keeps no
  state, so a later call re-runs the sample's earlier cells first, as those designs do;
* ``in-process``: ``Interpreter`` (the same RestrictedPython guards) called directly,
  no process boundary — the unsafe lower bound.

Latency (p50/p95 per execution) for trivial code in a warm session, a SymPy solve,
the stateful second call of a session, and a new session's first call; throughput
(executions/s) with every core busy on samples of four calls each (session start and
end included); the guards' cost on loop-heavy code against plain CPython (``LOOPS``,
in-process). ``--corpus`` runs the red-team and legitimate-code corpora and
reports the share that passes. Writes JSON, CSV and a PNG. The measurements are
``raysolve.bench.sandbox``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from raysolve.bench.files import write_results
from raysolve.bench.sandbox import DESIGNS, SCENARIOS, corpus, csv_rows, loop_overhead, measure, ratios, targets


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    designs = list(report["latency"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1.3]})
    width = 0.8 / len(designs)
    for i, design in enumerate(designs):
        values = [report["latency"][design][s]["p50_ms"] for s in SCENARIOS]
        bars = left.bar([j + i * width for j in range(len(SCENARIOS))], values, width, label=design)
        left.bar_label(bars, fmt="%.3g", fontsize=7)
    left.set_xticks([j + width * (len(designs) - 1) / 2 for j in range(len(SCENARIOS))], SCENARIOS, fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("p50 latency per execution (ms, log)")
    left.axhline(5, color="grey", lw=0.8, ls="--")
    left.legend(fontsize=8)
    left.set_title("latency")
    rates = [report["throughput"][d]["exec_per_s"] for d in designs]
    bars = right.bar(designs, rates, color=["C0", "C1", "C2"][: len(designs)])
    right.bar_label(bars, fmt="%.0f", fontsize=8)
    right.set_yscale("log")
    right.set_ylabel("executions/s, all cores (log)")
    right.set_title(f"throughput ({report['cores']} cores)")
    right.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"sandbox designs — {report['machine']} — {report['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=200, help="latency repetitions (raysolve, in-process)")
    p.add_argument("--subprocess-reps", type=int, default=20, help="latency repetitions for subprocess-per-call")
    p.add_argument("--samples", type=int, default=200, help="4-call samples for throughput (subprocess: a quarter)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument("--corpus", action="store_true", help="also run the red-team and legitimate-code corpora")
    p.add_argument("--out", default="results/sandbox-bench", help="output prefix (.json, .csv, .png)")
    args = p.parse_args()

    report: dict[str, Any] = {
        "command": "python jobs/bench_sandbox.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {args.cores} cores, Python {platform.python_version()}",
        "cores": args.cores,
        "latency": {},
        "throughput": {},
    }
    for design in DESIGNS:
        report["latency"][design], report["throughput"][design] = measure(
            design, args.reps, args.subprocess_reps, args.samples, args.cores)
        row = report["latency"][design]
        print(f"{design:11} " + "  ".join(f"{s} p50 {row[s]['p50_ms']:.2f} ms p95 {row[s]['p95_ms']:.2f}" for s in SCENARIOS)
              + f"  | {report['throughput'][design]['exec_per_s']:.1f} exec/s", flush=True)
    report["loops"] = loop_overhead()
    for name, row in report["loops"]["snippets"].items():
        print(f"loops  {name:26} CPython {row['cpython_ms']:8.1f} ms  sandbox {row['sandbox_ms']:8.1f} ms  "
              f"{row['ratio']:.2f}x", flush=True)
    report["ratios"] = ratios(report)
    report["targets"] = targets(report["ratios"])
    print(json.dumps(report["ratios"]), json.dumps(report["targets"]), flush=True)
    if args.corpus:
        report["corpus"] = asyncio.run(corpus())
        for name in ("redteam", "legit"):
            total = report["corpus"][name]["all"]
            print(f"{name}: {total['passed']}/{total['total']} as expected", flush=True)

    write_results(Path(args.out), report, csv_rows(report), _plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())

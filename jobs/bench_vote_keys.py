"""Milliseconds per vote key: a run's stream of answers and first sights of LaTeX forms.

    python jobs/bench_vote_keys.py --traces results/traces-tiny-32-samples.jsonl.gz --out results/vote-key-cost

The tool loop keys each finished sample's boxed answer (``raysolve.core.canonical``): numbers
by hand in microseconds, LaTeX expressions through math-verify's parser on first sight, then
from a cache. The measurements are ``raysolve.bench.vote_keys``; the target is p50 ≤ 1 ms.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

from raysolve.bench.files import write_results
from raysolve.bench.vote_keys import measure


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_form = report["first_sight_by_form_ms"]
    fig, ax = plt.subplots(figsize=(9, 8))
    forms = sorted(by_form, key=by_form.get)
    ax.barh(range(len(forms)), [by_form[f] for f in forms], color="tab:blue")
    ax.set_yticks(range(len(forms)), [f if len(f) < 40 else f[:37] + "..." for f in forms], fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="tab:red", linestyle="--", label="1 ms")
    s = report["stream"]
    ax.set_title(f"vote key, first sight per form (stream of {s['answers']} answers: p50 {s['p50']:.4f} ms)")
    ax.set_xlabel("ms (log)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--traces", default="results/traces-tiny-32-samples.jsonl.gz")
    p.add_argument("--out", default="results/vote-key-cost")
    args = p.parse_args()
    report = {"command": "python jobs/bench_vote_keys.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, Python {platform.python_version()}, one core", "traces": args.traces,
              **measure(args.traces)}
    s, f = report["stream"], report["first_sight"]
    print(f"stream      {s['answers']} answers ({s['distinct']} distinct): p50 {s['p50']} ms  p95 {s['p95']} ms  max {s['max']} ms")
    print(f"first sight {f['forms']} forms: p50 {f['p50']} ms  p95 {f['p95']} ms  max {f['max']} ms")
    rows = [{"measurement": name, **{k: v for k, v in report[name].items()}} for name in ("stream", "first_sight")]
    write_results(Path(args.out), report, rows, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())

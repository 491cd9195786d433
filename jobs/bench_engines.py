"""Engine comparison: the seed's table for a list of engine configs, on the same problems and samples.

    python jobs/bench_engines.py --engine hf=engines/hf-tiny.yaml \\
        --engine vllm-bf16=engines/vllm-1gpu.yaml,engine.options.dtype=bfloat16 \\
        --problems examples/problems.jsonl --limit 10 --samples 12 --out results/engine-compare

Each ``--engine NAME=CONFIG[,dotted.key=value ...]`` is a solver config (any backend)
with optional overrides. One engine at a time is started, warmed up, and measured on the
same problems with the same seeds, in two phases:

- **one problem at a time** (the seed's setting: all ``--samples`` launched together,
  full vote, every sample runs to its end): wall time per problem, time to first token,
  per-sample tokens/s (generated tokens over the sample's engine time, code runs excluded);
- **batch** (every problem queued, ``--samples`` each, ``--pool`` in flight per problem):
  total generation time and batch tokens/s, as a dataset job would see them;

plus accuracy (majority vote, both phases; ``raysolve.bench.engine_compare``). Writes ``OUT.json``,
``OUT.csv``, ``OUT.png``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from raysolve.bench.engine_compare import measure
from raysolve.bench.files import write_results
from raysolve.io.problems import Fields, Problem, load_problems
from raysolve.runtime.config import SolverConfig


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    names = [r["engine"] for r in rows]
    panels = [("per_problem_s", "s per problem (one at a time)"), ("ttft_p50_ms", "time to first token p50 (ms)"),
              ("per_sample_tok_s", "per-sample tokens/s"), ("batch_tok_s", "batch tokens/s")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8))
    for ax, (key, title) in zip(axes, panels):
        ax.bar(names, [r[key] for r in rows], color="tab:blue")
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        for i, r in enumerate(rows):
            ax.annotate(f"{r[key]:g}", (i, r[key]), ha="center", va="bottom", fontsize=7)
    acc = ", ".join(f"{r['engine']} {r['accuracy']:.0%}" for r in rows if r["accuracy"] is not None)
    fig.suptitle(f"{report['problems']} problems × {report['samples']} samples — accuracy: {acc or 'n/a'} — "
                 f"{report['machine']} — {report['date']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", action="append", required=True, help="NAME=CONFIG[,dotted.key=value ...]")
    p.add_argument("--problems", default="examples/problems.jsonl")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--samples", type=int, default=12, help="samples per problem (the seed: 12)")
    p.add_argument("--pool", type=int, default=4, help="batch phase: samples in flight per problem")
    p.add_argument("--out", default="results/engine-compare")
    p.add_argument("--machine", help="machine description for the report (default: from the platform)")
    args = p.parse_args()

    import ray

    problems = [x for x in load_problems(args.problems, Fields()) if isinstance(x, Problem)][: args.limit]
    engines = [SolverConfig.from_spec(spec) for spec in args.engine]
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=2 * 10**9)
    started = time.time()
    rows = []
    for name, cfg, source in engines:
        row = {**measure(name, cfg, problems, args.samples, args.pool), **source}
        rows.append(row)
        print(f"{name:>16}: {row['per_problem_s']:.2f} s/problem, TTFT p50 {row['ttft_p50_ms']:.0f} ms, "
              f"{row['per_sample_tok_s']:.0f} tok/s per sample, batch {row['batch_tok_s']:.0f} tok/s in "
              f"{row['generation_s']:.1f} s, accuracy {row['accuracy']}", flush=True)
    ray.shutdown()
    gpu = os.environ.get("RAYSOLVE_GPU_NAME")
    report = {
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d", time.localtime(started)),
        "machine": args.machine or f"{platform.machine()}, {os.cpu_count()} CPUs" + (f", {gpu}" if gpu else ""),
        "problems": len(problems), "source": args.problems, "samples": args.samples, "pool": args.pool,
        "rows": rows, "bench_s": round(time.time() - started, 1),
    }
    out = Path(args.out)
    flat = [{k: v for k, v in r.items() if k not in ("engine_stats", "overrides")} for r in rows]
    write_results(out, report, flat, plot)
    print(f"written {out}.json, .csv, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

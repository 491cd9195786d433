"""Measure the tiny model through the real solver on CPU: pass@1, majority@N, diversity, per family.

    python jobs/eval_tiny.py --heldout examples/tiny-heldout.jsonl --out results/tiny-eval

Writes a held-out set first if the file is missing (``--seed``, ``--per-family``), then
runs ``raysolve solve`` on it with the full vote (no early stopping, so every sample
is a pass@1 draw), and reports from the written records:
- pass@1: share of samples whose answer is correct;
- maj@N: share of problems whose plurality answer is correct;
- distinct answers per problem ("no answer" counts as one), share of samples with a code call;
- per-family pass@1 and maj@N; engine throughput (tokens/s, excluding start-up)
(``raysolve.bench.tiny_eval``).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

from raysolve.bench.tiny_eval import analyse, write_heldout
from raysolve.cli import main as cli_main


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["families"])
    fig, ax = plt.subplots(figsize=(12, 5))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [report["families"][n]["pass_at_1"] for n in names], 0.4, label="pass@1")
    ax.bar([x + 0.2 for x in xs], [report["families"][n]["maj_at_n"] for n in names], 0.4,
           label=f"majority of {report['samples_per_problem']}")
    ax.set_xticks(list(xs), names, rotation=70, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(f"tiny model, held-out set ({report['problems']} problems): pass@1 {report['pass_at_1']:.1%}, "
                 f"maj@{report['samples_per_problem']} {report['maj_at_n']:.1%}")
    ax.legend(loc="lower left", framealpha=0.95)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heldout", default="examples/tiny-heldout.jsonl")
    p.add_argument("--seed", type=int, default=20261122, help="held-out generator seed (training uses 0)")
    p.add_argument("--per-family", type=int, default=11)
    p.add_argument("--model", help="model dir (default: the engine's default model)")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--out", default="results/tiny-eval")
    p.add_argument("--run-dir", default="runs/tiny-eval")
    p.add_argument("--analyse-only", action="store_true")
    p.add_argument("--backend", help="engine backend for the run (default: the config's, hf on CPU); vllm on a GPU")
    p.add_argument("--gpus-per-engine", type=float, help="GPUs per engine actor (with --backend vllm: 1)")
    args = p.parse_args(argv)
    heldout, out = Path(args.heldout), Path(args.out)
    if not heldout.exists():
        write_heldout(heldout, args.seed, args.per_family)
    if not args.analyse_only:
        flags = ["solve", str(heldout), "--out", args.run_dir, "--no-resume", "--samples", str(args.samples),
                 "--pool", str(args.samples), "--policy", "full"]
        if args.model:
            flags += ["--model", args.model]
        if args.backend:
            flags += ["--backend", args.backend]
        if args.gpus_per_engine is not None:
            flags += ["--gpus-per-engine", str(args.gpus_per_engine)]
        if cli_main(flags) != 0:
            return 1
    report = analyse(heldout, Path(args.run_dir))
    report.update({
        "samples_per_problem": args.samples,
        "command": "python " + " ".join(["jobs/eval_tiny.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores, "
                   + (f"backend {args.backend}, {args.gpus_per_engine or 0:g} GPU per engine" if args.backend else "no GPU"),
        "date": time.strftime("%Y-%m-%d"),
        "model": args.model or "default",
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(report, indent=1) + "\n")
    with open(f"{out}-families.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["family", "problems", "pass_at_1", "maj_at_n"])
        for name, row in report["families"].items():
            w.writerow([name, row["problems"], f"{row['pass_at_1']:.4f}", f"{row['maj_at_n']:.4f}"])
    plot(report, Path(f"{out}.png"))
    print(json.dumps({k: v for k, v in report.items() if k != "families"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure the tiny model through the real solver on CPU: pass@1, majority@N, diversity, per family.

    python jobs/eval_tiny.py --heldout examples/tiny-heldout.jsonl --out results/tiny-eval

Writes a held-out set first if the file is missing (``--seed``, ``--per-family``), then
runs ``raysolve solve`` on it with the full vote (no early stopping, so every sample
is a pass@1 draw), and reports from the written records:
- pass@1: share of samples whose answer is correct;
- maj@N: share of problems whose plurality answer is correct;
- distinct answers per problem ("no answer" counts as one), share of samples with a code call;
- per-family pass@1 and maj@N; engine throughput (tokens/s, excluding start-up).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

from raysolve.core.answers import is_correct
from raysolve.cli import main as cli_main
from raysolve.io.output import read_rows


def write_heldout(path: Path, seed: int, per_family: int) -> None:
    from raysolve.tiny.families import FAMILIES, generate

    problems = generate(seed, per_family * len(FAMILIES))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i, p in enumerate(problems):
            f.write(json.dumps({"id": f"{p.family}-{i}", "problem": p.problem, "answer": str(p.answer),
                                "family": p.family}) + "\n")


def analyse(heldout: Path, run_dir: Path) -> dict:
    family = {r["id"]: r["family"] for r in read_rows(heldout)}
    gold = {r["id"]: r["answer"] for r in read_rows(heldout)}
    problems = read_rows(run_dir / "problems.jsonl")
    samples = read_rows(run_dir / "samples.jsonl")
    per = defaultdict(lambda: {"problems": 0, "maj_correct": 0, "samples": 0, "sample_correct": 0})
    for r in problems:
        f = per[family[r["problem_id"]]]
        f["problems"] += 1
        f["maj_correct"] += bool(r["correct"])
    with_code = 0
    distinct: dict[str, set] = defaultdict(set)
    for s in samples:
        f = per[family[s["problem_id"]]]
        f["samples"] += 1
        f["sample_correct"] += is_correct(s["answer"], gold[s["problem_id"]])
        with_code += s["code_calls"] > 0
        distinct[s["problem_id"]].add(s["answer"])
    summary = json.loads((run_dir / "summary.json").read_text())
    n_samples = len(samples)
    return {
        "problems": len(problems),
        "samples": n_samples,
        "pass_at_1": sum(f["sample_correct"] for f in per.values()) / n_samples,
        "maj_at_n": sum(f["maj_correct"] for f in per.values()) / len(problems),
        "distinct_answers_per_problem": sum(len(v) for v in distinct.values()) / len(distinct),
        "share_samples_with_code_call": with_code / n_samples,
        "tokens_per_s": summary["this_run"]["tokens_per_s"],
        "generated_tokens": summary["generated_tokens"],
        "tool_output_tokens": summary["tool_output_tokens"],
        "wall_s": summary["this_run"]["wall_s"],
        "families": {
            name: {"problems": f["problems"], "maj_at_n": f["maj_correct"] / f["problems"],
                   "pass_at_1": f["sample_correct"] / f["samples"]}
            for name, f in sorted(per.items())
        },
    }


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
    args = p.parse_args(argv)
    heldout, out = Path(args.heldout), Path(args.out)
    if not heldout.exists():
        write_heldout(heldout, args.seed, args.per_family)
    if not args.analyse_only:
        flags = ["solve", str(heldout), "--out", args.run_dir, "--no-resume", "--samples", str(args.samples),
                 "--pool", str(args.samples), "--policy", "full"]
        if args.model:
            flags += ["--model", args.model]
        if cli_main(flags) != 0:
            return 1
    report = analyse(heldout, Path(args.run_dir))
    report.update({
        "samples_per_problem": args.samples,
        "command": "python " + " ".join(["jobs/eval_tiny.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores, no GPU",
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

"""Competition mode under a tight budget: budget policies side by side on one engine.

    python jobs/bench_aimo.py --per-problem 2,3 --out results/aimo-bench

On the same problems (``examples/aimo-heldout.csv``: 60 generated problems the tiny model
was not trained on), in the same order, with the same total budget (``per_problem`` × the
problem count) and the same engine actors, one run after another:

- ``adaptive``: unused time carried forward, the sample count sized to the deadline
  (``raysolve.competition.budget.AdaptiveBudget``, at most ``--samples``), early stop;
- ``adaptive+stragglers``: the same, cancelling the last 2 samples once the rest are in;
- ``fixed``: an even share per problem, ``--samples`` samples, early stop;
- ``all samples``: an even share per problem, ``--samples`` samples, no early stop;
- and once, without any budget, ``--samples`` samples and no early stop: the accuracy
  and time the full vote needs.

The engines start (and warm up) once, before the first run; each run's clock starts
with its first problem. Writes ``OUT.json``, ``OUT.csv`` and ``OUT.png``, and each run's
per-problem log under ``--runs``. The runs are ``raysolve.bench.budgets``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from raysolve.bench.budgets import STOP, conditions, run_condition, unbounded
from raysolve.bench.files import write_results
from raysolve.io.problems import Fields, Problem, load_problems
from raysolve.runtime.config import SolverConfig
from raysolve.runtime.solver import Solver


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", default="examples/aimo-heldout.csv")
    p.add_argument("--limit", type=int)
    p.add_argument("--per-problem", default="2,3", help="average seconds a problem, comma-separated levels")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--modulus", type=int, default=1000)
    p.add_argument("--config", help="SolverConfig YAML (default: the embedded tiny engine)")
    p.add_argument("--out", default="results/aimo-bench")
    p.add_argument("--runs", default="runs/aimo-bench", help="per-problem logs of each run")
    args = p.parse_args()

    problems: list[Problem] = [x for x in load_problems(args.problems, Fields()) if isinstance(x, Problem)]
    problems = problems[: args.limit] if args.limit else problems
    levels = [float(x) for x in args.per_problem.split(",")]
    cfg = SolverConfig.load(args.config) if args.config else SolverConfig()
    runs = Path(args.runs)
    shutil.rmtree(runs, ignore_errors=True)
    rows: list[dict[str, Any]] = []
    started = time.time()
    with Solver(cfg) as solver:
        solver.warm_up(samples=args.samples)

        def run(name: str, per_problem: float | None, policy: Any) -> None:
            row = run_condition(solver, cfg, problems, name, per_problem, policy, args.modulus, runs)
            rows.append(row)
            print(f"{name:>20} @ {per_problem or '∞'} s/problem: score {row['score']:.1%}, "
                  f"{row['time_used_s']:.0f} s of {row['budget_s'] or '∞'} s, votes/partial/fallback "
                  f"{row['votes']}/{row['partial']}/{row['fallback']}, samples {row['samples_finished']}/"
                  f"{row['samples_launched']}", flush=True)

        for level in levels:
            for name, policy in conditions(level * len(problems), len(problems), args.samples).items():
                run(name, level, policy)
        run("all samples", None, unbounded(len(problems), args.samples))

    report = {
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d", time.localtime(started)),
        "machine": f"{platform.machine()}, {platform.node()}, Python {platform.python_version()}",
        "engine": json.loads(cfg.engine.model_dump_json()),
        "problems": len(problems), "source": args.problems, "samples": args.samples, "modulus": args.modulus,
        "stop_policy": STOP, "rows": rows, "bench_s": round(time.time() - started, 1),
    }
    out = Path(args.out)
    write_results(out, report, rows, plot)
    print(f"written {out}.json, .csv, .png in {report['bench_s']:.0f} s")
    return 0


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    levels = sorted({r["per_problem_s"] for r in rows if r["per_problem_s"]})
    names = list(dict.fromkeys(r["condition"] for r in rows if r["per_problem_s"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        got = [next(r for r in rows if r["condition"] == name and r["per_problem_s"] == lv) for lv in levels]
        xs = [j + i * width for j in range(len(levels))]
        ax1.bar(xs, [r["score"] * 100 for r in got], width, label=name)
        ax2.bar(xs, [r["time_used_s"] / r["budget_s"] * 100 for r in got], width, label=name)
    free = next((r for r in rows if r["per_problem_s"] is None), None)
    if free:
        ax1.axhline(free["score"] * 100, color="k", ls="--", lw=1,
                    label=f"all samples, no budget ({free['time_used_s'] / report['problems']:.1f} s/problem)")
    for ax in (ax1, ax2):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(levels))], [f"{lv:g} s/problem" for lv in levels])
    ax1.set_ylabel("score (%)")
    ax1.set_ylim(0, 100)
    ax2.set_ylabel("time used (% of budget)")
    ax2.axhline(100, color="r", lw=1)
    ax1.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"competition mode, {report['problems']} held-out problems, {report['samples']} samples at most — "
                 f"{report['machine']} — {report['date']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())

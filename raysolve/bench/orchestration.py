"""``raysolve bench``: what the solver adds on top of its engines (efficiency, the highest sample
rate, cancellation, scaling). Also ``jobs/bench_orchestration.py``, for ``ray job submit``.

    raysolve bench --out results/orchestration-cpu                             # the loadgen benchmark engine
    raysolve bench --engine vllm=engines/vllm-1gpu.yaml,engine.options.model=M --tool-share 0.3  # real engines

With no ``--engine``, every engine actor is the ``loadgen`` BENCHMARK engine (a load
generator emitting tokens at a set rate, with real cancellation), so the coordinator can
be pushed to what fast GPU engines would produce on a small CPU machine. Sections, each
measured side by side in this one run (``raysolve.bench.harness``):

- ``efficiency``: for each ``ACTORSxTOKENS_PER_SxLENGTH`` load, engine alone vs full solver
  on the same actors (early stopping off): solver tokens/s ÷ engine-alone tokens/s,
  samples/s, Ray calls and coordinator CPU per sample; the coordinator's cProfile at the
  heaviest load goes to ``OUT-profile.txt``;
- ``cancel``: settle → every running sibling stopped at its engine actor (and → the
  coordinator has the actors' acknowledgements), p50/p95, in pool and launch-all
  scheduling (lengths spread so siblings are mid-generation at the settle; on a real
  engine this needs a model whose samples agree, so that votes settle early);
- ``scaling``: 1, 2, 4, 8 engine actors at a fixed rate each, the work growing with them;
  throughput and its ratio to linear.

With ``--engine NAME=CONFIG[,dotted.key=value ...]`` (repeatable) the efficiency and cancel
sections run on real engines instead, one config after another on the same problems; each
gets ``--problems`` problems per GPU it holds, and ``relative_to_first`` compares its solver
throughput with the first config's (e.g. one actor vs two tp=1 actors vs one tp=2 actor).
``--tool-share`` makes that share of samples call the sandbox mid-generation: loadgen writes
the calls itself; a real engine is wrapped in the ``toolmix`` BENCHMARK wrapper, which
appends a code call after about ``--tool-after`` tokens (models with random weights never write
code) and whose appended tokens are not counted as generated.

Writes ``OUT.json`` (everything, with the command, machine and date), ``OUT.csv`` (one row
per measurement) and ``OUT.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import ray

from raysolve.core.scheduling import SolveOptions
from raysolve.bench.files import write_results
from raysolve.bench.harness import bench_problems, cancel_latency, orchestration, scaling, with_tool_calls
from raysolve.runtime.config import SolverConfig


def loadgen_config(actors: int, rate: float, length: int, sigma: float = 0.0, code_share: float = 0.0,
                   depth: int = 256) -> SolverConfig:
    return SolverConfig.model_validate({
        "engine": {"backend": "loadgen", "num_actors": actors, "num_cpus": 0.01, "options": {
            "tokens_per_s": rate, "length_mean": length, "length_sigma": sigma, "code_share": code_share,
            "max_concurrency": depth, "request_tokens_per_s": max(300.0, rate / depth * 4)}},
        "budget": {"max_tokens": 4 * length + 256},
        "num_sandbox_actors": 1,
    })


def parse_load(text: str) -> tuple[int, float, int]:
    a, r, l = text.lower().split("x")
    return int(a), float(r), int(l)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="raysolve bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", action="append", default=[], metavar="NAME=CONFIG[,dotted.key=value ...]",
                   help="a real engine's solver config with overrides, repeatable (default: the loadgen "
                        "benchmark engine at --loads); efficiency and cancel sections only")
    p.add_argument("--only", action="append", choices=["efficiency", "cancel", "scaling"])
    p.add_argument("--loads", default="1x20000x512,4x20000x2048,16x20000x2048,16x20000x512",
                   help="loadgen: ACTORSxTOKENS_PER_SxLENGTH, comma-separated")
    p.add_argument("--seconds", type=float, default=20.0, help="loadgen: target length of each solver run")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--tool-share", type=float, default=0.0,
                   help="share of samples calling the sandbox mid-generation (real engines: the toolmix "
                        "benchmark wrapper injects the calls)")
    p.add_argument("--tool-after", type=int, default=256,
                   help="real engines: mean tokens generated before the call (each sample's within ±50 %%)")
    p.add_argument("--repeats", type=int, default=1,
                   help="efficiency: solver runs per load, each between two engine-alone runs (median)")
    p.add_argument("--scaling", default="1,2,4,8")
    p.add_argument("--scaling-rate", type=float, default=4000.0)
    p.add_argument("--problems", type=int, default=200,
                   help="cancel runs, and real engines' runs per GPU (or per actor without GPUs)")
    p.add_argument("--out", default="results/orchestration-cpu")
    p.add_argument("--plot", metavar="OUT.json", help="only draw OUT.png from a report written earlier")
    args = p.parse_args(argv)
    if args.plot:
        report_path = Path(args.plot)
        plot(json.loads(report_path.read_text()), report_path.parent / f"{report_path.stem}.png")
        return 0
    sections = args.only or (["efficiency", "cancel"] if args.engine else ["efficiency", "cancel", "scaling"])
    engines = [SolverConfig.from_spec(spec) for spec in args.engine]
    if args.tool_share:
        engines = [(name, with_tool_calls(cfg, args.tool_share, args.tool_after), meta)
                   for name, cfg, meta in engines]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, object_store_memory=2 * 10**9)
    report: dict[str, Any] = {
        "command": "raysolve bench " + " ".join(sys.argv[1:] if argv is None else argv), "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
                   + (f", {os.environ['RAYSOLVE_GPU_NAME']}" if os.environ.get("RAYSOLVE_GPU_NAME") else ""),
        "engine": ", ".join(name for name, _, _ in engines) or "loadgen (benchmark engine)",
        "samples_per_problem": args.samples, "tool_share": args.tool_share,
    }
    rows: list[dict[str, Any]] = []
    started = time.time()
    if "efficiency" in sections:
        report["efficiency"] = []
        for label, cfg, n_problems, profile in _efficiency_runs(args, engines):
            r = orchestration(cfg, bench_problems(n_problems, "eff"), args.samples, args.samples, profile=profile,
                              repeats=args.repeats)
            text = r["solver"].pop("profile", None)
            if text:
                Path(f"{out}-profile.txt").write_text(f"coordinator cProfile at load {label}\n\n{text}")
            r["load"] = label
            first = report["efficiency"][0]["solver"]["tokens_per_s"] if report["efficiency"] else None
            r["relative_to_first"] = round(r["solver"]["tokens_per_s"] / first, 3) if first else 1.0
            report["efficiency"].append(r)
            rows.append({"section": "efficiency", "load": label, "efficiency": r["efficiency"],
                         "relative_to_first": r["relative_to_first"], **r["solver"],
                         "engine_alone_tokens_per_s": r["engine_alone"][0]["tokens_per_s"]})
            print(f"efficiency {label}: {r['efficiency']:.3f} (solver {r['solver']['tokens_per_s']:.0f} tok/s, "
                  f"{r['solver']['samples_per_s']:.1f} samples/s, coordinator "
                  f"{r['solver']['coordinator_cpu_ms_per_sample']:.2f} ms CPU/sample, "
                  f"{r['relative_to_first']:.3f}x the first)", flush=True)
            _write(out, report, rows, started)  # a run cut short keeps what it measured
    if "cancel" in sections:
        cfg = engines[0][1] if engines else loadgen_config(2, 20000, 512, sigma=0.6)
        modes = {
            "pool:4": SolveOptions(mode="pool", num_samples=args.samples, pool_size=4, stop_policy="unbeatable|beta:0.95:min=3"),
            "launch-all": SolveOptions(mode="launch-all", num_samples=args.samples, stop_policy="unbeatable|beta:0.95:min=3"),
        }
        report["cancel"] = cancel_latency(cfg, bench_problems(args.problems, "cancel"), args.samples, modes)
        for mode, r in report["cancel"].items():
            rows.append({"section": "cancel", "load": mode, **r["settle_to_stopped_ms"],
                         "acknowledged_p50": r["settle_to_acknowledged_ms"].get("p50"),
                         "acknowledged_p95": r["settle_to_acknowledged_ms"].get("p95"),
                         "problems": r["problems"], "samples_cancelled": r["samples_cancelled"]})
            print(f"cancel {mode}: settle -> all siblings stopped {r['settle_to_stopped_ms']}, "
                  f"-> acknowledged at the coordinator {r['settle_to_acknowledged_ms']}", flush=True)
        _write(out, report, rows, started)
    if "scaling" in sections and not engines:
        counts = [int(x) for x in args.scaling.split(",")]
        per_actor = max(4, int(args.seconds * args.scaling_rate / 512 / args.samples))
        report["scaling"] = scaling(lambda n: loadgen_config(n, args.scaling_rate, 512), counts, per_actor,
                                    args.samples, args.samples)
        for r in report["scaling"]:
            rows.append({"section": "scaling", "load": f"{r['engines']}x{args.scaling_rate:g}x512", **r})
            print(f"scaling {r['engines']} actors: {r['tokens_per_s']:.0f} tok/s, {r['ratio_to_linear']:.3f} of linear",
                  flush=True)
    ray.shutdown()
    _write(out, report, rows, started)
    print(f"written {out.parent / out.name}.json, .csv, .png in {report['bench_s']:.0f} s")
    return 0


def _efficiency_runs(args: argparse.Namespace, engines: list[tuple[str, SolverConfig, dict[str, Any]]]
                     ) -> list[tuple[str, SolverConfig, int, bool]]:
    """(label, config, problems, profile?) for each efficiency measurement."""
    if engines:
        runs = []
        for name, cfg, _ in engines:
            actors = cfg.engine.num_actors if isinstance(cfg.engine.num_actors, int) else 1
            units = actors * max(1, int(cfg.engine.num_gpus or 0))  # the work grows with the GPUs
            runs.append((name, cfg, args.problems * units, False))
        return runs
    loads = [parse_load(x) for x in args.loads.split(",")]
    heaviest = max(loads, key=lambda x: x[0] * x[1] / x[2])
    runs = []
    for actors, rate, length in loads:
        cfg = loadgen_config(actors, rate, length, code_share=args.tool_share)
        # enough problems for about --seconds of engine time
        n_problems = max(actors * 2, int(args.seconds * actors * rate / length / args.samples))
        runs.append((f"{actors}x{rate:g}x{length}", cfg, n_problems, (actors, rate, length) == heaviest))
    return runs


def _write(out: Path, report: dict[str, Any], rows: list[dict[str, Any]], started: float) -> None:
    """``OUT.json``, ``OUT.csv`` and ``OUT.png`` with what has been measured so far."""
    report["bench_s"] = round(time.time() - started, 1)
    try:
        write_results(out, report, rows, plot)
    except ImportError:  # e.g. a GPU image without matplotlib: ``--plot OUT.json`` redraws it elsewhere
        print("matplotlib is not installed: no PNG", flush=True)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("efficiency", "throughput", "cancel", "scaling")
              if k in report or (k == "throughput" and report.get("efficiency"))]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, key in zip(axes[0], panels):
        if key == "throughput":  # engine alone (mean of before and after) vs solver, side by side
            runs = report["efficiency"]
            xs = range(len(runs))
            alone = [sum(a["tokens_per_s"] for a in r["engine_alone"]) / len(r["engine_alone"]) for r in runs]
            ax.bar([x - 0.2 for x in xs], alone, 0.4, label="engine alone")
            ax.bar([x + 0.2 for x in xs], [r["solver"]["tokens_per_s"] for r in runs], 0.4, label="full solver")
            ax.set_xticks(list(xs), [r["load"] for r in runs])
            ax.set_title("tokens/s", fontsize=9)
            ax.legend(fontsize=7)
        elif key == "efficiency":
            labels = [r["load"] for r in report[key]]
            ax.bar(labels, [r["efficiency"] for r in report[key]])
            ax.axhline(0.95 if report["engine"].startswith("loadgen") else 0.97, color="r", lw=1, ls="--")
            ax.set_ylim(0, 1.1)
            ax.set_title("solver ÷ engine alone (tokens/s)", fontsize=9)
            for i, r in enumerate(report[key]):
                ax.annotate(f"{r['efficiency']:.3f}\n{r['solver']['samples_per_s']:.0f} smp/s", (i, r["efficiency"]),
                            ha="center", va="bottom", fontsize=7)
        elif key == "cancel":
            modes = list(report[key])
            bars = [("settle_to_stopped_ms", "p50"), ("settle_to_stopped_ms", "p95"),
                    ("settle_to_acknowledged_ms", "p95")]
            for j, (what, q) in enumerate(bars):
                ax.bar([i + 0.27 * j for i in range(len(modes))],
                       [report[key][m].get(what, {}).get(q, 0) for m in modes], 0.27,
                       label=f"{q} {'stopped' if 'stopped' in what else 'acknowledged'}")
            ax.set_xticks([i + 0.27 for i in range(len(modes))], modes)
            ax.axhline(20, color="r", lw=1, ls="--")
            ax.set_title("settle → all siblings stopped at their engines (ms)", fontsize=9)
            ax.legend(fontsize=7)
        else:
            n = [r["engines"] for r in report[key]]
            ax.plot(n, [r["tokens_per_s"] for r in report[key]], "o-", label="solver")
            ax.plot(n, [report[key][0]["tokens_per_s"] / n[0] * x for x in n], "k--", lw=1, label="linear")
            ax.set_xlabel("engine actors")
            ax.set_title("scaling (tokens/s)", fontsize=9)
            ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{report['engine']} — {report['machine']} — {report['date']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())

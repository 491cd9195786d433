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
end included). ``--corpus`` runs the red-team and legitimate-code corpora and
reports the share that passes. Writes JSON, CSV and a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raysolve.sandbox import LocalSandbox, SandboxConfig
from raysolve.sandbox.process import worker_env
from raysolve.core.timing import percentile

TRIVIAL = "print(1 + 1)"
SYMPY = "import sympy as sp\nx = sp.symbols('x')\nprint(sp.solve(x**2 - 5*x + 6, x))"
STATE_SETUP = "import sympy as sp\nx = sp.symbols('x')\nf = x**3 - 6*x**2 + 11*x - 6"
STATE_USE = "print(sp.factor(f))"
SAMPLE = (  # one tool-integrated sample: four calls that build on each other
    "import sympy as sp\nx, y = sp.symbols('x y')\nsol = sp.solve([x + y - 10, x - y - 2], [x, y])\nprint(sol)",
    "print(sol[x] * sol[y])",
    "total = sum(i * i for i in range(1000))\nprint(total % 1000)",
    "import math\nprint((math.comb(20, 10) + total) % 1000)",
)
SCENARIOS = ("trivial", "sympy-solve", "stateful-2nd-call", "new-session-1st-call")


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1e3 * percentile(ordered, 0.5), 3),
        "p95_ms": round(1e3 * percentile(ordered, 0.95), 3),
        "n": len(ordered),
    }


# ---------------------------------------------------------------- raysolve


async def _raysolve_latency(reps: int) -> dict[str, dict[str, float]]:
    async with LocalSandbox(SandboxConfig(max_workers=1, warm_workers=1)) as box:
        sid = await box.open_session()
        await box.run(sid, "pass")
        out: dict[str, list[float]] = {s: [] for s in SCENARIOS}
        for _ in range(reps):
            for name, code in (("trivial", TRIVIAL), ("sympy-solve", SYMPY)):
                t0 = time.perf_counter()
                result = await box.run(sid, code)
                out[name].append(time.perf_counter() - t0)
                assert result.status == "ok", result
        await box.close(sid)
        for _ in range(reps):
            sid = await box.open_session()
            t0 = time.perf_counter()
            await box.run(sid, TRIVIAL)
            out["new-session-1st-call"].append(time.perf_counter() - t0)
            await box.run(sid, STATE_SETUP)
            t0 = time.perf_counter()
            result = await box.run(sid, STATE_USE)
            out["stateful-2nd-call"].append(time.perf_counter() - t0)
            assert result.stdout == "(x - 3)*(x - 2)*(x - 1)\n", result
            await box.close(sid)
            await asyncio.sleep(0.005)  # let the warm worker refill, as between real samples
        return {k: _ms(v) for k, v in out.items()}


async def _raysolve_throughput(samples: int, cores: int) -> dict[str, float]:
    async with LocalSandbox(SandboxConfig(max_workers=cores, warm_workers=cores)) as box:
        await box.run(await box.open_session(), "pass")  # fork server up

        async def one_sample() -> None:
            sid = await box.open_session()
            for code in SAMPLE:
                result = await box.run(sid, code)
                assert result.status == "ok", result
            await box.close(sid)

        gate = asyncio.Semaphore(2 * cores)

        async def gated() -> None:
            async with gate:
                await one_sample()

        t0 = time.perf_counter()
        await asyncio.gather(*(gated() for _ in range(samples)))
        wall = time.perf_counter() - t0
    return {"executions": samples * len(SAMPLE), "wall_s": round(wall, 3), "exec_per_s": round(samples * len(SAMPLE) / wall, 2)}


# ---------------------------------------------------------------- subprocess per call


def _subprocess_call(code: str) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-sbx-") as cwd:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=worker_env(cwd), capture_output=True, text=True, timeout=60)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-500:])
    return wall


def _subprocess_latency(reps: int) -> dict[str, dict[str, float]]:
    out: dict[str, list[float]] = {s: [] for s in SCENARIOS}
    for _ in range(reps):
        out["trivial"].append(_subprocess_call(TRIVIAL))
        out["new-session-1st-call"].append(out["trivial"][-1])  # every call is a new process
        out["sympy-solve"].append(_subprocess_call(SYMPY))
        out["stateful-2nd-call"].append(_subprocess_call(STATE_SETUP + "\n" + STATE_USE))
    return {k: _ms(v) for k, v in out.items()}


def _subprocess_sample() -> None:
    for i in range(len(SAMPLE)):
        _subprocess_call("\n".join(SAMPLE[: i + 1]))  # stateless: earlier cells run again


def _subprocess_throughput(samples: int, cores: int) -> dict[str, float]:
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(cores) as pool:
        list(pool.map(lambda _: _subprocess_sample(), range(samples)))
    wall = time.perf_counter() - t0
    return {"executions": samples * len(SAMPLE), "wall_s": round(wall, 3), "exec_per_s": round(samples * len(SAMPLE) / wall, 2)}


# ---------------------------------------------------------------- in-process (unsafe lower bound)

_INTERPRETER: Any = None


def _interpreter() -> Any:
    global _INTERPRETER
    if _INTERPRETER is None:
        from raysolve.sandbox.restricted import Interpreter

        _INTERPRETER = Interpreter()
        _INTERPRETER.warm_up()
    return _INTERPRETER


def _inprocess_latency(reps: int) -> dict[str, dict[str, float]]:
    interp = _interpreter()
    out: dict[str, list[float]] = {s: [] for s in SCENARIOS}

    def timed(code: str) -> float:
        t0 = time.perf_counter()
        result = interp.run(code)
        wall = time.perf_counter() - t0
        assert result["status"] == "ok", result
        return wall

    for _ in range(reps):
        out["trivial"].append(timed(TRIVIAL))
        out["sympy-solve"].append(timed(SYMPY))
        interp.reset()
        out["new-session-1st-call"].append(timed(TRIVIAL))
        timed(STATE_SETUP)
        out["stateful-2nd-call"].append(timed(STATE_USE))
    return {k: _ms(v) for k, v in out.items()}


def _inprocess_samples(count: int) -> int:
    interp = _interpreter()
    for _ in range(count):
        interp.reset()
        for code in SAMPLE:
            assert interp.run(code)["status"] == "ok"
    return count


def _inprocess_throughput(samples: int, cores: int) -> dict[str, float]:
    share = [samples // cores + (i < samples % cores) for i in range(cores)]
    with concurrent.futures.ProcessPoolExecutor(cores) as pool:
        list(pool.map(_inprocess_samples, [0] * cores))  # load and warm each process first
        t0 = time.perf_counter()
        list(pool.map(_inprocess_samples, share))
        wall = time.perf_counter() - t0
    return {"executions": samples * len(SAMPLE), "wall_s": round(wall, 3), "exec_per_s": round(samples * len(SAMPLE) / wall, 2)}


# ---------------------------------------------------------------- corpora


async def _corpus() -> dict[str, Any]:
    from raysolve.sandbox.corpus import LEGIT, REDTEAM, run_cases, summarize

    async with LocalSandbox(SandboxConfig(max_workers=2)) as box:
        isolation = await box.isolation()
        redteam = await run_cases(box, REDTEAM)
        legit = await run_cases(box, LEGIT)
    failures = [{"name": r.case.name, "category": r.case.category, "problem": r.problem} for r in redteam + legit if r.problem]
    return {"isolation": isolation, "redteam": summarize(redteam), "legit": summarize(legit), "failures": failures}


# ---------------------------------------------------------------- report


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
    runs: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("raysolve", lambda: asyncio.run(_raysolve_latency(args.reps)), lambda: asyncio.run(_raysolve_throughput(args.samples, args.cores))),
        ("subprocess", lambda: _subprocess_latency(args.subprocess_reps), lambda: _subprocess_throughput(max(args.samples // 4, args.cores), args.cores)),
        ("in-process", lambda: _inprocess_latency(args.reps), lambda: _inprocess_throughput(args.samples, args.cores)),
    ]
    for design, latency, throughput in runs:
        report["latency"][design] = latency()
        report["throughput"][design] = throughput()
        row = report["latency"][design]
        print(f"{design:11} " + "  ".join(f"{s} p50 {row[s]['p50_ms']:.2f} ms p95 {row[s]['p95_ms']:.2f}" for s in SCENARIOS)
              + f"  | {report['throughput'][design]['exec_per_s']:.1f} exec/s", flush=True)
    ours, fresh = report["throughput"]["raysolve"]["exec_per_s"], report["throughput"]["subprocess"]["exec_per_s"]
    report["ratios"] = {
        "throughput_vs_subprocess": round(ours / fresh, 1),
        "throughput_vs_in_process": round(ours / report["throughput"]["in-process"]["exec_per_s"], 3),
        "trivial_p50_ms": report["latency"]["raysolve"]["trivial"]["p50_ms"],
    }
    report["targets"] = {
        "trivial_p50_le_5ms": report["ratios"]["trivial_p50_ms"] <= 5.0,
        "throughput_ge_10x_subprocess": report["ratios"]["throughput_vs_subprocess"] >= 10.0,
    }
    print(json.dumps(report["ratios"]), json.dumps(report["targets"]), flush=True)
    if args.corpus:
        report["corpus"] = asyncio.run(_corpus())
        for name in ("redteam", "legit"):
            total = report["corpus"][name]["all"]
            print(f"{name}: {total['passed']}/{total['total']} as expected", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    with out.with_suffix(".csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["design", "scenario", "p50_ms", "p95_ms", "n", "throughput_exec_per_s"])
        for design, rows in report["latency"].items():
            for scenario, row in rows.items():
                writer.writerow([design, scenario, row["p50_ms"], row["p95_ms"], row["n"], report["throughput"][design]["exec_per_s"]])
    _plot(report, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

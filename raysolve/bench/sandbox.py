"""Sandbox designs side by side (``jobs/bench_sandbox.py``): raysolve's sessions vs
subprocess-per-call vs in-process, on the same snippets.

* ``raysolve``: ``LocalSandbox`` — one restricted-Python worker per session, forked
  from a fork server that loaded numpy/SymPy once, state kept between calls;
* ``subprocess``: a fresh ``python -c`` per execution with a clean environment and
  a temp cwd (Numina's AIMO-1 code and NeMo-Skills' non-session path). It keeps no
  state, so a later call re-runs the sample's earlier cells first, as those designs do;
* ``in-process``: ``Interpreter`` (the same RestrictedPython guards) called directly,
  no process boundary — the unsafe lower bound.

``measure(design, ...)``: latency (p50/p95 per execution) of each of ``SCENARIOS`` and
throughput (executions/s with every core busy on 4-call samples, session start and end
included); ``ratios`` and ``targets`` compare the designs; ``corpus`` runs the red-team and
legitimate-code corpora.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
import tempfile
import time
from typing import Any

from raysolve.core.timing import latency_summary_ms
from raysolve.sandbox import LocalSandbox, SandboxConfig
from raysolve.sandbox.process import worker_env

DESIGNS = ("raysolve", "subprocess", "in-process")

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


def latency_ms(samples_s: list[float]) -> dict[str, float]:
    """``p50_ms``, ``p95_ms`` (to 0.001 ms) and ``n`` of latencies given in seconds
    (``raysolve.core.timing``'s nearest-rank percentiles)."""
    summary = latency_summary_ms(samples_s, digits=3)
    return {"p50_ms": summary["p50"], "p95_ms": summary["p95"], "n": summary["n"]}


def _rate(samples: int, wall: float) -> dict[str, float]:
    return {"executions": samples * len(SAMPLE), "wall_s": round(wall, 3),
            "exec_per_s": round(samples * len(SAMPLE) / wall, 2)}


# ---------------------------------------------------------------- raysolve


async def raysolve_latency(reps: int) -> dict[str, dict[str, float]]:
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
        return {k: latency_ms(v) for k, v in out.items()}


async def raysolve_throughput(samples: int, cores: int) -> dict[str, float]:
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
    return _rate(samples, wall)


# ---------------------------------------------------------------- subprocess per call


def _subprocess_call(code: str) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-sbx-") as cwd:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=worker_env(cwd), capture_output=True, text=True, timeout=60)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-500:])
    return wall


def subprocess_latency(reps: int) -> dict[str, dict[str, float]]:
    out: dict[str, list[float]] = {s: [] for s in SCENARIOS}
    for _ in range(reps):
        out["trivial"].append(_subprocess_call(TRIVIAL))
        out["new-session-1st-call"].append(out["trivial"][-1])  # every call is a new process
        out["sympy-solve"].append(_subprocess_call(SYMPY))
        out["stateful-2nd-call"].append(_subprocess_call(STATE_SETUP + "\n" + STATE_USE))
    return {k: latency_ms(v) for k, v in out.items()}


def _subprocess_sample() -> None:
    for i in range(len(SAMPLE)):
        _subprocess_call("\n".join(SAMPLE[: i + 1]))  # stateless: earlier cells run again


def subprocess_throughput(samples: int, cores: int) -> dict[str, float]:
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(cores) as pool:
        list(pool.map(lambda _: _subprocess_sample(), range(samples)))
    wall = time.perf_counter() - t0
    return _rate(samples, wall)


# ---------------------------------------------------------------- in-process (unsafe lower bound)

_INTERPRETER: Any = None


def _interpreter() -> Any:
    global _INTERPRETER
    if _INTERPRETER is None:
        from raysolve.sandbox.restricted import Interpreter

        _INTERPRETER = Interpreter()
        _INTERPRETER.warm_up()
    return _INTERPRETER


def inprocess_latency(reps: int) -> dict[str, dict[str, float]]:
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
    return {k: latency_ms(v) for k, v in out.items()}


def _inprocess_samples(count: int) -> int:
    interp = _interpreter()
    for _ in range(count):
        interp.reset()
        for code in SAMPLE:
            assert interp.run(code)["status"] == "ok"
    return count


def inprocess_throughput(samples: int, cores: int) -> dict[str, float]:
    share = [samples // cores + (i < samples % cores) for i in range(cores)]
    with concurrent.futures.ProcessPoolExecutor(cores) as pool:
        list(pool.map(_inprocess_samples, [0] * cores))  # load and warm each process first
        t0 = time.perf_counter()
        list(pool.map(_inprocess_samples, share))
        wall = time.perf_counter() - t0
    return _rate(samples, wall)


# ---------------------------------------------------------------- loop-heavy code

LOOPS = {
    "nested index sum": "t = 0\nxs = list(range(300))\nfor i in range(300):\n    for j in range(300):\n        t += xs[i] * xs[j] % 7\nprint(t)",
    "dict counting": "d = {}\nfor i in range(200000):\n    k = i % 97\n    d[k] = d.get(k, 0) + 1\nprint(len(d))",
    "item augmented assignment": "c = [0] * 100\nfor i in range(200000):\n    c[i % 100] += i\nprint(sum(c))",
    "brute-force triples": "n = 0\nfor a in range(1, 200):\n    for b in range(a, 200):\n        c2 = a*a + b*b\n        c = int(c2 ** 0.5)\n        if c*c == c2 and c < 200:\n            n += 1\nprint(n)",
    "attribute in a loop": "class P:\n    def __init__(self):\n        self.v = 0\np = P()\nfor i in range(100000):\n    p.v += i\nprint(p.v)",
    "collatz while loop": "best = 0\nfor n in range(1, 20000):\n    m, c = n, 0\n    while m != 1:\n        m = m // 2 if m % 2 == 0 else 3 * m + 1\n        c += 1\n    best = max(best, c)\nprint(best)",
    "list comprehension": "print(sum([x * x % 13 for x in range(300000)]))",
    "string building": "s = []\nfor i in range(100000):\n    s.append(str(i % 10))\nprint(len(''.join(s)))",
}
"""Loop-heavy snippets of the kind brute-force solutions are made of."""


def in_a_function(code: str) -> str:
    """``code`` as the body of ``main()``: the same loop where CPython uses fast locals."""
    return "def main():\n" + "".join(f"    {line}\n" for line in code.splitlines()) + "main()\n"


def loop_overhead(reps: int = 3) -> dict[str, Any]:
    """The guards' cost on loop-heavy code: each ``LOOPS`` snippet at top level (as models
    write it) and inside a function, in plain CPython (``exec``) and through the sandbox's
    ``Interpreter`` (compile + guarded run, no process boundary), best of ``reps`` each,
    alternating, in this process; the outputs must agree."""
    import contextlib
    import io
    import statistics

    interp = _interpreter()
    rows = {}
    for form, wrap in (("top level", lambda code: code), ("in a function", in_a_function)):
        for name, snippet in LOOPS.items():
            code = wrap(snippet)
            plain = guarded = float("inf")
            for _ in range(reps):
                buf = io.StringIO()
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(buf):
                    exec(compile(code, "<plain>", "exec"), {"__name__": "__main__"})
                plain = min(plain, time.perf_counter() - t0)
                interp.reset()
                t0 = time.perf_counter()
                result = interp.run(code, 0, 100_000)
                guarded = min(guarded, time.perf_counter() - t0)
                if result["stdout"] != buf.getvalue():
                    raise AssertionError(f"{name}: sandbox printed {result['stdout']!r}, CPython {buf.getvalue()!r}")
            rows[f"{name} ({form})"] = {"cpython_ms": round(plain * 1000, 2), "sandbox_ms": round(guarded * 1000, 2),
                                        "ratio": round(guarded / plain, 2)}
    found = [r["ratio"] for r in rows.values()]
    return {"snippets": rows, "median_ratio": round(statistics.median(found), 2), "max_ratio": max(found)}


# ---------------------------------------------------------------- corpora


async def corpus() -> dict[str, Any]:
    from raysolve.sandbox.corpus import LEGIT, REDTEAM, run_cases, summarize

    async with LocalSandbox(SandboxConfig(max_workers=2)) as box:
        isolation = await box.isolation()
        redteam = await run_cases(box, REDTEAM)
        legit = await run_cases(box, LEGIT)
    failures = [{"name": r.case.name, "category": r.case.category, "problem": r.problem} for r in redteam + legit if r.problem]
    return {"isolation": isolation, "redteam": summarize(redteam), "legit": summarize(legit), "failures": failures}


# ---------------------------------------------------------------- the comparison


def measure(design: str, reps: int, subprocess_reps: int, samples: int, cores: int
            ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """``design``'s latency per scenario and its throughput. ``reps`` latency repetitions
    (``subprocess_reps`` for subprocess-per-call) and ``samples`` 4-call samples for throughput
    (subprocess-per-call: a quarter, at least ``cores``)."""
    if design == "raysolve":
        return asyncio.run(raysolve_latency(reps)), asyncio.run(raysolve_throughput(samples, cores))
    if design == "subprocess":
        return subprocess_latency(subprocess_reps), subprocess_throughput(max(samples // 4, cores), cores)
    if design == "in-process":
        return inprocess_latency(reps), inprocess_throughput(samples, cores)
    raise ValueError(f"unknown sandbox design {design!r}; known: {', '.join(DESIGNS)}")


def ratios(report: dict[str, Any]) -> dict[str, float]:
    """raysolve's throughput over the other designs', and its trivial-call p50."""
    ours, fresh = report["throughput"]["raysolve"]["exec_per_s"], report["throughput"]["subprocess"]["exec_per_s"]
    return {
        "throughput_vs_subprocess": round(ours / fresh, 1),
        "throughput_vs_in_process": round(ours / report["throughput"]["in-process"]["exec_per_s"], 3),
        "trivial_p50_ms": report["latency"]["raysolve"]["trivial"]["p50_ms"],
        "new_session_p50_ms": report["latency"]["raysolve"]["new-session-1st-call"]["p50_ms"],
        **({"loops_median_ratio": report["loops"]["median_ratio"], "loops_max_ratio": report["loops"]["max_ratio"]}
           if "loops" in report else {}),
    }


def targets(found: dict[str, float]) -> dict[str, bool]:
    """The design's targets on ``ratios``: a trivial call in a warm session within 1 ms, a new
    session's first call within 5 ms, 10× subprocess-per-call's throughput, and (when measured)
    loop-heavy code at most 2× CPython (every ``LOOPS`` snippet, at top level and in a function)."""
    out = {
        "trivial_p50_le_1ms": found["trivial_p50_ms"] <= 1.0,
        "throughput_ge_10x_subprocess": found["throughput_vs_subprocess"] >= 10.0,
    }
    if "new_session_p50_ms" in found:
        out["new_session_p50_le_5ms"] = found["new_session_p50_ms"] <= 5.0
    if "loops_max_ratio" in found:
        out["loops_each_le_2x_cpython"] = found["loops_max_ratio"] <= 2.0
    return out


def csv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per design and scenario: its latency and the design's throughput."""
    return [{"design": design, "scenario": scenario, "p50_ms": row["p50_ms"], "p95_ms": row["p95_ms"], "n": row["n"],
             "throughput_exec_per_s": report["throughput"][design]["exec_per_s"]}
            for design, rows in report["latency"].items() for scenario, row in rows.items()]

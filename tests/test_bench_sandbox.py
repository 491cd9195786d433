"""The sandbox-design benchmark's measurements (``raysolve.bench.sandbox``) at tiny sizes, and its
report helpers on canned numbers. No timing assertions: only shapes, counts and the verdicts."""

from __future__ import annotations

import asyncio

import pytest

from raysolve.bench import sandbox
from raysolve.core.timing import latency_summary_ms, percentile


def test_latency_uses_the_core_percentiles_in_the_reports_shape():
    values = [0.0001 * i for i in range(1, 21)] + [0.01234567]
    got = sandbox.latency_ms(values)
    assert list(got) == ["p50_ms", "p95_ms", "n"]
    assert got == {"p50_ms": round(1000 * percentile(values, 0.5), 3),
                   "p95_ms": round(1000 * percentile(values, 0.95), 3), "n": 21}
    summary = latency_summary_ms(values, digits=3)
    assert (got["p50_ms"], got["p95_ms"]) == (summary["p50"], summary["p95"]) == (1.1, 2.0)


def canned() -> dict:
    latency = {d: {s: {"p50_ms": 1.0 + i, "p95_ms": 2.0 + i, "n": 5} for s in sandbox.SCENARIOS}
               for i, d in enumerate(sandbox.DESIGNS)}
    return {"latency": latency, "throughput": {"raysolve": {"exec_per_s": 300.0}, "subprocess": {"exec_per_s": 20.0},
                                               "in-process": {"exec_per_s": 400.0}}}


def test_ratios_targets_and_csv_rows():
    report = canned()
    report["loops"] = {"median_ratio": 1.5, "max_ratio": 2.5, "snippets": {}}
    ratios = sandbox.ratios(report)
    assert ratios == {"throughput_vs_subprocess": 15.0, "throughput_vs_in_process": 0.75, "trivial_p50_ms": 1.0,
                      "new_session_p50_ms": 1.0, "loops_median_ratio": 1.5, "loops_max_ratio": 2.5}
    assert sandbox.targets(ratios) == {"trivial_p50_le_1ms": True, "throughput_ge_10x_subprocess": True,
                                       "new_session_p50_le_5ms": True, "loops_each_le_2x_cpython": False}
    assert sandbox.targets({**ratios, "trivial_p50_ms": 1.01, "throughput_vs_subprocess": 9.9,
                            "new_session_p50_ms": 5.5, "loops_max_ratio": 1.9}) == {
        "trivial_p50_le_1ms": False, "throughput_ge_10x_subprocess": False, "new_session_p50_le_5ms": False,
        "loops_each_le_2x_cpython": True}
    rows = sandbox.csv_rows(report)
    assert len(rows) == len(sandbox.DESIGNS) * len(sandbox.SCENARIOS)
    assert list(rows[0]) == ["design", "scenario", "p50_ms", "p95_ms", "n", "throughput_exec_per_s"]
    assert rows[0] == {"design": "raysolve", "scenario": "trivial", "p50_ms": 1.0, "p95_ms": 2.0, "n": 5,
                       "throughput_exec_per_s": 300.0}


def test_unknown_design():
    with pytest.raises(ValueError, match="unknown sandbox design"):
        sandbox.measure("docker", 1, 1, 1, 1)


def test_raysolve_sessions_at_a_tiny_size():
    latency = asyncio.run(sandbox.raysolve_latency(2))
    assert set(latency) == set(sandbox.SCENARIOS) and all(row["n"] == 2 for row in latency.values())
    rate = asyncio.run(sandbox.raysolve_throughput(2, 1))
    assert rate["executions"] == 2 * len(sandbox.SAMPLE) and rate["exec_per_s"] > 0


def test_in_process_at_a_tiny_size():
    latency = sandbox.inprocess_latency(1)
    assert set(latency) == set(sandbox.SCENARIOS) and all(row["n"] == 1 for row in latency.values())
    assert sandbox._inprocess_samples(2) == 2


def test_subprocess_call_is_stateless():
    assert sandbox._subprocess_call(sandbox.TRIVIAL) > 0
    with pytest.raises(RuntimeError):
        sandbox._subprocess_call(sandbox.STATE_USE)  # no session: `sp` and `f` are not defined


def test_loop_overhead_runs_every_snippet_and_agrees_with_cpython(monkeypatch):
    small = {"tiny loop": "t = 0\nfor i in range(50):\n    t += i\nprint(t)",
             "index": "xs = [1, 2, 3]\nprint(xs[0] + xs[-1])"}
    monkeypatch.setattr(sandbox, "LOOPS", small)
    found = sandbox.loop_overhead(reps=1)
    assert set(found["snippets"]) == {f"{name} ({form})" for name in small for form in ("top level", "in a function")}
    assert all(row["ratio"] > 0 for row in found["snippets"].values())
    assert found["max_ratio"] == max(row["ratio"] for row in found["snippets"].values())

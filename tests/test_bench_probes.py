"""The GPU smoke test's probes and verdicts (``raysolve.bench.gpu_probes``), on CPU: the checks on
canned reports, the engine probes on the scripted test engine, and the shared engine-alone
baseline. No GPU, no vLLM, no timing assertions."""

from __future__ import annotations

import argparse
import asyncio
import copy
import inspect
import subprocess
import sys

import pytest

from raysolve.bench import gpu_probes
from raysolve.bench.gpu_probes import (SmokeSettings, checks, latency_ms, placement_ok, problem_texts,
                                       throughput_report, tiny_checks)
from raysolve.bench.harness import combine_alone, engine_alone_on_actor, percentiles_ms
from raysolve.core.prompting import PromptFormat
from raysolve.core.timing import latency_summary_ms
from raysolve.engines.testing.scripted import (CharCodec, ScriptedEngine, ScriptedEngineConfig, directive_problem,
                                               directive_script)


def passing_report() -> dict:
    return {
        "placement_ok": True,
        "seeds": {"samples": 8, "distinct": 8},
        "throughput": {"work": {"problems": 4, "samples_per_problem": 16}, "solver": {"samples": 64}},
        "cancel_on_settle": {"cancelled": 32, "samples": 32, "engines_running_after": [0, None]},
        "abort": {"all_ended_cancelled": True, "running_after_all": 0, "kv_cache_usage_before": 0.4,
                  "kv_cache_usage_after_half": 0.2, "abort_to_scheduler_drop_ms": {"max": 12.5}},
    }


def test_checks_pass_on_a_good_report_and_name_each_failure():
    assert checks(passing_report()) == {"placement": True, "seeds_differ": True, "solver_did_all_work": True,
                                        "settle_cancels_every_running_sibling": True, "abort_stops_and_frees": True}
    failures = {
        "placement": lambda r: r.update(placement_ok=False),
        "seeds_differ": lambda r: r["seeds"].update(distinct=7),
        "solver_did_all_work": lambda r: r["throughput"]["solver"].update(samples=63),
        "settle_cancels_every_running_sibling": lambda r: r["cancel_on_settle"].update(engines_running_after=[0, 3]),
        "abort_stops_and_frees": lambda r: r["abort"]["abort_to_scheduler_drop_ms"].update(max=1000.0),
    }
    for name, spoil in failures.items():
        report = copy.deepcopy(passing_report())
        spoil(report)
        found = checks(report)
        assert [k for k, ok in found.items() if not ok] == [name]
    for key, value in (("all_ended_cancelled", False), ("running_after_all", 1), ("kv_cache_usage_after_half", 0.4)):
        report = copy.deepcopy(passing_report())
        report["abort"][key] = value
        assert checks(report)["abort_stops_and_frees"] is False
    report = copy.deepcopy(passing_report())
    report["cancel_on_settle"]["cancelled"] = 31
    assert checks(report)["settle_cancels_every_running_sibling"] is False
    del report["abort"]  # --dry-run: no abort probe, no verdict on it
    assert "abort_stops_and_frees" not in checks(report)


def actor(node: str, gpus: list[str], children: list[str | None] = ()) -> dict:
    visible = ",".join(gpus) or None
    return {"node": node, "ray_gpu_ids": gpus, "cuda_visible_devices": visible,
            "children": [{"cuda_visible_devices": c} for c in children]}


def test_placement_ok():
    assert placement_ok([actor("n1", ["0"], ["0", None]), actor("n1", ["1"])], 1)
    assert placement_ok([actor("n1", ["0", "1"], ["0,1"])], 2)
    assert placement_ok([actor("n1", ["0"]), actor("n2", ["0"])], 1)  # the same index on two nodes
    assert placement_ok([actor("n1", []), actor("n1", [])], 0)  # --dry-run: no GPUs anywhere
    assert not placement_ok([actor("n1", ["0"]), actor("n1", ["0"])], 1)  # one GPU shared
    assert not placement_ok([actor("n1", ["0"])], 2)  # fewer GPUs than asked for
    assert not placement_ok([actor("n1", ["0"], ["0,1"])], 1)  # a worker sees another GPU
    wrong = actor("n1", ["0"])
    wrong["cuda_visible_devices"] = "1"
    assert not placement_ok([wrong], 1)


def test_tiny_checks():
    good = {"accuracy": 0.9, "code_errors": 3, "code_calls": 10, "sample_errors": 0}
    assert all(tiny_checks(good).values())
    assert tiny_checks({**good, "accuracy": 0.79}) == {"accuracy_near_cpu": False, "code_runs": True,
                                                       "no_sample_errors": True}
    assert not tiny_checks({**good, "code_errors": 4})["code_runs"]
    assert tiny_checks({**good, "code_errors": 0, "code_calls": 0})["code_runs"]
    assert not tiny_checks({**good, "sample_errors": 1})["no_sample_errors"]


def test_throughput_report_spans_the_actors_runs():
    runs = [{"requests": 10, "tokens": 3000, "code_calls": 1, "started": 100.0, "ended": 101.5},
            {"requests": 10, "tokens": 1000, "code_calls": 0, "started": 100.5, "ended": 102.0}]
    assert combine_alone(runs) == {"requests": 20, "tokens": 4000, "code_calls": 1, "wall_s": 2.0}
    work = {"problems": 2, "samples_per_problem": 10, "tokens_per_sample": 200, "in_flight_per_engine": 4}
    report = throughput_report(work, runs, solver_tokens=3600, solver_wall=2.4, solver_samples=20)
    assert report == {
        "work": work,
        "engine_alone": {"tokens": 4000, "wall_s": 2.0, "tokens_per_s": 2000},
        "solver": {"tokens": 3600, "wall_s": 2.4, "tokens_per_s": 1500, "samples": 20},
        "solver_over_engine": 0.75,
    }


def test_latencies_use_the_one_percentile_definition():
    values = [0.001 * i for i in range(1, 11)] + [0.0123456]
    assert latency_ms(values) == percentiles_ms(values) == latency_summary_ms(values, digits=2)
    assert latency_ms(values) == {"n": 11, "p50": 6.0, "p95": 12.35, "max": 12.35}
    assert isinstance(latency_ms(values)["n"], int)
    assert latency_ms([]) == {}


def test_settings_follow_the_flags_and_make_the_layouts_config():
    ns = argparse.Namespace(layouts="1x2", out="x", problems=3, samples=4, tokens=32, depth=8, settle_s=1.5,
                            tiny=False, tiny_examples=1, tiny_heldout=2, tiny_samples=4, sandbox_actors=1,
                            dry_run=False, make_model=None)
    settings = SmokeSettings.from_namespace(ns)
    assert settings == SmokeSettings(problems=3, samples=4, tokens=32, depth=8, settle_s=1.5, tiny_examples=1,
                                     tiny_heldout=2, tiny_samples=4, sandbox_actors=1, dry_run=False)
    cfg = gpu_probes.solver_config(settings, "/models/m", 1, 2, budget={"max_tokens": 99})
    assert cfg.engine.backend == "vllm" and cfg.engine.num_actors == 1 and cfg.engine.num_gpus == 2
    assert cfg.engine.options["forced_length"] is True and cfg.engine.options["max_num_seqs"] == 8
    assert cfg.engine.env_vars == gpu_probes.NO_MULTICAST
    assert cfg.budget.max_tokens == 99
    dry = gpu_probes.solver_config(SmokeSettings(dry_run=True), "ignored", 2, 1)
    assert dry.engine.backend == "hf" and dry.engine.num_gpus == 0 and dry.engine.options["device"] == "cpu"
    texts = problem_texts(5, "1x1")
    assert len(set(texts)) == 5 and all(t.startswith("Problem 1x1-") for t in texts)


def test_the_settings_defaults_are_the_jobs_flags_defaults():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "jobs" / "gpu_smoke.py"
    spec = importlib.util.spec_from_file_location("gpu_smoke_job", path)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert SmokeSettings.from_namespace(job.parser().parse_args([])) == SmokeSettings()
    args = job.parser().parse_args(["--dry-run", "--settle-s", "0.5", "--tiny-samples", "2"])
    assert SmokeSettings.from_namespace(args) == SmokeSettings(dry_run=True, settle_s=0.5, tiny_samples=2)


def test_the_tiny_problems_come_from_the_examples():
    problems = gpu_probes.tiny_problems(SmokeSettings(tiny_examples=2, tiny_heldout=3))
    assert len(problems) == 5 and all(p.answer for p in problems)


def test_importing_the_probes_needs_no_gpu_stack():
    code = ("import sys, raysolve.bench.gpu_probes; "
            "print(sorted(m for m in ('vllm', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------- probes on the scripted engine


def seeded_script(text, request):
    return f"seed {request.seed}: " + "x" * 20


class SchedulerEngine(ScriptedEngine):
    """The scripted engine with a vLLM-like scheduler report (running requests, KV-cache share)."""

    async def cache_stats(self, fresh: bool = False) -> dict:
        return {"running": len(self._active), "kv_cache_usage": len(self._active) / 64}


def test_seeds_check_and_engine_cache():
    engine = SchedulerEngine(ScriptedEngineConfig(script=seeded_script, tokens_per_s=1e6))
    report = asyncio.run(gpu_probes.seeds_check(engine, CharCodec(), PromptFormat()))
    assert report["samples"] == 8 and report["distinct"] == 8
    assert report["same_seed_same_tokens_in_one_batch"] is True
    assert asyncio.run(gpu_probes.engine_cache(engine, None, None)) == {"running": 0, "kv_cache_usage": 0.0}
    plain = ScriptedEngine(ScriptedEngineConfig())
    plain.cache_stats = lambda: asyncio.sleep(0, {"running": 0})  # a backend without fresh reports
    assert asyncio.run(gpu_probes.engine_cache(plain, None, None)) == {"running": 0}


def test_abort_check_reports_every_abort():
    # slow enough that no request can end on its own during the check (a 30 s horizon)
    engine = SchedulerEngine(ScriptedEngineConfig(script=lambda text, r: "." * 5000, tokens_per_s=100,
                                                  tokens_per_delta=4))
    report = asyncio.run(gpu_probes.abort_check(engine, CharCodec(), PromptFormat(), n=8, n_abort=4))
    assert report["requests"] == 8 and report["aborted_one_by_one"] == 4
    assert report["abort_to_scheduler_drop_ms"]["n"] == 4 and report["abort_to_stream_end_ms"]["n"] == 4
    assert report["all_ended_cancelled"] and report["running_after_all"] == 0
    assert report["kv_cache_usage_before"] == 8 / 64 and report["kv_cache_usage_after_half"] == 4 / 64
    assert report["kv_cache_usage_after_all"] == 0.0


def test_engine_alone_does_the_samples_segments_and_warm_up_uses_it():
    codec, fmt = CharCodec(), PromptFormat()
    engine = ScriptedEngine(ScriptedEngineConfig(script=directive_script, tokens_per_s=1e6, tokens_per_delta=64))
    texts = [directive_problem(["7"], lengths=(30,), code=True), directive_problem(["8"], lengths=(10,), code=False)]
    report = asyncio.run(engine_alone_on_actor(engine, codec, fmt, texts, 6, 10_000, 4, 0))
    assert report["requests"] == 6
    assert report["code_calls"] == 3  # the requests on the first text call code once, then continue
    assert engine.counters["requests_started"] == 9  # 6 first segments + 3 continuations
    assert report["tokens"] == engine.counters["tokens_generated"]
    assert report["ended"] >= report["started"]
    assert asyncio.run(gpu_probes.warm_up(ScriptedEngine(ScriptedEngineConfig(script=seeded_script,
                                                                              tokens_per_s=1e6)), codec, fmt)) >= 0


@pytest.mark.parametrize("name", ["seeds_check", "abort_check", "warm_up", "engine_cache"])
def test_the_probes_are_importable_by_reference(name):
    """Ray sends them to the engine actors by module and name, not by value."""
    fn = getattr(gpu_probes, name)
    assert fn.__module__ == "raysolve.bench.gpu_probes" and inspect.iscoroutinefunction(fn)

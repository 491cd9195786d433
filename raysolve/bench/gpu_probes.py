"""The GPU smoke test's probes and verdicts (``jobs/gpu_smoke.py``): placement, seeds, abort,
throughput (engine alone vs solver), cancel on settle, and the trained tiny model end to end.

- engine probes, run on an engine actor through ``EngineActor.run_on_engine`` (``seeds_check``,
  ``abort_check``, ``warm_up``, ``engine_cache``);
- one layout (``run_layout``: ``A`` engine actors holding ``T`` GPUs each) and the tiny model
  (``run_tiny``), each returning a JSON-able report with its ``checks``;
- the verdicts on those reports (``checks``, ``placement_ok``, ``tiny_checks``): pure, so they
  are tested on canned reports;
- the random Qwen2.5-1.5B-shaped model the speed runs use (``make_random_model``) and
  ``machine`` (host, GPUs, library versions).

The engine-alone side of the throughput run is ``raysolve.bench.harness.engine_alone_on_actor``
(the project's one baseline). Percentiles: ``raysolve.core.timing``. Nothing here imports torch,
transformers or vLLM before it is called.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from raysolve.bench.harness import combine_alone, engine_alone_on_actor
from raysolve.core.timing import latency_summary_ms, percentile

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
"""NVLink multicast off for every process (see the GPU notes: it can take a host's GPUs out of service)."""

QWEN25_15B = dict(
    hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
    num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1_000_000.0,
    rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu", sliding_window=None,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
"""The repository's ``examples/`` (the tiny run's problems)."""


@dataclass(frozen=True)
class SmokeSettings:
    """What ``jobs/gpu_smoke.py``'s flags set (same names and defaults)."""

    problems: int = 64
    """problems per engine actor in the throughput run"""
    samples: int = 16
    tokens: int = 512
    """forced tokens per sample"""
    depth: int = 256
    """in-flight samples per engine (vLLM max_num_seqs)"""
    settle_s: float = 3.0
    """time limit that settles the cancel run"""
    tiny_examples: int = 20
    tiny_heldout: int = 100
    tiny_samples: int = 16
    sandbox_actors: int = 4
    dry_run: bool = False
    """CPU check: the hf backend, no GPUs"""

    @classmethod
    def from_namespace(cls, ns: Any) -> "SmokeSettings":
        """From parsed flags (attributes with the fields' names; others ignored)."""
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)})


def latency_ms(values_s: list[float]) -> dict[str, float]:
    """The smoke reports' latency summary: ``n``, ``p50``, ``p95``, ``max`` in ms to 0.01 ms."""
    return latency_summary_ms(values_s, digits=2)


# ---------------------------------------------------------------------------- the random model


def make_random_model(path: Path) -> None:
    """A Qwen2.5-1.5B-shaped Qwen2 model with random bf16 weights, and the project's tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from raysolve.tiny import MODEL_DIR

    config = Qwen2Config(**QWEN25_15B, bos_token_id=None, eos_token_id=2, pad_token_id=0, dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = 2
    model.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(MODEL_DIR / name, path / name)


def ensure_model(path: Path) -> Path:
    """``path`` holding the random model, made first if it is missing."""
    if not (path / "config.json").exists():
        started = time.time()
        # In a child process, so the driver never holds a CUDA context on a GPU the actors need.
        subprocess.run([sys.executable, "-c", "import pathlib, sys; from raysolve.bench.gpu_probes import "
                        "make_random_model; make_random_model(pathlib.Path(sys.argv[1]))", str(path)], check=True)
        print(f"created {path} in {time.time() - started:.0f} s", flush=True)
    return path


# ---------------------------------------------------------------------------- run inside the engine actor


def _requests(codec: Any, fmt: Any, texts: list[str], samples: int, max_tokens: int, tag: str) -> list[Any]:
    from raysolve.core.protocols import GenerationRequest

    out = []
    for p, text in enumerate(texts):
        prompt = tuple(fmt.prompt_ids(codec, text, 6))  # as the solver renders it (6 code calls)
        for s in range(samples):
            out.append(GenerationRequest(f"{tag}-{p}-{s}", prompt, max_tokens, seed=1000 * p + s,
                                         temperature=0.7, top_p=0.95,
                                         stop_token_ids=(codec.code_end_token_id,)))
    return out


async def seeds_check(engine: Any, codec: Any, fmt: Any) -> dict:
    """8 seeds of one prompt must give 8 different samples; the same seed twice is reported."""
    reqs = _requests(codec, fmt, ["Seed check: what is 2 + 3?"], 8, 48, "seed")
    twin = _requests(codec, fmt, ["Seed check: what is 2 + 3?"], 1, 48, "seed-twin")[0]

    async def run(r: Any) -> list[int]:
        return [t for d in [d async for d in engine.generate(r)] for t in d.token_ids]

    outs = await asyncio.gather(*(run(r) for r in [*reqs, twin]))
    distinct = len({tuple(o) for o in outs[:8]})
    return {"samples": 8, "distinct": distinct, "tokens_each": [len(o) for o in outs[:8]],
            "same_seed_same_tokens_in_one_batch": outs[0] == outs[8]}


async def abort_check(engine: Any, codec: Any, fmt: Any, n: int = 64, n_abort: int = 32) -> dict:
    """Abort requests one at a time; time until the scheduler stops running each one (vLLM's
    scheduler report: ``cache_stats`` with ``running`` and ``kv_cache_usage``)."""
    reqs = _requests(codec, fmt, ["Abort check: count to a very large number."], n, 3000, "abort")
    tasks = [asyncio.ensure_future(_consume(engine, r)) for r in reqs]

    async def wait_for(pred: Any, timeout: float = 60.0) -> dict:
        deadline = time.perf_counter() + timeout
        while True:
            stats = await engine.cache_stats()
            if pred(stats) or time.perf_counter() > deadline:
                return stats
            await asyncio.sleep(0.0002)

    await wait_for(lambda s: s["running"] >= n)
    await asyncio.sleep(0.5)  # let every sequence grow some KV blocks
    before = await engine.cache_stats()
    latencies, stream_ends = [], []
    for i in range(n_abort):
        t0 = time.perf_counter()
        await engine.cancel(reqs[i].request_id)
        await tasks[i]
        stream_ends.append(time.perf_counter() - t0)
        stats = await wait_for(lambda s: s["running"] <= n - i - 1, timeout=5.0)
        latencies.append(time.perf_counter() - t0 if stats["running"] <= n - i - 1 else float("inf"))
    half = await engine.cache_stats()
    for r in reqs[n_abort:]:
        await engine.cancel(r.request_id)
    results = await asyncio.gather(*tasks)
    await asyncio.sleep(0.05)
    idle = await engine.cache_stats(fresh=True)
    return {
        "requests": n, "aborted_one_by_one": n_abort,
        "abort_to_scheduler_drop_ms": latency_ms(latencies),
        "abort_to_stream_end_ms": latency_ms(stream_ends),
        "kv_cache_usage_before": before["kv_cache_usage"], "kv_cache_usage_after_half": half["kv_cache_usage"],
        "kv_cache_usage_after_all": idle["kv_cache_usage"], "running_after_all": idle["running"],
        "all_ended_cancelled": all(r[1] == "cancelled" for r in results),
        "tokens_before_cancel_median": percentile([r[0] for r in results], 0.5),
    }


async def warm_up(engine: Any, codec: Any, fmt: Any) -> float:
    """Seconds to run 256 short engine-alone requests (graphs, shapes) through the engine."""
    started = time.perf_counter()
    await engine_alone_on_actor(engine, codec, fmt, [f"Warm-up {i}" for i in range(16)], 256, 64, 256, 0)
    return time.perf_counter() - started


async def engine_cache(engine: Any, codec: Any, fmt: Any) -> dict:
    try:
        return await engine.cache_stats(fresh=True)
    except TypeError:  # a backend without fresh reports (hf in --dry-run)
        return await engine.cache_stats()


async def _consume(engine: Any, request: Any) -> tuple[int, str]:
    n, last = 0, None
    async for d in engine.generate(request):
        n += len(d.token_ids)
        last = d.finish_reason
    return n, last


# ---------------------------------------------------------------------------- one layout


def problem_texts(count: int, tag: str) -> list[str]:
    return [f"Problem {tag}-{i}: find the number of positive divisors of {1000 + 37 * i} "
            f"that are greater than {i % 17}, and give the remainder modulo {7 + i % 5}." for i in range(count)]


def solver_config(settings: SmokeSettings, model: str, actors: int, gpus: int, **over: Any) -> Any:
    """The layout's solver: ``actors`` vLLM actors with ``gpus`` GPUs each and forced-length
    samples (``--dry-run``: hf on CPU); ``over`` sets attributes per section afterwards."""
    from raysolve.runtime.config import SolverConfig

    engine_options = {"model": model, "forced_length": True, "max_num_seqs": settings.depth,
                      "gpu_memory_utilization": 0.85, "max_model_len": 4096}
    if settings.dry_run:
        engine_options = {"model": "random-tiny", "device": "cpu", "max_concurrency": settings.depth}
    cfg = SolverConfig.model_validate({
        "engine": {"backend": "hf" if settings.dry_run else "vllm", "num_actors": actors,
                   "num_gpus": 0 if settings.dry_run else gpus, "num_cpus": 1, "queue_depth": settings.depth,
                   "env_vars": NO_MULTICAST, "options": engine_options},
        "budget": {"max_tokens": settings.tokens},
        "scheduling": {"mode": "pool", "num_samples": settings.samples, "pool_size": settings.samples,
                       "stop_policy": "full"},
        "num_sandbox_actors": 2,
    })
    for section, values in over.items():
        for k, v in values.items():
            setattr(getattr(cfg, section), k, v)
    return cfg


def throughput_report(work: dict[str, int], alone_runs: list[dict[str, Any]], solver_tokens: int,
                      solver_wall: float, solver_samples: int) -> dict[str, Any]:
    """The throughput section: the engine alone (its actors' runs combined) vs the solver, same work."""
    alone = combine_alone(alone_runs)
    out = {
        "work": work,
        "engine_alone": {"tokens": alone["tokens"], "wall_s": round(alone["wall_s"], 2),
                         "tokens_per_s": round(alone["tokens"] / alone["wall_s"])},
        "solver": {"tokens": solver_tokens, "wall_s": round(solver_wall, 2),
                   "tokens_per_s": round(solver_tokens / solver_wall), "samples": solver_samples},
    }
    out["solver_over_engine"] = round(out["solver"]["tokens_per_s"] / out["engine_alone"]["tokens_per_s"], 3)
    return out


def run_layout(settings: SmokeSettings, model: str, actors: int, gpus: int) -> dict:
    """Placement, warm-up, seeds, abort (vLLM only), throughput and cancel on settle on one layout."""
    import ray

    from raysolve.core.scheduling import SolveOptions
    from raysolve.io.problems import Problem
    from raysolve.runtime.solver import Solver

    layout = f"{actors}x{gpus}"
    report: dict[str, Any] = {"layout": layout, "actors": actors, "gpus_per_actor": gpus}
    t0 = time.perf_counter()
    with Solver(solver_config(settings, model, actors, gpus)) as solver:
        report["startup_s"] = round(time.perf_counter() - t0, 1)
        engines = solver.engines
        report["placement"] = ray.get([e.placement.remote() for e in engines])
        report["placement_ok"] = placement_ok(report["placement"], 0 if settings.dry_run else gpus)
        report["warmup_s"] = ray.get([e.run_on_engine.remote(warm_up) for e in engines])
        report["seeds"] = ray.get(engines[0].run_on_engine.remote(seeds_check))
        if not settings.dry_run:  # the scheduler report it reads is vLLM's
            report["abort"] = ray.get(engines[0].run_on_engine.remote(abort_check))

        # Throughput: the same work, engine alone (each actor its share of the problems, every
        # problem's samples) and through the solver.
        texts = problem_texts(settings.problems * actors, layout)
        share = [texts[i::actors] for i in range(actors)]
        alone = ray.get([e.run_on_engine.remote(engine_alone_on_actor, share[i], len(share[i]) * settings.samples,
                                                settings.tokens, settings.depth, 10**7 * i)
                         for i, e in enumerate(engines)])
        problems = [Problem(f"{layout}-{i}", t) for i, t in enumerate(texts)]
        started = time.perf_counter()
        results = list(solver.solve_iter(problems))
        solver_wall = time.perf_counter() - started
        report["throughput"] = throughput_report(
            {"problems": len(texts), "samples_per_problem": settings.samples, "tokens_per_sample": settings.tokens,
             "in_flight_per_engine": settings.depth},
            alone, sum(r.generated_tokens for r in results), solver_wall, sum(r.samples_finished for r in results))
        report["prefix_cache"] = ray.get([e.run_on_engine.remote(engine_cache) for e in engines])

        # Cancel on settle: every sample is mid-generation when the time rule settles the vote.
        before = [len(ray.get(e.cancel_latencies.remote())) for e in engines]
        cancel_problems = [Problem(f"{layout}-c{i}", t) for i, t in
                           enumerate(problem_texts(settings.depth // settings.samples * actors, f"{layout}c"))]
        opts = SolveOptions(mode="launch-all", num_samples=settings.samples, stop_policy=f"time:{settings.settle_s}",
                            max_tokens=3500)
        started = time.perf_counter()
        settled = list(solver.solve_iter(cancel_problems, opts))
        wall = time.perf_counter() - started
        time.sleep(0.2)
        idle = ray.get([e.run_on_engine.remote(engine_cache) for e in engines])
        lat = [x for e, b in zip(engines, before) for x in ray.get(e.cancel_latencies.remote())[b:]]
        samples = [s for r in settled for s in r.samples]
        report["cancel_on_settle"] = {
            "problems": len(settled), "samples": len(samples),
            "settle_reasons": sorted({r.settle_reason for r in settled}),
            "cancelled": sum(s.cancelled for s in samples),
            "tokens_per_cancelled_sample_median": percentile([s.generated_tokens for s in samples], 0.5),
            "cancel_to_stopped_ms": latency_ms(lat),
            "engines_running_after": [s.get("running") for s in idle],
            "wall_s": round(wall, 2),
        }
        report["engine_stats"] = solver.stats()["engines"]
    report["total_s"] = round(time.perf_counter() - t0, 1)
    report["checks"] = checks(report)
    return report


def checks(report: dict) -> dict[str, bool]:
    """Pass/fail of what the smoke test exists to show (the numbers are reported beside them)."""
    found = {
        "placement": bool(report.get("placement_ok")),
        "seeds_differ": report["seeds"]["distinct"] == report["seeds"]["samples"],
        "solver_did_all_work": report["throughput"]["solver"]["samples"]
        == report["throughput"]["work"]["problems"] * report["throughput"]["work"]["samples_per_problem"],
        "settle_cancels_every_running_sibling": report["cancel_on_settle"]["cancelled"]
        == report["cancel_on_settle"]["samples"]
        and all(r in (0, None) for r in report["cancel_on_settle"]["engines_running_after"]),
    }
    abort = report.get("abort")
    if abort:
        found["abort_stops_and_frees"] = (
            abort["all_ended_cancelled"] and abort["running_after_all"] == 0
            and abort["kv_cache_usage_after_half"] < abort["kv_cache_usage_before"]
            and abort["abort_to_scheduler_drop_ms"]["max"] < 1000
        )
    return found


def placement_ok(reports: list[dict], gpus: int) -> bool:
    """Each actor holds ``gpus`` GPUs, no GPU is shared, and every child process sees only its actor's GPUs."""
    seen: set[tuple[str, str]] = set()
    for r in reports:
        ids = r["ray_gpu_ids"]
        visible = [d for d in (r["cuda_visible_devices"] or "").split(",") if d]
        if len(ids) != gpus or sorted(visible) != sorted(ids):
            return False
        for g in ids:
            if (r["node"], g) in seen:
                return False
            seen.add((r["node"], g))
        for child in r["children"]:
            if child["cuda_visible_devices"] not in (None, r["cuda_visible_devices"]):
                return False
    return True


# ---------------------------------------------------------------------------- the tiny model end to end


def tiny_problems(settings: SmokeSettings, examples: Path = EXAMPLES) -> list[Any]:
    """The first ``tiny_examples`` of ``problems.jsonl`` and ``tiny_heldout`` of ``tiny-heldout.jsonl``."""
    from raysolve.io.output import read_rows
    from raysolve.io.problems import Problem

    rows = list(read_rows(examples / "problems.jsonl"))[: settings.tiny_examples]
    rows += list(read_rows(examples / "tiny-heldout.jsonl"))[: settings.tiny_heldout]
    return [Problem(str(r["id"]), r["problem"], str(r["answer"])) for r in rows]


def run_tiny(settings: SmokeSettings, examples: Path = EXAMPLES) -> dict:
    """The trained tiny model through vLLM (``--dry-run``: hf on CPU) on the example problems:
    real tool calls, sandbox, votes and early stopping end to end."""
    import ray

    from raysolve.runtime.config import SolverConfig
    from raysolve.runtime.solver import Solver

    problems = tiny_problems(settings, examples)
    options = {"model": "tiny", "max_num_seqs": 256, "gpu_memory_utilization": 0.3, "max_model_len": 4096}
    if settings.dry_run:
        options = {"model": "tiny", "device": "cpu"}
    cfg = SolverConfig.model_validate({
        "engine": {"backend": "hf" if settings.dry_run else "vllm", "num_actors": 1,
                   "num_gpus": 0 if settings.dry_run else 1, "num_cpus": 1, "env_vars": NO_MULTICAST,
                   "options": options},
        "scheduling": {"num_samples": settings.tiny_samples, "pool_size": 8},
        "num_sandbox_actors": settings.sandbox_actors,
        "keep_text": True,
    })
    t0 = time.perf_counter()
    with Solver(cfg) as solver:
        startup = time.perf_counter() - t0
        started = time.perf_counter()
        results = []
        for result in solver.solve_iter(problems):
            results.append(result)
            if len(results) % 10 == 0:
                print(f"tiny: {len(results)}/{len(problems)} problems, {sum(bool(r.correct) for r in results)} correct, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
        wall = time.perf_counter() - started
        stats = solver.stats()["engines"]
        lat = ray.get(solver.engines[0].cancel_latencies.remote())
    report = tiny_report(results, startup, wall, lat, stats)
    report["checks"] = tiny_checks(report)
    return report


def tiny_report(results: list[Any], startup: float, wall: float, cancel_latencies_s: list[float],
                engine_stats: Any) -> dict[str, Any]:
    """The tiny run's report from its problem results (``ProblemResult``s with their samples)."""
    samples = [s for r in results for s in r.samples]
    correct = sum(bool(r.correct) for r in results)
    return {
        "model": "tiny (raysolve/tiny/model, trained)", "problems": len(results),
        "correct": correct, "accuracy": round(correct / len(results), 4),
        "samples_started": sum(r.samples_started for r in results),
        "samples_cancelled": sum(r.samples_cancelled for r in results),
        "code_calls": sum(r.code_calls for r in results), "code_errors": sum(s.code_errors for s in samples),
        "generated_tokens": sum(r.generated_tokens for r in results),
        "settle_reasons": {k: sum(r.settle_reason == k for r in results) for k in {r.settle_reason for r in results}},
        "sample_errors": sum(s.error is not None for s in samples),
        "sample_error_kinds": sorted({(s.error or "")[:120] for s in samples if s.error})[:5],
        "startup_s": round(startup, 1), "wall_s": round(wall, 2),
        "generated_tokens_per_s": round(sum(r.generated_tokens for r in results) / wall),
        "cancel_to_stopped_ms": latency_ms(cancel_latencies_s), "engine_stats": engine_stats,
        "example": next((s.text for r in results for s in r.samples if s.code_calls and s.text and r.correct), None),
        "example_wrong": next((s.text for r in results for s in r.samples if s.text and not r.correct), None),
    }


def tiny_checks(report: dict) -> dict[str, bool]:
    """Pass/fail of the tiny run."""
    return {
        # the held-out maj@16 on CPU is 94.4%: a backend that computes the model right lands near it
        "accuracy_near_cpu": report["accuracy"] >= 0.8,
        "code_runs": report["code_errors"] <= 0.3 * max(1, report["code_calls"]),
        "no_sample_errors": report["sample_errors"] == 0,
    }


# ---------------------------------------------------------------------------- the machine


def machine() -> dict:
    """Host, Python, CPUs, ``nvidia-smi``'s GPUs (none without it) and the versions of vLLM, Ray,
    torch and transformers (None where not installed)."""
    info: dict[str, Any] = {"host": platform.node(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
        info["gpus"] = out
    except (OSError, subprocess.SubprocessError):
        info["gpus"] = []
    for mod in ("vllm", "ray", "torch", "transformers"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    return info

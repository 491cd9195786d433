"""GPU smoke test of the ``vllm`` backend: placement, seeds, abort, throughput and cancel-on-settle.

On a GPU machine with vLLM and Ray (README: "Running on GPUs with vLLM"):

    python jobs/gpu_smoke.py --layouts 1x1,2x1,1x2 --out results/gpu-smoke

A layout ``AxT`` is A engine actors holding T GPUs each (T = tensor-parallel size):
``1x1`` one actor on one GPU, ``2x1`` one actor per GPU on two GPUs, ``1x2`` one
actor on a GPU pair. For each layout, with a Qwen2.5-1.5B-shaped model that this
script creates with RANDOM weights (no download possible; speed is what it is
for; its tokenizer is the project's tiny one, so generated text is meaningless):

1. placement: the GPUs Ray gave each actor, and the ``CUDA_VISIBLE_DEVICES`` of
   every process the engine started (vLLM's workers must use exactly those);
2. seeds: 8 samples of one prompt with 8 seeds must all differ;
3. abort: 64 long requests, 32 of them aborted one at a time: the time until the
   scheduler no longer runs each one, and the KV-cache usage before and after;
4. throughput: the engine alone and the full solver on the same work
   (P problems × S samples × L forced tokens, same prompts, same in-flight depth);
5. cancel on settle: launch-all with a ``time:`` stop policy, so the vote settles
   while every sample is mid-generation: all must come back cancelled, the
   engines must be idle right after, and the cancel-to-stopped latency is reported.

``--tiny`` then runs the project's trained tiny model through vLLM on the example
problems: real tool calls, sandbox, votes and early stopping end to end.

Writes ``<out>/<layout>.json`` per layout, ``<out>/tiny.json`` and ``<out>/summary.json``.
``--dry-run`` runs the same flow on CPU with the ``hf`` backend (no GPUs, no vLLM),
to check the script itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
"""NVLink multicast off for every process (see the GPU notes: it can take a host's GPUs out of service)."""

QWEN25_15B = dict(
    hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
    num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1_000_000.0,
    rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu", sliding_window=None,
)


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
    if not (path / "config.json").exists():
        started = time.time()
        # In a child process, so the driver never holds a CUDA context on a GPU the actors need.
        subprocess.run([sys.executable, __file__, "--make-model", str(path)], check=True)
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


async def engine_alone(engine: Any, codec: Any, fmt: Any, texts: list[str], samples: int,
                       max_tokens: int, concurrency: int, tag: str) -> dict:
    """The same prompts, samples and tokens as the solver's run, straight into the engine."""
    sem = asyncio.Semaphore(concurrency)

    async def one(request: Any) -> int:
        async with sem:
            return sum([len(d.token_ids) async for d in engine.generate(request)])

    requests = _requests(codec, fmt, texts, samples, max_tokens, tag)
    started = time.perf_counter()
    counts = await asyncio.gather(*(one(r) for r in requests))
    wall = time.perf_counter() - started
    return {"requests": len(counts), "tokens": sum(counts), "wall_s": wall,
            "started": started, "ended": started + wall}


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
    """Abort requests one at a time; time until the scheduler stops running each one."""
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
        "abort_to_scheduler_drop_ms": _pcts(latencies),
        "abort_to_stream_end_ms": _pcts(stream_ends),
        "kv_cache_usage_before": before["kv_cache_usage"], "kv_cache_usage_after_half": half["kv_cache_usage"],
        "kv_cache_usage_after_all": idle["kv_cache_usage"], "running_after_all": idle["running"],
        "all_ended_cancelled": all(r[1] == "cancelled" for r in results),
        "tokens_before_cancel_median": sorted(r[0] for r in results)[n // 2],
    }


async def warm_up(engine: Any, codec: Any, fmt: Any) -> float:
    started = time.perf_counter()
    await engine_alone(engine, codec, fmt, [f"Warm-up {i}" for i in range(16)], 16, 64, 256, "warm")
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


def _pcts(values: list[float]) -> dict:
    from raysolve.core.timing import latency_summary_ms

    return {k: round(v, 2) if k != "n" else v for k, v in latency_summary_ms(values).items()}


# ---------------------------------------------------------------------------- one layout


def problem_texts(count: int, tag: str) -> list[str]:
    return [f"Problem {tag}-{i}: find the number of positive divisors of {1000 + 37 * i} "
            f"that are greater than {i % 17}, and give the remainder modulo {7 + i % 5}." for i in range(count)]


def solver_config(args: argparse.Namespace, model: str, actors: int, gpus: int, **over: Any) -> Any:
    from raysolve.runtime.config import SolverConfig

    engine_options = {"model": model, "forced_length": True, "max_num_seqs": args.depth,
                      "gpu_memory_utilization": 0.85, "max_model_len": 4096}
    if args.dry_run:
        engine_options = {"model": "random-tiny", "device": "cpu", "max_concurrency": args.depth}
    cfg = SolverConfig.model_validate({
        "engine": {"backend": "hf" if args.dry_run else "vllm", "num_actors": actors,
                   "num_gpus": 0 if args.dry_run else gpus, "num_cpus": 1, "queue_depth": args.depth,
                   "env_vars": NO_MULTICAST, "options": engine_options},
        "budget": {"max_tokens": args.tokens},
        "scheduling": {"mode": "pool", "num_samples": args.samples, "pool_size": args.samples,
                       "stop_policy": "full"},
        "num_sandbox_actors": 2,
    })
    for section, values in over.items():
        for k, v in values.items():
            setattr(getattr(cfg, section), k, v)
    return cfg


def run_layout(args: argparse.Namespace, model: str, actors: int, gpus: int) -> dict:
    import ray

    from raysolve.io.problems import Problem
    from raysolve.runtime.solver import Solver

    layout = f"{actors}x{gpus}"
    report: dict[str, Any] = {"layout": layout, "actors": actors, "gpus_per_actor": gpus}
    t0 = time.perf_counter()
    with Solver(solver_config(args, model, actors, gpus)) as solver:
        report["startup_s"] = round(time.perf_counter() - t0, 1)
        engines = solver.engines
        report["placement"] = ray.get([e.placement.remote() for e in engines])
        report["placement_ok"] = _placement_ok(report["placement"], 0 if args.dry_run else gpus)
        report["warmup_s"] = ray.get([e.run_on_engine.remote(warm_up) for e in engines])
        report["seeds"] = ray.get(engines[0].run_on_engine.remote(seeds_check))
        if not args.dry_run:  # the scheduler report it reads is vLLM's
            report["abort"] = ray.get(engines[0].run_on_engine.remote(abort_check))

        # Throughput: the same work, engine alone and through the solver.
        texts = problem_texts(args.problems * actors, layout)
        share = [texts[i::actors] for i in range(actors)]
        alone = ray.get([e.run_on_engine.remote(engine_alone, share[i], args.samples, args.tokens,
                                                args.depth, f"alone{i}") for i, e in enumerate(engines)])
        alone_wall = max(a["ended"] for a in alone) - min(a["started"] for a in alone)
        alone_tokens = sum(a["tokens"] for a in alone)
        problems = [Problem(f"{layout}-{i}", t) for i, t in enumerate(texts)]
        started = time.perf_counter()
        results = list(solver.solve_iter(problems))
        solver_wall = time.perf_counter() - started
        solver_tokens = sum(r.generated_tokens for r in results)
        report["throughput"] = {
            "work": {"problems": len(texts), "samples_per_problem": args.samples, "tokens_per_sample": args.tokens,
                     "in_flight_per_engine": args.depth},
            "engine_alone": {"tokens": alone_tokens, "wall_s": round(alone_wall, 2),
                             "tokens_per_s": round(alone_tokens / alone_wall)},
            "solver": {"tokens": solver_tokens, "wall_s": round(solver_wall, 2),
                       "tokens_per_s": round(solver_tokens / solver_wall),
                       "samples": sum(r.samples_finished for r in results)},
        }
        report["throughput"]["solver_over_engine"] = round(
            report["throughput"]["solver"]["tokens_per_s"] / report["throughput"]["engine_alone"]["tokens_per_s"], 3)
        report["prefix_cache"] = ray.get([e.run_on_engine.remote(engine_cache) for e in engines])

        # Cancel on settle: every sample is mid-generation when the time rule settles the vote.
        from raysolve.core.scheduling import SolveOptions

        before = [len(ray.get(e.cancel_latencies.remote())) for e in engines]
        cancel_problems = [Problem(f"{layout}-c{i}", t)
                           for i, t in enumerate(problem_texts(args.depth // args.samples * actors, f"{layout}c"))]
        opts = SolveOptions(mode="launch-all", num_samples=args.samples, stop_policy=f"time:{args.settle_s}",
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
            "tokens_per_cancelled_sample_median": sorted(s.generated_tokens for s in samples)[len(samples) // 2],
            "cancel_to_stopped_ms": _pcts(lat),
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


def _placement_ok(reports: list[dict], gpus: int) -> bool:
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


def run_tiny(args: argparse.Namespace) -> dict:
    from raysolve.runtime.config import SolverConfig
    from raysolve.io.output import read_rows
    from raysolve.io.problems import Problem
    from raysolve.runtime.solver import Solver

    import ray

    rows = list(read_rows(Path(__file__).resolve().parent.parent / "examples/problems.jsonl"))[: args.tiny_examples]
    rows += list(read_rows(Path(__file__).resolve().parent.parent / "examples/tiny-heldout.jsonl"))[: args.tiny_heldout]
    problems = [Problem(str(r["id"]), r["problem"], str(r["answer"])) for r in rows]
    options = {"model": "tiny", "max_num_seqs": 256, "gpu_memory_utilization": 0.3, "max_model_len": 4096}
    if args.dry_run:
        options = {"model": "tiny", "device": "cpu"}
    cfg = SolverConfig.model_validate({
        "engine": {"backend": "hf" if args.dry_run else "vllm", "num_actors": 1, "num_gpus": 0 if args.dry_run else 1,
                   "num_cpus": 1, "env_vars": NO_MULTICAST, "options": options},
        "scheduling": {"num_samples": args.tiny_samples, "pool_size": 8},
        "num_sandbox_actors": args.sandbox_actors,
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
    samples = [s for r in results for s in r.samples]
    report = {
        "model": "tiny (raysolve/tiny/model, trained)", "problems": len(results),
        "correct": sum(bool(r.correct) for r in results), "accuracy": round(sum(bool(r.correct) for r in results) / len(results), 4),
        "samples_started": sum(r.samples_started for r in results), "samples_cancelled": sum(r.samples_cancelled for r in results),
        "code_calls": sum(r.code_calls for r in results), "code_errors": sum(s.code_errors for s in samples),
        "generated_tokens": sum(r.generated_tokens for r in results),
        "settle_reasons": {k: sum(r.settle_reason == k for r in results) for k in {r.settle_reason for r in results}},
        "sample_errors": sum(s.error is not None for s in samples),
        "sample_error_kinds": sorted({(s.error or "")[:120] for s in samples if s.error})[:5],
        "startup_s": round(startup, 1), "wall_s": round(wall, 2),
        "generated_tokens_per_s": round(sum(r.generated_tokens for r in results) / wall),
        "cancel_to_stopped_ms": _pcts(lat), "engine_stats": stats,
        "example": next((s.text for r in results for s in r.samples if s.code_calls and s.text and r.correct), None),
        "example_wrong": next((s.text for r in results for s in r.samples if s.text and not r.correct), None),
    }
    report["checks"] = {
        # the held-out maj@16 on CPU is 94.4%: a backend that computes the model right lands near it
        "accuracy_near_cpu": report["accuracy"] >= 0.8,
        "code_runs": report["code_errors"] <= 0.3 * max(1, report["code_calls"]),
        "no_sample_errors": report["sample_errors"] == 0,
    }
    return report


# ---------------------------------------------------------------------------- main


def machine() -> dict:
    info = {"host": platform.node(), "python": platform.python_version(), "cpus": os.cpu_count()}
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layouts", default="1x1", help="comma-separated AxT: A actors with T GPUs each")
    p.add_argument("--out", default="results/gpu-smoke")
    p.add_argument("--model-dir", default="/tmp/raysolve-qwen2.5-1.5b-random")
    p.add_argument("--problems", type=int, default=64, help="problems per engine actor in the throughput run")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--tokens", type=int, default=512, help="forced tokens per sample")
    p.add_argument("--depth", type=int, default=256, help="in-flight samples per engine (vLLM max_num_seqs)")
    p.add_argument("--settle-s", type=float, default=3.0, help="time limit that settles the cancel run")
    p.add_argument("--tiny", action="store_true", help="also run the trained tiny model end to end")
    p.add_argument("--tiny-examples", type=int, default=20, help="of examples/problems.jsonl")
    p.add_argument("--tiny-heldout", type=int, default=100, help="held-out problems added to the 20 examples")
    p.add_argument("--tiny-samples", type=int, default=16)
    p.add_argument("--sandbox-actors", type=int, default=4)
    p.add_argument("--dry-run", action="store_true", help="CPU check of this script: hf backend, no GPUs")
    p.add_argument("--make-model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.make_model:
        make_random_model(Path(args.make_model))
        return 0

    import ray

    os.environ.update(NO_MULTICAST)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
                               "command": "python jobs/gpu_smoke.py " + " ".join(sys.argv[1:]),
                               "model": "Qwen2.5-1.5B-shaped Qwen2, random bf16 weights (speed only), "
                                        "project tokenizer", "layouts": {}}
    model = "random-tiny" if args.dry_run else str(ensure_model(Path(args.model_dir)))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=2 * 10**9,
             log_to_driver=True, configure_logging=False)
    failed = False
    for layout in [x for x in args.layouts.split(",") if x]:
        actors, gpus = (int(v) for v in layout.split("x"))
        print(f"== layout {layout}", flush=True)
        try:
            report = run_layout(args, model, actors, gpus)
        except Exception as exc:  # keep going: the other layouts still tell something
            import traceback

            failed = True
            report = {"layout": layout, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        (out / f"{layout}.json").write_text(json.dumps(report, indent=2, default=str))
        failed = failed or not all(report.get("checks", {"ran": False}).values())
        summary["layouts"][layout] = {k: report.get(k) for k in
                                      ("checks", "throughput", "seeds", "abort", "cancel_on_settle", "error")}
        print(json.dumps(summary["layouts"][layout], indent=1, default=str), flush=True)
    if args.tiny:
        print("== tiny model end to end", flush=True)
        try:
            summary["tiny"] = run_tiny(args)
            failed = failed or not all(summary["tiny"]["checks"].values())
        except Exception as exc:
            import traceback

            failed = True
            summary["tiny"] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        (out / "tiny.json").write_text(json.dumps(summary["tiny"], indent=2, default=str))
        print(json.dumps({k: v for k, v in summary["tiny"].items() if k != "engine_stats"}, indent=1, default=str),
              flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    ray.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

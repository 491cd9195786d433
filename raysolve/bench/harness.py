"""Orchestration benchmarks: what the solver adds on top of its engines (``raysolve bench``).

- ``orchestration``: on the same engine actors, the engine alone (requests straight into
  each actor's engine, as many in flight as the coordinator keeps there, doing the same
  segments as the samples: a code call is followed by a continuation request with a
  stand-in output block, so the prompts the engine sees match) and the full solver
  (coordinator, Ray calls, tool loop, voting; early stopping off) measured in one run:
  *orchestration efficiency* = solver tokens/s ÷ engine-alone tokens/s, plus problems/s,
  samples/s, Ray calls per sample and coordinator CPU per sample. The engine-alone run is
  done before and after each solver run, and the solver is compared with their mean (with
  ``repeats``, the median of those ratios).
- ``cancel_latency``: for problems settled with siblings still running, the time from the
  settle to every sibling stopped at its engine actor (request ended, sample's task done; the
  actors' wall-clock stop times), p50/p95, per scheduling mode; and, for comparison, until the
  coordinator has the actors' replies (``acknowledged``: includes its own event-loop queueing)
  and until the siblings' records are all back (``wall_s - settle_s``).
- ``scaling``: solver throughput with 1, 2, 4, … engine actors and its ratio to linear.

Any backend works; on CPU the ``loadgen`` benchmark engine stands in for fast GPU engines.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import ray

from raysolve.core.scheduling import SolveOptions
from raysolve.runtime.config import SolverConfig
from raysolve.io.problems import Problem
from raysolve.runtime.solver import Solver
from raysolve.core.timing import latency_summary_ms


def percentiles_ms(values_s: Iterable[float]) -> dict[str, float]:
    """``n``, ``p50``, ``p95``, ``max`` in milliseconds of latencies given in seconds, to 0.01 ms
    (``raysolve.core.timing.latency_summary_ms``: the project's one percentile definition)."""
    return latency_summary_ms(values_s, digits=2)


def with_tool_calls(cfg: SolverConfig, share: float, after_tokens: int = 256) -> SolverConfig:
    """``cfg`` with its engine wrapped in the ``toolmix`` BENCHMARK wrapper: ``share`` of the samples
    call the sandbox after about ``after_tokens`` generated tokens (for models that never write code)."""
    engine = cfg.engine.model_copy(update={"backend": "toolmix", "options": {
        "inner": cfg.engine.backend, "inner_options": dict(cfg.engine.options), "share": share,
        "after_tokens": after_tokens}})
    return cfg.model_copy(update={"engine": engine})


def bench_problems(count: int, tag: str = "bench") -> list[Problem]:
    return [Problem(f"{tag}-{i}", f"Problem {tag}-{i}: how many divisors does {1000 + 37 * i} have?", "42")
            for i in range(count)]


async def engine_alone_on_actor(engine: Any, codec: Any, fmt: Any, texts: list[str], requests: int,
                                max_tokens: int, concurrency: int, seed: int) -> dict[str, Any]:
    """Runs on an engine actor (``EngineActor.run_on_engine``): ``requests`` samples over ``texts``
    (request ``i`` gets ``texts[i % len(texts)]`` and seed ``seed + i``), ``concurrency`` at a time,
    each doing the engine work the tool loop would ask for: a segment that ends on the code-end
    token is continued with a stand-in output block appended (no sandbox), within the same token
    budget. The project's one engine-alone baseline (``engine_alone``, ``gpu_probes.run_layout``).
    ``started``/``ended`` are wall-clock times, comparable between actors (``combine_alone``)."""
    import asyncio

    from raysolve.core.protocols import GenerationRequest
    from raysolve.core.records import SampleSettings

    prompts = [tuple(fmt.prompt_ids(codec, t, 6)) for t in texts]
    end = codec.code_end_token_id
    stop = (end,) if end is not None else ()
    calls_allowed = SampleSettings().max_code_calls
    sem = asyncio.Semaphore(concurrency)
    injected_before = engine.stats().get("injected_tokens", 0)

    async def one(i: int) -> tuple[int, int]:
        async with sem:
            context, used, generated, calls = list(prompts[i % len(prompts)]), 0, 0, 0
            while used < max_tokens:
                # named like a sample's segments, so a toolmix engine picks the same share
                request = GenerationRequest(f"alone-{seed}#{i}/{calls}", tuple(context), max_tokens - used, seed + i,
                                            stop_token_ids=stop)
                ids, last = [], None
                async for delta in engine.generate(request):
                    ids.extend(delta.token_ids)
                    last = delta
                context += ids
                used += len(ids)
                generated += len(ids)
                if last is None or last.finish_reason != "stop" or end is None or last.stop != end:
                    break
                calls += 1
                block = codec.encode(fmt.output_block("0" * 5, calls_allowed - calls))
                context += block
                used += len(block)
            return generated, calls

    started = time.time()
    done = await asyncio.gather(*(one(i) for i in range(requests)))
    injected = engine.stats().get("injected_tokens", 0) - injected_before  # appended, not generated
    return {"tokens": sum(g for g, _ in done) - int(injected), "code_calls": sum(c for _, c in done),
            "requests": requests, "started": started, "ended": time.time()}


def combine_alone(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Engine-alone runs of several actors (``engine_alone_on_actor``'s reports) as one: their
    requests, tokens and code calls summed, and the wall time from the first start to the last end."""
    return {"requests": sum(r["requests"] for r in runs), "tokens": sum(r["tokens"] for r in runs),
            "code_calls": sum(r["code_calls"] for r in runs),
            "wall_s": max(r["ended"] for r in runs) - min(r["started"] for r in runs)}


def engine_alone(solver: Solver, texts: list[str], requests: int, max_tokens: int, seed: int = 0) -> dict[str, Any]:
    """``requests`` samples' engine work spread over the solver's engine actors, each kept as full
    as the coordinator would keep it, with no Ray call, coordinator, tool loop or sandbox in the
    way; tokens/s over the span from the first start to the last end."""
    per = [requests // len(solver.engines) + (i < requests % len(solver.engines)) for i in range(len(solver.engines))]
    runs = ray.get([e.run_on_engine.remote(engine_alone_on_actor, texts, n, max_tokens, depth, seed + 10**7 * i)
                    for i, (e, depth, n) in enumerate(zip(solver.engines, solver.depths, per))])
    total = combine_alone(runs)
    return {"requests": requests, "tokens": total["tokens"], "code_calls": total["code_calls"],
            "wall_s": round(total["wall_s"], 3), "tokens_per_s": round(total["tokens"] / total["wall_s"], 1)}


def solver_run(solver: Solver, problems: list[Problem], options: SolveOptions,
               profile: bool = False) -> dict[str, Any]:
    """The problems through the full solver; throughput and what it cost the coordinator."""
    before = solver.stats()
    if profile:
        ray.get(solver.coordinator.profile.remote(True))
    started = time.perf_counter()
    results = list(solver.solve_iter(problems, options))
    wall = time.perf_counter() - started
    report = ray.get(solver.coordinator.profile.remote(False)) if profile else None
    after = solver.stats()
    c0, c1 = before["coordinator"], after["coordinator"]
    samples = sum(r.samples_started for r in results)
    # tokens a benchmark wrapper appended (toolmix's code calls) were not generated by the engine
    injected = sum(e1.get("injected_tokens", 0) - e0.get("injected_tokens", 0)
                   for e0, e1 in zip(before["engines"], after["engines"]))
    tokens = sum(r.generated_tokens for r in results) - int(injected)
    records = [s for r in results for s in r.samples]
    calls = (c1["run_calls"] - c0["run_calls"]) + (c1["cancel_calls"] - c0["cancel_calls"])
    engine_cpu = sum(e1["cpu_s"] - e0["cpu_s"] for e0, e1 in zip(before["engines"], after["engines"]))
    out = {
        "problems": len(results), "samples": samples, "tokens": tokens, "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 1), "problems_per_s": round(len(results) / wall, 2),
        "samples_per_s": round(samples / wall, 1),
        "ray_calls_per_sample": round(calls / max(1, samples), 3),  # coordinator -> engine actors
        "coordinator_cpu_ms_per_sample": round(1000 * (c1["cpu_s"] - c0["cpu_s"]) / max(1, samples), 3),
        "coordinator_cpu_share": round((c1["cpu_s"] - c0["cpu_s"]) / wall, 3),
        "engine_actors_cpu_ms_per_sample": round(1000 * engine_cpu / max(1, samples), 3),
        "sample_errors": sum(r.samples_failed for r in results),
        "samples_calling_code": sum(1 for s in records if s.code_calls),
        "code_calls": sum(s.code_calls for s in records),
        "tool_ms_per_call": round(1000 * sum(s.tool_s for s in records) / max(1, sum(s.code_calls for s in records)), 2),
        "tool_ms_per_sample_calling": percentiles_ms(s.tool_s for s in records if s.code_calls),
        "results": results,
    }
    if report is not None:
        out["profile"] = report
    return out


def orchestration(cfg: SolverConfig, problems: list[Problem], samples: int, pool: int,
                  max_tokens: int | None = None, profile: bool = False,
                  warm_up: Callable[[Solver], None] | None = None, repeats: int = 1) -> dict[str, Any]:
    """Engine alone, then ``repeats`` × (full solver, engine alone), on the same actors. Each solver
    run is compared with the mean of the engine-alone runs either side of it; the efficiency is the
    median of those ratios (the lower one of an even count; GPU engines drift by a few percent between runs minutes apart).
    ``max_tokens`` per engine-alone request: the config's sample budget unless given."""
    options = SolveOptions(mode="pool", num_samples=samples, pool_size=pool, stop_policy="full")
    texts = [p.text for p in problems[:64]]
    max_tokens = max_tokens or cfg.budget.max_tokens
    boot = time.perf_counter()
    with Solver(cfg) as solver:
        startup = time.perf_counter() - boot
        if warm_up is None:  # the tool loop and sandbox once, then every engine at full batch (graphs, shapes)
            solver.warm_up(samples=min(samples, 8), max_tokens=256)
            engine_alone(solver, texts, sum(solver.depths), 32, seed=0)
        else:
            warm_up(solver)
        requests = len(problems) * samples
        alone = [engine_alone(solver, texts, requests, max_tokens, seed=1)]
        runs = []
        for k in range(repeats):
            runs.append(solver_run(solver, problems, options, profile=profile and k == 0))
            alone.append(engine_alone(solver, texts, requests, max_tokens, seed=2 + k))
        engines, depths = len(solver.engines), list(solver.depths)
    ratios = [run["tokens_per_s"] / ((alone[k]["tokens_per_s"] + alone[k + 1]["tokens_per_s"]) / 2)
              for k, run in enumerate(runs)]
    middle = sorted(range(repeats), key=lambda k: ratios[k])[(repeats - 1) // 2]
    for k, run in enumerate(runs):
        run.pop("results")
        if k != 0:
            run.pop("profile", None)
    out = {"engines": engines, "queue_depths": depths, "startup_s": round(startup, 1), "engine_alone": alone,
           "solver": runs[middle], "efficiency": round(ratios[middle], 4)}
    if repeats > 1:
        out["efficiencies"] = [round(r, 4) for r in ratios]
        out["solver_tokens_per_s"] = [run["tokens_per_s"] for run in runs]
        if middle != 0 and "profile" in runs[0]:
            out["solver"]["profile"] = runs[0]["profile"]
    return out


def cancel_latency(cfg: SolverConfig, problems: list[Problem], samples: int, modes: dict[str, SolveOptions]
                   ) -> dict[str, Any]:
    """Settle-to-all-siblings-stopped latency per scheduling mode, on the same actors."""
    out = {}
    with Solver(cfg) as solver:
        solver.warm_up(samples=min(samples, 8))
        for name, options in modes.items():
            ray.get(solver.coordinator.take_cancel_latencies.remote())
            results = list(solver.solve_iter(problems, options))
            latencies = ray.get(solver.coordinator.take_cancel_latencies.remote())
            waits = [r.wall_s - r.settle_s for r in results if r.samples_cancelled > 0]
            out[name] = {"problems": len(results), "with_siblings_cancelled": len(waits),
                         "samples_cancelled": sum(r.samples_cancelled for r in results),
                         "settle_to_stopped_ms": percentiles_ms(latencies["stopped"]),
                         "settle_to_acknowledged_ms": percentiles_ms(latencies["acknowledged"]),
                         "settle_to_records_back_ms": percentiles_ms(waits)}
    return out


def scaling(make_config: Callable[[int], SolverConfig], counts: list[int], problems_per_actor: int, samples: int,
            pool: int) -> list[dict[str, Any]]:
    """Solver tokens/s with each engine-actor count (the work grows with the count) and the ratio
    to ``count ×`` the one-actor figure."""
    rows = []
    for n in counts:
        cfg = make_config(n)
        with Solver(cfg) as solver:
            solver.warm_up(samples=min(samples, 8))
            run = solver_run(solver, bench_problems(problems_per_actor * n, f"scale{n}"),
                             SolveOptions(mode="pool", num_samples=samples, pool_size=pool, stop_policy="full"))
        run.pop("results")
        rows.append({"engines": n, **run})
    base = rows[0]["tokens_per_s"] / rows[0]["engines"]
    for row in rows:
        row["ratio_to_linear"] = round(row["tokens_per_s"] / (base * row["engines"]), 3)
    return rows

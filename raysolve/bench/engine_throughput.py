"""Raw generation throughput of an engine in this process (``jobs/bench_engine.py``): no actor,
no solver, no tool loop.

Not the engine-alone baseline of the orchestration benchmarks
(``raysolve.bench.harness.engine_alone_on_actor``): that one runs on the solver's engine actors
and does a sample's segments (stopping on the code-end token and continuing after a stand-in
output block), so that it can be set against the solver on the same work. This one measures
the model itself: each request runs until EOS or ``tokens`` new tokens, with a fixed number in
flight (``concurrency``), and only EOS stops it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from raysolve.core.protocols import GenerationRequest


async def concurrency_level(engine: Any, prompts: list[list[int]], concurrency: int, tokens: int) -> dict[str, Any]:
    """``2 × concurrency`` requests (prompts in turn, seed = index) all submitted at once to an
    engine that runs ``concurrency`` at a time; tokens/s over the whole level."""
    async def one(i: int) -> int:
        request = GenerationRequest(f"c{concurrency}-{i}", tuple(prompts[i % len(prompts)]), tokens, seed=i)
        return sum([len(d.token_ids) async for d in engine.generate(request)])

    started = time.perf_counter()
    counts = await asyncio.gather(*(one(i) for i in range(concurrency * 2)))
    wall = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": len(counts), "tokens": sum(counts),
            "wall_s": round(wall, 3), "tokens_per_s": round(sum(counts) / wall, 1)}


async def hf_levels(model: str, problems: str, concurrency: list[int], tokens: int) -> list[dict[str, Any]]:
    """The ``hf`` backend on CPU with ``model``, prompted with the chat-templated problems of the
    ``problems`` file: a short warm-up level, then one level per ``concurrency``."""
    from raysolve.core.prompting import HFTokenCodec, PromptFormat
    from raysolve.engines.hf import HFEngine, HFEngineConfig
    from raysolve.io.output import read_rows

    engine = HFEngine(HFEngineConfig(model=model, device="cpu", max_concurrency=max(concurrency)))
    await engine.start()
    codec = HFTokenCodec(engine.tokenizer)
    fmt = PromptFormat()
    prompts = [fmt.prompt_ids(codec, r["problem"], 6) for r in read_rows(problems)]
    await concurrency_level(engine, prompts, 2, 16)  # warm-up
    levels = [await concurrency_level(engine, prompts, c, tokens) for c in concurrency]
    await engine.close()
    return levels

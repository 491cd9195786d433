"""Engine-alone throughput: the `hf` backend generating from real prompts, no solver around it.

    python jobs/bench_engine.py --model tiny --concurrency 1 8 32 --tokens 128 --out results/tiny-engine-cpu.json

Prompts are the chat-templated held-out problems; every request gets its own seed and
runs to ``--tokens`` new tokens unless EOS comes first (counted as generated either way).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

from raysolve.core.protocols import GenerationRequest
from raysolve.engines.hf import HFEngine, HFEngineConfig
from raysolve.io.output import read_rows
from raysolve.core.prompting import HFTokenCodec, PromptFormat


async def run_level(engine: HFEngine, prompts: list[list[int]], concurrency: int, tokens: int) -> dict:
    async def one(i: int) -> int:
        request = GenerationRequest(f"c{concurrency}-{i}", tuple(prompts[i % len(prompts)]), tokens, seed=i)
        return sum([len(d.token_ids) async for d in engine.generate(request)])

    started = time.perf_counter()
    counts = await asyncio.gather(*(one(i) for i in range(concurrency * 2)))
    wall = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": len(counts), "tokens": sum(counts),
            "wall_s": round(wall, 3), "tokens_per_s": round(sum(counts) / wall, 1)}


async def main_async(args: argparse.Namespace) -> dict:
    engine = HFEngine(HFEngineConfig(model=args.model, device="cpu", max_concurrency=max(args.concurrency)))
    await engine.start()
    codec = HFTokenCodec(engine.tokenizer)
    fmt = PromptFormat()
    prompts = [fmt.prompt_ids(codec, r["problem"], 6) for r in read_rows(args.problems)]
    await run_level(engine, prompts, 2, 16)  # warm-up
    levels = [await run_level(engine, prompts, c, args.tokens) for c in args.concurrency]
    await engine.close()
    return {"model": args.model, "max_new_tokens": args.tokens, "levels": levels,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads 1 (engine default)",
            "date": time.strftime("%Y-%m-%d"), "command": "python jobs/bench_engine.py " + " ".join(sys.argv[1:])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--problems", default="examples/tiny-heldout.jsonl")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--out")
    args = p.parse_args()
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

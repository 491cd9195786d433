"""Engine-alone throughput: the `hf` backend generating from real prompts, no solver around it.

    python jobs/bench_engine.py --model tiny --concurrency 1 8 32 --tokens 128 --out results/tiny-engine-cpu.json

Prompts are the chat-templated held-out problems; every request gets its own seed and
runs to ``--tokens`` new tokens unless EOS comes first (counted as generated either way).
The model's own throughput (``raysolve.bench.engine_throughput``), not the orchestration
benchmarks' engine-alone baseline.
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

from raysolve.bench.engine_throughput import hf_levels


async def main_async(args: argparse.Namespace) -> dict:
    levels = await hf_levels(args.model, args.problems, args.concurrency, args.tokens)
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

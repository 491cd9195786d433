"""Microseconds per stop decision, per policy, on the vote states a real run meets.

    python jobs/bench_policies.py --traces results/tiny-eval-samples.jsonl.gz --out results/policy-decision-us.json

The states are every prefix of every problem's votes in the traces (in a few random
orders), with the budget = the problem's sample count: what the coordinator asks the
policy after each finished sample. "cold" is the first pass (empty caches), "warm" the
best of three later passes: a long run is warm after its first problems.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

from raysolve.core.replay import load_traces
from raysolve.core.voting import VoteState, parse_policy

SPECS = ["full", "unbeatable", "first-k:4", "runner-up", "esc:5", "stragglers:2", "beta:0.95",
         "dirichlet:0.95", "predictive:0.99", "default", "unbeatable|predictive:0.99"]


def states(path: str, orders: int, seed: int) -> list[VoteState]:
    rng = random.Random(seed)
    out = []
    for trace in load_traces(path):
        n = len(trace.samples)
        for _ in range(orders):
            answers = [s.answer for s in rng.sample(trace.samples, n)]
            counts: dict[str, int] = {}
            for i, a in enumerate(answers, start=1):
                if a is not None:
                    counts[a] = counts.get(a, 0) + 1
                out.append(VoteState(dict(counts), i, 0, n - i, 0.0, answers[:i]))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--traces", default="results/tiny-eval-samples.jsonl.gz")
    p.add_argument("--orders", type=int, default=3)
    p.add_argument("--out", default="results/policy-decision-us.json")
    args = p.parse_args()
    pool = states(args.traces, args.orders, 0)
    rows = []
    for spec in SPECS:
        policy = parse_policy(spec)
        t0 = time.perf_counter()
        for s in pool:
            policy.decide(s)
        cold = (time.perf_counter() - t0) / len(pool) * 1e6
        warm = []
        for _ in range(3):
            t0 = time.perf_counter()
            for s in pool:
                policy.decide(s)
            warm.append((time.perf_counter() - t0) / len(pool) * 1e6)
        rows.append({"policy": policy.name, "cold_us": round(cold, 2), "warm_us": round(min(warm), 2)})
        print(f"{policy.name:34} cold {cold:8.2f} µs   warm {min(warm):6.2f} µs", flush=True)
    report = {"command": "python jobs/bench_policies.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, Python {platform.python_version()}, one core",
              "states": len(pool), "traces": args.traces, "rows": rows}
    Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

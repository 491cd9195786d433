"""Microseconds per stop decision, per policy, on the vote states a real run meets.

    python jobs/bench_policies.py --traces results/tiny-eval-samples.jsonl.gz --out results/policy-decision-us.json

The states are every prefix of every problem's votes in the traces (in a few random
orders), with the budget = the problem's sample count: what the coordinator asks the
policy after each finished sample (``raysolve.bench.policies``). "cold" is the first pass (empty caches), "warm" the
best of three later passes: a long run is warm after its first problems.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from raysolve.bench.policies import SPECS, decision_us, states
from raysolve.core.voting import parse_policy


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
        cold, warm = decision_us(policy, pool)
        rows.append({"policy": policy.name, "cold_us": round(cold, 2), "warm_us": round(warm, 2)})
        print(f"{policy.name:34} cold {cold:8.2f} µs   warm {warm:6.2f} µs", flush=True)
    report = {"command": "python jobs/bench_policies.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, Python {platform.python_version()}, one core",
              "states": len(pool), "traces": args.traces, "rows": rows}
    Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

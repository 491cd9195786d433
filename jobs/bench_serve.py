"""A bounded load test of the Serve endpoint on loopback: requests/s and p50/p95 latency
at several client concurrencies, one deployment, measured side by side in one run.

    python jobs/bench_serve.py --clients 1,4,16 --requests 12,24,48 --out results/serve-load

Each client sends ``POST /v1/solve`` requests back to back (problems from
``examples/problems.jsonl`` in turn, the endpoint's latency-first defaults) until the
level's request count is reached (``raysolve.bench.serve_load``). Writes JSON, CSV and a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from raysolve.bench.files import write_results
from raysolve.bench.serve_load import CSV_FIELDS, free_port, load_level


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["levels"]
    xs = [r["clients"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(xs, [r["requests_per_s"] for r in rows], "o-")
    left.set_xscale("log", base=2)
    left.set_xlabel("concurrent clients")
    left.set_ylabel("requests/s")
    left.set_ylim(bottom=0)
    left.set_title("throughput")
    right.plot(xs, [r["p50_s"] for r in rows], "o-", label="p50")
    right.plot(xs, [r["p95_s"] for r in rows], "s--", label="p95")
    right.set_xscale("log", base=2)
    right.set_xlabel("concurrent clients")
    right.set_ylabel("latency (s)")
    right.set_title("latency per request")
    right.legend()
    fig.suptitle(f"POST /v1/solve, {report['engine']} — {report['machine']} — {report['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--requests", default="12,24,48", help="requests per level")
    p.add_argument("--config", help="SolverConfig YAML (default: the embedded tiny engine)")
    p.add_argument("--problems", default="examples/problems.jsonl")
    p.add_argument("--out", default="results/serve-load")
    args = p.parse_args()

    import ray
    from ray import serve

    from raysolve.serve import build

    problems = [json.loads(line) for line in Path(args.problems).read_text().splitlines() if line.strip()]
    ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build({"config": args.config}), name="raysolve", route_prefix="/")
    url = f"http://127.0.0.1:{port}/v1/solve"
    asyncio.run(load_level(url, problems, 1, 2))  # warm-up: first requests load caches
    levels = []
    for clients, requests in zip(map(int, args.clients.split(",")), map(int, args.requests.split(","))):
        row = asyncio.run(load_level(url, problems, clients, requests))
        levels.append(row)
        print(json.dumps(row), flush=True)
    serve.shutdown()
    ray.shutdown()
    report = {
        "command": "python jobs/bench_serve.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}, loopback",
        "engine": args.config or "embedded tiny model (hf, CPU)",
        "request": "POST /v1/solve with the endpoint defaults (wave scheduling of 8, policy 'latency')",
        "levels": levels,
    }
    rows = [{k: row[k] for k in CSV_FIELDS} for row in levels]
    write_results(Path(args.out), report, rows, _plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())

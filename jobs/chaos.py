"""Chaos run of the dataset command (``raysolve.bench.chaos``): faults injected, then every
problem checked — lost 0, duplicated 0, each with a real settle.

    python jobs/chaos.py --problems 200 --out results/chaos.json

Starts a local Ray instance (4 CPUs) unless ``--address`` names one; the command under test
joins it with ``--address``. Exit code 0 when every check held.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from raysolve.bench.chaos import ChaosPlan, run


def main() -> int:
    plan = ChaosPlan()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in vars(plan).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default,
                            help=f"(default {default})")
    parser.add_argument("--address", help="Ray cluster to use (default: start a local one)")
    parser.add_argument("--out", default="results/chaos.json", help="where the JSON report goes")
    args = parser.parse_args()
    plan = ChaosPlan(**{k: getattr(args, k) for k in vars(plan)})
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    ray.init(address=args.address, num_cpus=None if args.address else 4, include_dashboard=False,
             configure_logging=False, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    with tempfile.TemporaryDirectory(prefix="raysolve-chaos-") as work:
        report = run(plan, Path(work), address)
    report.update(command=" ".join(["python", *sys.argv]), machine=f"{platform.node()} ({os.cpu_count()} CPUs)",
                  date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    ray.shutdown()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    keys = ("problems", "rows", "lost", "duplicated", "wrong_answers", "without_real_settle", "votes_inconsistent",
            "failed_then_solved", "samples_retried", "sandbox_sessions_left", "actor_processes_left", "wall_s")
    for key in keys:
        print(f"{key:22} {report[key]}")
    print(f"faults injected        {[e['kind'] for e in report['faults']['injected'] if 'skipped' not in e]}"
          f" + {plan.dead} dead and {plan.hang} hung engines")
    print(f"driver runs            {report['driver_runs']}")
    print(f"{'ok' if report['ok'] else 'FAILED'}; report in {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

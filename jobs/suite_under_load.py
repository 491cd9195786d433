"""Run the test suite several times in a row while CPU burners keep every core busy.

The proof that no test depends on an idle machine: ``python jobs/suite_under_load.py
--runs 3 --burners 2 --out results/suite-under-load.json`` starts ``--burners`` processes
that spin on a core each, runs ``python -m pytest -q`` ``--runs`` times, and records each
run's counts (passed, failed, errors, skipped), exit code and duration, the machine and
the date. The burners are stopped however the runs end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)")


def burn() -> None:
    """Spin forever on one core (a CPU-bound neighbour of the test suite)."""
    x = 0
    while True:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def counts(output: str) -> dict[str, int]:
    """The counts of pytest's closing line, e.g. ``700 passed, 2 skipped in 340.1s``."""
    lines = [line for line in output.splitlines() if " in " in line and ("passed" in line or "failed" in line)]
    found: dict[str, int] = {}
    for n, word in _COUNT.findall(lines[-1] if lines else ""):
        key = {"error": "errors", "warning": "warnings"}.get(word, word)
        found[key] = int(n)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="suite runs in a row (default 3)")
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 2,
                        help="CPU-bound processes running beside the suite (default: one per core)")
    parser.add_argument("--out", default="results/suite-under-load.json", help="where the JSON report goes")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()

    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.burners)]
    for b in burners:
        b.start()
    runs = []
    try:
        for i in range(args.runs):
            started = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.pytest_args],
                                  capture_output=True, text=True)
            elapsed = time.monotonic() - started
            run = {"run": i + 1, "exit_code": proc.returncode, "seconds": round(elapsed, 1), **counts(proc.stdout)}
            failed_tests = [line.split(" ", 1)[1] for line in proc.stdout.splitlines()
                            if line.startswith(("FAILED ", "ERROR "))]
            if failed_tests:
                run["failed_tests"] = failed_tests
            runs.append(run)
            print(json.dumps(run), flush=True)
    finally:
        for b in burners:
            b.terminate()
        for b in burners:
            b.join()
    report = {
        "command": "python jobs/suite_under_load.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "burners": args.burners,
        "runs": runs,
        "all_passed": all(r["exit_code"] == 0 for r in runs),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{sum(r['exit_code'] == 0 for r in runs)}/{len(runs)} runs passed; report in {out}")
    return 0 if report["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

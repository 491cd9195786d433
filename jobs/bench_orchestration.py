"""Entry point for `ray job submit` (and plain python): ``raysolve bench``, see ``raysolve.orchestration_bench``.

    python jobs/bench_orchestration.py --out results/orchestration-cpu
"""

import sys

from raysolve.orchestration_bench import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

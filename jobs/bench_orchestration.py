"""Entry point for `ray job submit` (and plain python): ``raysolve bench``, see ``raysolve.bench.orchestration``.

    python jobs/bench_orchestration.py --out results/orchestration-cpu
"""

import sys

from raysolve.bench.orchestration import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Entry point for `ray job submit`: solve a problem set on the cluster the job runs on.

    ray job submit --working-dir . -- python jobs/solve_dataset.py INPUT --out OUT [solve flags]

It is `raysolve solve` (same config, same builder); inside a Ray job, `ray.init()`
joins the job's cluster instead of starting a local one. The driver reserves no GPU.
"""

import sys

from raysolve.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["solve", *sys.argv[1:]]))

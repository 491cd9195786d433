"""Entry point for `ray job submit`: solve a data set on the cluster the job runs on.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/solve_dataset.py INPUT --out /shared/out [solve flags]

It is `raysolve solve` (same config, same builder) with the defaults a long job
wants: Parquet shards (``problems/``, ``samples/`` under ``--out``) with a JSONL
journal, so a stopped or crashed job resumes where it was when rerun with the same
``--out``; progress as log lines (problems done, accuracy so far, tokens/s, ETA);
skipped rows in ``errors.jsonl``; ``summary.json`` updated as results arrive.
Inside a Ray job, ``ray.init()`` joins the job's cluster. The driver reserves no GPU
(``ray job submit`` gives the entrypoint none unless ``--entrypoint-num-gpus`` says so).
The exit code is non-zero only when the job as a whole failed.
"""

import sys

from raysolve.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["solve", "--format", "parquet", "--progress", "log", *sys.argv[1:]]))

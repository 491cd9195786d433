"""Entry point for `ray job submit`: a competition-mode run on the cluster the job runs on.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/aimo_offline.py problems.csv --time-budget 18000 --out /shared/aimo [aimo flags]

It is `raysolve aimo` (same config, same budget policies): problems answered one at a
time in file order within the budget (engine start-up included, as in the competition),
the per-problem log, ``submission.csv``, ``summary.json`` and ``time-per-problem.png``
under ``--out``. Rerunning with the same ``--out`` keeps the answered problems and charges
the time they took. The exit code is 1 if the run went over its budget.
"""

import sys

from raysolve.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["aimo", *sys.argv[1:]]))

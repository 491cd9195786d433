"""Entry point for `ray job submit`: build an engine from a recipe on a GPU node of the cluster.

    ray job submit --address http://HEAD:8265 --working-dir . --entrypoint-num-gpus 2 -- \
        python jobs/build_engine.py engines/trtllm-fp8-tp2.yaml [--dry-run]

It is `raysolve engine build` (see ``raysolve.engines.recipes``): the steps are printed,
the inputs checked before any GPU time is spent, then each step runs in order. Ask for
as many GPUs as the recipe's ``build.tp`` (``--entrypoint-num-gpus``), so Ray runs the
job on a node that has them and sets ``CUDA_VISIBLE_DEVICES``. The output paths in the
recipe must be storage the engine actors will read (a shared volume).
"""

import sys

from raysolve.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["engine", "build", *sys.argv[1:]]))

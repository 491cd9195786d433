"""GPU smoke test of the ``vllm`` backend: placement, seeds, abort, throughput and cancel-on-settle.

On a GPU machine with vLLM and Ray (README: "Running on GPUs with vLLM"):

    python jobs/gpu_smoke.py --layouts 1x1,2x1,1x2 --out results/gpu-smoke

A layout ``AxT`` is A engine actors holding T GPUs each (T = tensor-parallel size):
``1x1`` one actor on one GPU, ``2x1`` one actor per GPU on two GPUs, ``1x2`` one
actor on a GPU pair. For each layout, with a Qwen2.5-1.5B-shaped model that this
script creates with RANDOM weights (no download possible; speed is what it is
for; its tokenizer is the project's tiny one, so generated text is meaningless):

1. placement: the GPUs Ray gave each actor, and the ``CUDA_VISIBLE_DEVICES`` of
   every process the engine started (vLLM's workers must use exactly those);
2. seeds: 8 samples of one prompt with 8 seeds must all differ;
3. abort: 64 long requests, 32 of them aborted one at a time: the time until the
   scheduler no longer runs each one, and the KV-cache usage before and after;
4. throughput: the engine alone and the full solver on the same work
   (P problems × S samples × L forced tokens, same prompts, same in-flight depth);
5. cancel on settle: launch-all with a ``time:`` stop policy, so the vote settles
   while every sample is mid-generation: all must come back cancelled, the
   engines must be idle right after, and the cancel-to-stopped latency is reported.

``--tiny`` then runs the project's trained tiny model through vLLM on the example
problems: real tool calls, sandbox, votes and early stopping end to end.

Writes ``<out>/<layout>.json`` per layout, ``<out>/tiny.json`` and ``<out>/summary.json``.
``--dry-run`` runs the same flow on CPU with the ``hf`` backend (no GPUs, no vLLM),
to check the script itself. The probes and checks are ``raysolve.bench.gpu_probes``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from raysolve.bench.gpu_probes import (NO_MULTICAST, SmokeSettings, ensure_model, machine, make_random_model,
                                       run_layout, run_tiny)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layouts", default="1x1", help="comma-separated AxT: A actors with T GPUs each")
    p.add_argument("--out", default="results/gpu-smoke")
    p.add_argument("--model-dir", default="/tmp/raysolve-qwen2.5-1.5b-random")
    p.add_argument("--problems", type=int, default=64, help="problems per engine actor in the throughput run")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--tokens", type=int, default=512, help="forced tokens per sample")
    p.add_argument("--depth", type=int, default=256, help="in-flight samples per engine (vLLM max_num_seqs)")
    p.add_argument("--settle-s", type=float, default=3.0, help="time limit that settles the cancel run")
    p.add_argument("--tiny", action="store_true", help="also run the trained tiny model end to end")
    p.add_argument("--tiny-examples", type=int, default=20, help="of examples/problems.jsonl")
    p.add_argument("--tiny-heldout", type=int, default=100, help="held-out problems added to the 20 examples")
    p.add_argument("--tiny-samples", type=int, default=16)
    p.add_argument("--sandbox-actors", type=int, default=4)
    p.add_argument("--dry-run", action="store_true", help="CPU check of this script: hf backend, no GPUs")
    p.add_argument("--make-model", help=argparse.SUPPRESS)
    return p


def main() -> int:
    args = parser().parse_args()
    if args.make_model:
        make_random_model(Path(args.make_model))
        return 0

    import ray

    settings = SmokeSettings.from_namespace(args)
    os.environ.update(NO_MULTICAST)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
                               "command": "python jobs/gpu_smoke.py " + " ".join(sys.argv[1:]),
                               "model": "Qwen2.5-1.5B-shaped Qwen2, random bf16 weights (speed only), "
                                        "project tokenizer", "layouts": {}}
    model = "random-tiny" if args.dry_run else str(ensure_model(Path(args.model_dir)))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=2 * 10**9,
             log_to_driver=True, configure_logging=False)
    failed = False
    for layout in [x for x in args.layouts.split(",") if x]:
        actors, gpus = (int(v) for v in layout.split("x"))
        print(f"== layout {layout}", flush=True)
        try:
            report = run_layout(settings, model, actors, gpus)
        except Exception as exc:  # keep going: the other layouts still tell something
            import traceback

            failed = True
            report = {"layout": layout, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        (out / f"{layout}.json").write_text(json.dumps(report, indent=2, default=str))
        failed = failed or not all(report.get("checks", {"ran": False}).values())
        summary["layouts"][layout] = {k: report.get(k) for k in
                                      ("checks", "throughput", "seeds", "abort", "cancel_on_settle", "error")}
        print(json.dumps(summary["layouts"][layout], indent=1, default=str), flush=True)
    if args.tiny:
        print("== tiny model end to end", flush=True)
        try:
            summary["tiny"] = run_tiny(settings, EXAMPLES)
            failed = failed or not all(summary["tiny"]["checks"].values())
        except Exception as exc:
            import traceback

            failed = True
            summary["tiny"] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        (out / "tiny.json").write_text(json.dumps(summary["tiny"], indent=2, default=str))
        print(json.dumps({k: v for k, v in summary["tiny"].items() if k != "engine_stats"}, indent=1, default=str),
              flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    ray.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

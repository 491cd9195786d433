#!/usr/bin/env bash
# The GPU part of `raysolve bench` (issue 10), on the project's GPU machines with the stack from
# ../shared/tools/gpu-stack activated (see ../shared/docs/gpu.md). Writes to $OUT (default results/).
#
#   bash jobs/bench_gpu_orchestration.sh placement   # 1 actor vs 2 tp=1 actors (two GPUs), vLLM
#   bash jobs/bench_gpu_orchestration.sh tp2         # 1 tp=2 actor on the GPU pair, vLLM
#   bash jobs/bench_gpu_orchestration.sh hf          # transformers + CUDA graphs on one GPU, under load
#
# The model is Qwen2.5-1.5B-shaped with RANDOM weights (made offline by jobs/gpu_smoke.py; no
# download is possible there): speed only. Every sample runs to its token budget (vLLM's
# benchmarking option forced_length), and 30 % of the samples call the sandbox after 256 tokens
# (the toolmix benchmark wrapper injects the call; the sandbox runs it for real).
# REPEATS=3 runs each solver measurement three times between engine-alone runs (median); the
# committed results (results/orchestration-gpu/) are single runs: REPEATS=1.
set -euo pipefail
part=${1:?placement, tp2 or hf}
out=${OUT:-results}
model=${MODEL:-/tmp/raysolve-qwen2.5-1.5b-random}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
RAYSOLVE_GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | sed 's/^ *//' | paste -sd,)"
export RAYSOLVE_GPU_NAME
[ -d "$model" ] || python jobs/gpu_smoke.py --make-model "$model"
vllm="engines/vllm-1gpu.yaml,engine.options.model=$model,engine.options.dtype=bfloat16,engine.options.forced_length=true"
vllm="$vllm,engine.options.max_model_len=4096,budget.max_tokens=2048"
common=(--only efficiency --samples 16 --tool-share 0.3 --tool-after 256 --repeats "${REPEATS:-1}")
case $part in
  placement)
    python jobs/bench_orchestration.py --engine "1-actor-tp1=$vllm,engine.num_actors=1" \
      --engine "2-actors-tp1=$vllm,engine.num_actors=2" "${common[@]}" --problems 32 \
      --out "$out/orchestration-gpu-placement" ;;
  tp2)
    python jobs/bench_orchestration.py \
      --engine "1-actor-tp2=$vllm,engine.num_actors=1,engine.num_gpus=2,engine.num_cpus=4,engine.queue_depth=512,engine.options.max_num_seqs=512" \
      "${common[@]}" --problems 24 --out "$out/orchestration-gpu-tp2" ;;
  hf)
    python jobs/bench_orchestration.py \
      --engine "hf-cuda-graphs=engines/hf-tiny.yaml,engine.options.model=$model,engine.options.device=cuda,engine.num_gpus=1,engine.options.dtype=bfloat16,engine.options.max_concurrency=256,engine.options.cuda_graph=true,engine.options.max_model_len=1024,budget.max_tokens=256" \
      --only efficiency --samples 16 --tool-share 0.3 --tool-after 64 --problems 16 --repeats "${REPEATS:-1}" \
      --out "$out/orchestration-gpu-hf" ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac

"""GPU steps of an engine build (``raysolve engine build`` runs them as subprocesses).

``modelopt``: FP8 post-training quantization with NVIDIA ModelOpt on a Hugging Face
checkpoint — ``mtq.quantize(model, FP8 config, forward_loop)`` over the calibration
texts, then ``export_hf_checkpoint`` — giving a checkpoint the ``trtllm`` backend's
PyTorch path loads (set ``kv_cache_dtype: fp8`` there for the FP8 KV cache).

``trt-engine``: a TRT engine quantized while it is built, through the TRT backend's LLM
API: ``QuantConfig(quant_algo=FP8, kv_cache_quant_algo=FP8)``, ``CalibConfig`` over the
calibration parquet, then ``llm.save(engine_dir)``.

Both import their libraries lazily and need CUDA GPUs. **Not yet run by this project**
(TensorRT-LLM and ModelOpt cannot be installed on its machines); ``raysolve engine build
--dry-run`` shows the exact commands, and the calibration set they read is produced and
tested here (``raysolve.engines.recipes.prepare_calibration``).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path


def calibration_texts(path: str | Path) -> list[str]:
    import pyarrow.parquet as pq

    return [str(t) for t in pq.read_table(path, columns=["text"]).column("text").to_pylist()]


def modelopt_fp8(model: str, dtype: str, calib: str, out: str, kv_cache: str = "fp8", max_len: int = 4096) -> None:
    import modelopt.torch.quantization as mtq
    import torch
    from modelopt.torch.export import export_hf_checkpoint
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    net = AutoModelForCausalLM.from_pretrained(model, torch_dtype=getattr(torch, dtype), device_map="auto")
    texts = calibration_texts(calib)

    def forward_loop(m: torch.nn.Module) -> None:
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_len).input_ids
            m(ids.to(m.device))

    config = copy.deepcopy(mtq.FP8_DEFAULT_CFG)
    if kv_cache == "fp8":  # FP8 K/V quantizers, calibrated in the same pass
        config["quant_cfg"].update(copy.deepcopy(mtq.FP8_KV_CFG)["quant_cfg"])
    with torch.inference_mode():
        mtq.quantize(net, config, forward_loop)
    export_hf_checkpoint(net, export_dir=out)
    tokenizer.save_pretrained(out)


def trt_engine(model: str, dtype: str, tp: int, out: str, max_batch_size: int, max_seq_len: int,
               max_num_tokens: int, calib: str | None, calib_samples: int, calib_max_seq_len: int,
               kv_cache: str = "fp8") -> None:
    from tensorrt_llm._tensorrt_engine import LLM
    from tensorrt_llm.llmapi import BuildConfig, CalibConfig, QuantAlgo, QuantConfig

    kwargs = {}
    if calib is not None:
        kwargs["quant_config"] = QuantConfig(quant_algo=QuantAlgo.FP8,
                                             kv_cache_quant_algo=QuantAlgo.FP8 if kv_cache == "fp8" else None)
        kwargs["calib_config"] = CalibConfig(calib_dataset=str(Path(calib).parent), calib_batches=calib_samples,
                                             calib_max_seq_length=calib_max_seq_len)
    build = BuildConfig(max_batch_size=max_batch_size, max_seq_len=max_seq_len, max_num_tokens=max_num_tokens)
    llm = LLM(model=model, dtype=dtype, tensor_parallel_size=tp, build_config=build, **kwargs)
    try:
        llm.save(out)
    finally:
        llm.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m raysolve.engines.quantize")
    sub = p.add_subparsers(dest="step", required=True)
    m = sub.add_parser("modelopt", help="ModelOpt FP8 checkpoint for the PyTorch backend")
    t = sub.add_parser("trt-engine", help="TRT engine, FP8-quantized while building")
    for s in (m, t):
        s.add_argument("--model", required=True)
        s.add_argument("--dtype", default="bfloat16")
        s.add_argument("--out", required=True)
        s.add_argument("--calib")
        s.add_argument("--kv-cache", default="fp8")
    t.add_argument("--tp", type=int, default=1)
    t.add_argument("--max-batch-size", type=int, default=64)
    t.add_argument("--max-seq-len", type=int, default=32768)
    t.add_argument("--max-num-tokens", type=int, default=8192)
    t.add_argument("--calib-samples", type=int, default=512)
    t.add_argument("--calib-max-seq-len", type=int, default=4096)
    args = p.parse_args(argv)
    if args.step == "modelopt":
        if not args.calib:
            p.error("modelopt needs --calib")
        modelopt_fp8(args.model, args.dtype, args.calib, args.out, args.kv_cache)
    else:
        trt_engine(args.model, args.dtype, args.tp, args.out, args.max_batch_size, args.max_seq_len,
                   args.max_num_tokens, args.calib, args.calib_samples, args.calib_max_seq_len, args.kv_cache)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

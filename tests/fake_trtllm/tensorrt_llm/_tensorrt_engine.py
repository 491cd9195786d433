"""FAKE of ``tensorrt_llm._tensorrt_engine``: the LLM for engine dirs built by ``trtllm-build``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tensorrt_llm import _COMMON, _TRT_ONLY, LLM as _TorchLLM, read_engine_config


class LLM(_TorchLLM):
    """Loads an engine dir: TP must equal the engine's, limits are clamped to its build
    config, the tokenizer must be given when the dir holds none, MPI only."""

    _backend = "tensorrt"
    _allowed = _COMMON | _TRT_ONLY

    def __init__(self, model: str, tokenizer: str | None = None, **kwargs: Any) -> None:
        if kwargs.get("orchestrator_type") == "ray":
            raise ValueError("the Ray orchestrator supports the PyTorch backend only, not TensorRT engines")
        config = read_engine_config(model)
        built_tp = int(config["pretrained_config"]["mapping"]["tp_size"])
        tp = int(kwargs.get("tensor_parallel_size", 1))
        if tp != built_tp:
            raise ValueError(f"tensor_parallel_size={tp} but the engine was built for tp_size={built_tp}")
        if tokenizer is None and not (Path(model) / "tokenizer.json").exists():
            raise ValueError("the engine dir holds no tokenizer: pass tokenizer=")
        build = config.get("build_config", {})
        for key in ("max_batch_size", "max_seq_len", "max_num_tokens"):
            if key in kwargs and key in build:
                kwargs[key] = min(kwargs[key], build[key])
        super().__init__(model, tokenizer, **kwargs)
        self.engine_config = config

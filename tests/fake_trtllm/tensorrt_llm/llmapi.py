"""FAKE of ``tensorrt_llm.llmapi``: the config classes, strict about their fields."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tensorrt_llm import LLM, RequestOutput, SamplingParams  # noqa: F401  (re-exported, as upstream)


@dataclass
class KvCacheConfig:
    free_gpu_memory_fraction: float | None = None
    enable_block_reuse: bool = True
    dtype: str = "auto"
    max_tokens: int | None = None


@dataclass
class EagleDecodingConfig:
    max_draft_len: int
    speculative_model_dir: str
    eagle3_one_model: bool = True


@dataclass
class DraftTargetDecodingConfig:
    max_draft_len: int
    speculative_model_dir: str


@dataclass
class NGramDecodingConfig:
    max_draft_len: int
    max_matching_ngram_size: int = 4


@dataclass
class MTPDecodingConfig:
    num_nextn_predict_layers: int = 1


class QuantAlgo(str, enum.Enum):
    FP8 = "FP8"
    W8A16 = "W8A16"
    NO_QUANT = "NO_QUANT"


@dataclass
class QuantConfig:
    quant_algo: QuantAlgo | None = None
    kv_cache_quant_algo: QuantAlgo | None = None


@dataclass
class CalibConfig:
    calib_dataset: str = "cnn_dailymail"
    calib_batches: int = 512
    calib_batch_size: int = 1
    calib_max_seq_length: int = 512

"""The ``trtllm`` backend: a TensorRT-LLM ``LLM`` inside the engine actor.

Written against TensorRT-LLM 1.2's documented LLM API (``../shared/docs/tensorrt-llm.md``
lists the facts and traps it respects) and tested with a fake of that API
(``tests/fake_trtllm``). **Not yet run on real hardware by this project**: TensorRT-LLM
cannot be installed on its machines. ``tensorrt_llm`` is imported only in ``start()``;
without it, ``start()`` raises an ``ImportError`` that says how to install it.

Loading
    ``model`` is a Hugging Face or ModelOpt-quantized checkpoint (the PyTorch backend,
    ``from tensorrt_llm import LLM``) or an engine dir built by ``trtllm-build``
    (``from tensorrt_llm._tensorrt_engine import LLM``; detected by the ``build_config``
    in its ``config.json``). Engine dirs usually hold no tokenizer: set ``tokenizer``.
    The ``LLM`` is built inside the actor (it cannot be pickled).

Tensor parallelism
    ``orchestrator="mpi"`` (the default, and the only one for engine dirs): the actor
    holds one placement-group bundle of ``tp`` GPUs and TensorRT-LLM spawns its MPI
    ranks, which use the GPUs in the actor's ``CUDA_VISIBLE_DEVICES`` by rank.
    ``orchestrator="ray"`` (PyTorch backend, TensorRT-LLM's prototype): the actor's
    placement group has one bundle per GPU (``EngineConfig.gpu_bundles = "per-gpu"``),
    the actor holds no GPU itself and captures its children into the group, and
    ``TRTLLM_RAY_BUNDLE_INDICES`` names the GPU bundles, so TensorRT-LLM's Ray workers
    land on them instead of a placement group of their own.

Requests
    One request per ``GenerationRequest`` with ``n=1`` (``abort()`` would cancel all n),
    ``max_tokens`` always explicit (the library's default is 32) and clamped to
    ``max_seq_len``, the request's own ``seed``, and temperature/top_p set explicitly
    (all unset means greedy). ``greedy=True`` sends ``top_k=1``. The code-end token goes
    in ``stop_token_ids`` with ``include_stop_str_in_output``; if the stop token is still
    missing from the output ids, the backend appends it, because the tool loop's context
    must contain it. On the PyTorch backend ``sampler_type="TRTLLMSampler"`` is the
    default here: the default sampler ignores per-request seeds. No logprobs are
    requested (aborting a streaming request with logprobs crashes the TRT backend).

Streaming and cancellation
    ``generate_async(..., streaming=True)`` is called on the actor's event loop; each
    update's ``token_ids_diff`` becomes a ``Delta``. ``cancel(id)`` calls ``abort()``
    and the stream is drained to its final ``cancelled`` output, so the request's
    resources are released. A consumer that stops iterating aborts and drains the same
    way. Finish reasons: ``stop`` (EOS, or the stop token in ``Delta.stop``),
    ``length``, ``cancelled``; ``timeout`` and an abort we did not ask for are errors.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from raysolve.core.protocols import GenerationRequest
from raysolve.engines.adapter import LibraryEngine, Output
from raysolve.engines.common import TINY, resolve_model_path, visible_gpu_count

__all__ = ["TRTLLMEngine", "TRTLLMEngineConfig", "is_engine_dir", "llm_kwargs", "sampling_kwargs"]

TRTLLM_RANGE = ">=1.2,<1.3"
_INSTALL_HINT = (
    "the 'trtllm' engine backend needs TensorRT-LLM " + TRTLLM_RANGE + " (Linux, CUDA, Python 3.10 or 3.12): "
    "use NVIDIA's NGC container nvcr.io/nvidia/tensorrt-llm/release, or pip install 'raysolve[trtllm]' "
    "with --extra-index-url https://pypi.nvidia.com (see README: 'Running on GPUs with TensorRT-LLM')"
)
SPECULATIVE_KINDS = ("eagle3", "draft_target", "ngram", "mtp")


@dataclass
class TRTLLMEngineConfig:
    """Options of the ``trtllm`` backend (``EngineConfig.options`` in the solver config)."""

    model: str = TINY
    """HF or ModelOpt checkpoint dir (PyTorch backend), or an engine dir from ``trtllm-build``."""
    tokenizer: str | None = None
    """Tokenizer dir; None: the model's. Required for engine dirs without one."""
    tensor_parallel_size: int | None = None
    """None: every GPU the actor holds (``orchestrator="mpi"``) or its GPU bundles (``"ray"``)."""
    orchestrator: Literal["mpi", "ray"] = "mpi"
    kv_cache_free_gpu_memory_fraction: float = 0.90
    enable_block_reuse: bool = True
    """Prefix caching: sibling samples share the prompt's KV blocks."""
    kv_cache_dtype: str = "auto"
    """``"fp8"`` for an FP8 KV cache (Hopper, Ada, Blackwell)."""
    max_batch_size: int = 256
    max_num_tokens: int = 8192
    max_seq_len: int = 16384
    """Prompt plus generated tokens of one request; a segment's ``max_tokens`` is clamped to fit."""
    max_concurrency: int | None = None
    """Samples the coordinator keeps in flight on this engine; None: ``max_batch_size``."""
    sampler_type: str | None = "TRTLLMSampler"
    """PyTorch backend only: the default sampler ignores per-request seeds."""
    speculative: dict[str, Any] | None = None
    """PyTorch backend: ``{"kind": "eagle3", "model": DIR, "max_draft_len": 3}``, or kinds
    ``draft_target`` (``model``, ``max_draft_len``), ``ngram`` (``max_draft_len``), ``mtp``
    (``layers``). A ReDrafter engine needs none: its drafter is built into the engine."""
    allow_advanced_sampling: bool = True
    """Sampled (not greedy) decoding with one-model EAGLE-3/MTP in 1.2."""
    llm_args: dict[str, Any] = field(default_factory=dict)
    """Any further ``LLM`` arguments, passed through unchanged (unknown ones raise ``ValueError``)."""

    def __post_init__(self) -> None:
        if self.orchestrator not in ("mpi", "ray"):
            raise ValueError(f"orchestrator must be 'mpi' or 'ray', got {self.orchestrator!r}")
        if self.speculative is not None and self.speculative.get("kind") not in SPECULATIVE_KINDS:
            raise ValueError(f"speculative.kind must be one of {SPECULATIVE_KINDS}, got {self.speculative!r}")


def is_engine_dir(path: str | Path) -> bool:
    """A ``trtllm-build`` output: ``config.json`` with a ``build_config``."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return "build_config" in json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return False


def llm_kwargs(config: TRTLLMEngineConfig, model_path: str, gpus: int, engine_dir: bool) -> dict[str, Any]:
    """The ``LLM(...)`` arguments for ``config`` on an actor that holds ``gpus`` GPUs.

    ``kv_cache_config`` and ``speculative_config`` are returned as plain dicts under
    ``"_kv_cache"`` / ``"_speculative"``; ``start()`` turns them into TensorRT-LLM's classes."""
    tp = config.tensor_parallel_size or max(1, gpus)
    if config.orchestrator == "mpi" and gpus and tp > gpus:
        raise ValueError(f"tensor_parallel_size={tp} but this engine holds {gpus} GPU(s); "
                         "set engine.num_gpus to the tensor-parallel size")
    if engine_dir and config.orchestrator == "ray":
        raise ValueError("orchestrator 'ray' works with the PyTorch backend only; engine dirs use MPI")
    if engine_dir and config.speculative:
        raise ValueError("speculative settings are for the PyTorch backend; an engine dir has its drafter built in")
    kwargs: dict[str, Any] = {
        "model": model_path,
        "tokenizer": config.tokenizer or model_path,
        "tensor_parallel_size": tp,
        "max_batch_size": config.max_batch_size,
        "max_num_tokens": config.max_num_tokens,
        "max_seq_len": config.max_seq_len,
        "_kv_cache": {"free_gpu_memory_fraction": config.kv_cache_free_gpu_memory_fraction,
                      "enable_block_reuse": config.enable_block_reuse, "dtype": config.kv_cache_dtype},
    }
    if not engine_dir:
        if config.sampler_type:
            kwargs["sampler_type"] = config.sampler_type
        if config.orchestrator == "ray":
            kwargs["orchestrator_type"] = "ray"
        if config.speculative:
            kwargs["_speculative"] = dict(config.speculative)
            if config.allow_advanced_sampling:
                kwargs["allow_advanced_sampling"] = True
    kwargs.update(config.llm_args)
    return kwargs


def sampling_kwargs(request: GenerationRequest, max_tokens: int) -> dict[str, Any]:
    """The ``SamplingParams`` fields for one segment."""
    kwargs: dict[str, Any] = {
        "n": 1,
        "max_tokens": max_tokens,
        "seed": int(request.seed),
        "stop_token_ids": [int(t) for t in request.stop_token_ids],
        "include_stop_str_in_output": True,
        "detokenize": False,
    }
    if request.greedy:
        kwargs["top_k"] = 1
    else:
        kwargs["temperature"] = float(request.temperature)
        kwargs["top_p"] = min(float(request.top_p), 1.0)
        if request.top_k > 0:
            kwargs["top_k"] = int(request.top_k)
    return kwargs


def _import_trtllm(engine_dir: bool) -> tuple[Any, Any]:
    """(the ``LLM`` class for this kind of model, ``tensorrt_llm`` itself)."""
    try:
        import tensorrt_llm

        if engine_dir:
            from tensorrt_llm._tensorrt_engine import LLM
        else:
            from tensorrt_llm import LLM
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return LLM, tensorrt_llm


def _speculative_config(llmapi: Any, spec: dict[str, Any]) -> Any:
    kind = spec["kind"]
    if kind == "eagle3":
        return llmapi.EagleDecodingConfig(max_draft_len=int(spec.get("max_draft_len", 3)),
                                          speculative_model_dir=spec["model"],
                                          eagle3_one_model=bool(spec.get("one_model", True)))
    if kind == "draft_target":
        return llmapi.DraftTargetDecodingConfig(max_draft_len=int(spec.get("max_draft_len", 4)),
                                                speculative_model_dir=spec["model"])
    if kind == "ngram":
        return llmapi.NGramDecodingConfig(max_draft_len=int(spec.get("max_draft_len", 4)))
    return llmapi.MTPDecodingConfig(num_nextn_predict_layers=int(spec.get("layers", 1)))


def _gpu_bundle_indices() -> str | None:
    """The indices of the GPU bundles of the placement group this actor runs in, for
    ``TRTLLM_RAY_BUNDLE_INDICES`` (None outside a placement group)."""
    try:
        from ray.util import get_current_placement_group
    except ImportError:
        return None
    group = get_current_placement_group()
    if group is None:
        return None
    return ",".join(str(i) for i, spec in enumerate(group.bundle_specs) if spec.get("GPU", 0) > 0) or None


class TRTLLMEngine(LibraryEngine[TRTLLMEngineConfig]):
    """`Engine` over TensorRT-LLM's ``LLM`` (see the module docstring); a request's handle is its
    ``RequestOutput``."""

    backend = "trtllm"
    config_class = TRTLLMEngineConfig
    room_name = "max_seq_len"
    abort_reason = "cancelled"

    def __init__(self, config: TRTLLMEngineConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self.llm_args: dict[str, Any] = {}
        self._params: Any = None

    # ------------------------------------------------------------------ LibraryEngine hooks

    async def _load(self) -> None:
        """Build the ``LLM`` (spawns the TP ranks or Ray workers) and load the tokenizer."""
        path = resolve_model_path(self.config.model)
        engine_dir = is_engine_dir(path)
        llm_cls, trtllm = _import_trtllm(engine_dir)
        from tensorrt_llm import llmapi

        gpus = visible_gpu_count()
        if self.config.orchestrator == "ray":
            indices = _gpu_bundle_indices()
            if indices is None:
                raise RuntimeError("orchestrator 'ray' needs the engine actor in a placement group with one "
                                   "bundle per GPU: set engine.gpu_bundles to 'per-gpu'")
            os.environ["TRTLLM_RAY_BUNDLE_INDICES"] = indices
            gpus = len(indices.split(","))
        if self.config.tokenizer is None and engine_dir and not (Path(path) / "tokenizer_config.json").exists():
            raise ValueError(f"the engine dir {path} holds no tokenizer: set the backend option 'tokenizer'")
        kwargs = llm_kwargs(self.config, path, gpus, engine_dir)
        self.llm_args = dict(kwargs)
        kwargs["kv_cache_config"] = llmapi.KvCacheConfig(**kwargs.pop("_kv_cache"))
        if "_speculative" in kwargs:
            kwargs["speculative_config"] = _speculative_config(llmapi, kwargs.pop("_speculative"))
        # On the actor's loop: generate_async must later be called from this running loop.
        self.llm = llm_cls(**kwargs)
        from transformers import AutoTokenizer

        self.tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, kwargs["tokenizer"])
        self._params = trtllm.SamplingParams

    def _shutdown(self, llm: Any) -> None:
        llm.shutdown()

    def _room(self) -> int:
        return self.config.max_seq_len

    def _submit(self, request: GenerationRequest, max_tokens: int) -> Any:
        params = self._params(**sampling_kwargs(request, max_tokens))
        return self.llm.generate_async(list(request.prompt_ids), params, streaming=True)

    def _read(self, output: Any) -> Output:
        completion = output.outputs[0]
        return [int(t) for t in completion.token_ids_diff], completion.finish_reason, completion.stop_reason

    def _stop(self, request: GenerationRequest, new: list[int], stop_reason: Any) -> tuple[list[int], int | None]:
        if isinstance(stop_reason, int) and stop_reason in request.stop_token_ids:
            if not new or new[-1] != stop_reason:
                new = [*new, stop_reason]  # the tool loop's context must hold the stop token
            return new, stop_reason
        return new, None  # EOS

    async def _abort(self, request_id: str, handle: Any) -> None:
        handle.abort()  # the stream then drains to its final "cancelled" output

    async def _release(self, handle: Any, finished: bool) -> None:
        if not finished:  # aborted and left unread: read it to the end, so its resources are released
            await _drain(handle)

    def max_concurrency(self) -> int:
        return self.config.max_concurrency or self.config.max_batch_size


async def _drain(out: Any, timeout_s: float = 30.0) -> None:
    """Read an aborted request to its final output, so its resources are released."""
    async def read() -> None:
        async for update in out:
            if update.outputs[0].finish_reason is not None:
                return

    try:
        await asyncio.wait_for(read(), timeout_s)
    except Exception:  # a timeout or a dead executor: nothing left to release here
        pass

"""The ``vllm`` backend: vLLM's ``AsyncLLM`` (V1 engine) inside the engine actor.

Built against vLLM 0.25.0 (the release pinned to the GPU image's torch 2.11 /
CUDA 13); the ``[vllm]`` extra allows 0.25.x. ``vllm`` is imported only in
``start()``, so this module imports on any machine; without vLLM, ``start()``
raises an ``ImportError`` that says how to install it.

What the backend does with vLLM's API, and why:

Requests
    One vLLM request per ``GenerationRequest`` (one segment of one sample),
    with ``n=1`` and the request's own ``seed``; token ids in
    (``{"prompt_token_ids": [...]}``) and out (``detokenize=False``,
    ``output_kind=DELTA``): the backend never re-tokenises what the solver
    holds. ``max_tokens`` is always explicit (clamped so prompt plus
    generation fits ``max_model_len``); the code-end token goes in
    ``stop_token_ids``. vLLM includes a stop token (and EOS) in the output
    token ids, as the solver's tool loop expects. Temperature 0 is sent only
    for ``greedy=True``; ``temperature <= 0`` without it is an ``error`` delta.
    ``generation_config="vllm"`` by default, so the model's own
    ``generation_config.json`` cannot silently change the solver's sampling.

Cancellation
    ``cancel(id)`` calls ``AsyncLLM.abort(id)``: the output processor drops the
    request and puts a final ``finish_reason="abort"`` output on its stream
    (which ends ``cancelled`` at once), and the engine core removes the request
    from its scheduler and frees its KV blocks before its next step. With
    prefix caching on, the freed blocks' contents stay reusable until evicted.
    ``cache_stats()`` reports what the scheduler last said (running requests,
    KV-cache usage, prefix-cache hits), read from a stat logger installed in
    the engine; ``jobs/gpu_smoke.py`` uses it to verify that aborted sequences
    leave the scheduler and give their blocks back. A consumer that stops
    iterating also aborts its request.

Placement
    The engine actor holds its GPUs (``raysolve.runtime.placement``: one GPU for
    tp=1, one bundle of tp GPUs for tp>1); ``tensor_parallel_size=None`` means
    "every GPU this process sees", and for tp>1 the executor is vLLM's
    multiprocessing one, whose workers inherit the actor's
    ``CUDA_VISIBLE_DEVICES`` and so land on exactly the actor's GPUs. (vLLM
    would pick its Ray executor when it finds itself in a placement group;
    that would schedule new workers instead of using the GPUs the actor holds.)

vLLM 0.25 logs a deprecation warning for prompts passed as ``{"prompt_token_ids": ...}``
(it wants its renderer's output); that path still works in 0.25.x, which is all the
``[vllm]`` extra allows, and moving to the renderer is the first thing to check when
widening the range.

Benchmarking
    ``forced_length=True`` ignores EOS and the stop tokens, so every segment
    runs to ``max_tokens``: fixed-length work for throughput comparisons.
    Never use it to solve problems.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

from raysolve.core.protocols import GenerationRequest
from raysolve.engines.adapter import LibraryEngine, Output
from raysolve.engines.common import TINY, resolve_model_path, visible_gpu_count

__all__ = ["VLLMEngine", "VLLMEngineConfig", "engine_kwargs", "sampling_kwargs"]

VLLM_RANGE = ">=0.25,<0.26"
_INSTALL_HINT = (
    "the 'vllm' engine backend needs vLLM " + VLLM_RANGE + ": pip install 'raysolve[vllm]' "
    "(on an offline GPU machine see docs in README: 'Running on GPUs with vLLM')"
)


@dataclass
class VLLMEngineConfig:
    """Options of the ``vllm`` backend (``EngineConfig.options`` in the solver config)."""

    model: str = TINY
    """Model directory or hub id; ``"tiny"``: the shipped tiny model; ``"random-tiny"``: the test model."""
    tokenizer: str | None = None
    """Tokenizer directory; None: the model's."""
    tensor_parallel_size: int | None = None
    """None: every GPU this process sees (the GPUs its placement gave the engine actor)."""
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.90
    """Share of each GPU's memory vLLM may take (weights, activations, KV cache)."""
    max_model_len: int = 4096
    """Prompt plus generated tokens of one request; a segment's ``max_tokens`` is clamped to fit."""
    max_num_seqs: int = 256
    """Sequences vLLM schedules at once."""
    max_concurrency: int | None = None
    """Samples the coordinator keeps in flight on this engine; None: ``max_num_seqs``."""
    enable_prefix_caching: bool = True
    """Sibling samples share the prompt's KV blocks."""
    enforce_eager: bool = False
    """True: no CUDA graphs (faster start-up, slower decoding)."""
    seed: int = 0
    generation_config: str = "vllm"
    """``"vllm"``: ignore the model's generation_config.json sampling defaults; ``"auto"``: use them."""
    distributed_executor_backend: str | None = None
    """None: ``"mp"`` for tp>1 (workers inherit the actor's GPUs), vLLM's choice for tp=1."""
    forced_length: bool = False
    """BENCHMARKING ONLY: ignore EOS and stop tokens, every segment runs to ``max_tokens``."""
    engine_args: dict[str, Any] = field(default_factory=dict)
    """Any further ``vllm.AsyncEngineArgs`` fields, passed through unchanged."""


def engine_kwargs(config: VLLMEngineConfig, model_path: str, gpus: int) -> dict[str, Any]:
    """The ``AsyncEngineArgs`` fields for ``config`` on a process that sees ``gpus`` GPUs."""
    tp = config.tensor_parallel_size or max(1, gpus)
    if gpus and tp > gpus:
        raise ValueError(
            f"tensor_parallel_size={tp} but this engine sees {gpus} GPU(s); "
            "set engine.num_gpus to the tensor-parallel size so the actor reserves them"
        )
    backend = config.distributed_executor_backend or ("mp" if tp > 1 else None)
    kwargs: dict[str, Any] = {
        "model": model_path,
        "tokenizer": config.tokenizer or model_path,
        "tensor_parallel_size": tp,
        "dtype": config.dtype,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "max_model_len": config.max_model_len,
        "max_num_seqs": config.max_num_seqs,
        "enable_prefix_caching": config.enable_prefix_caching,
        "enforce_eager": config.enforce_eager,
        "seed": config.seed,
        "generation_config": config.generation_config,
        "disable_log_stats": True,  # our own stat logger still gets the scheduler stats
    }
    if backend is not None:
        kwargs["distributed_executor_backend"] = backend
    kwargs.update(config.engine_args)
    return kwargs


def sampling_kwargs(request: GenerationRequest, max_tokens: int, forced_length: bool = False) -> dict[str, Any]:
    """The ``vllm.SamplingParams`` fields for one segment (``output_kind`` is added by the engine)."""
    kwargs: dict[str, Any] = {
        "n": 1,
        "max_tokens": max_tokens,
        "seed": int(request.seed),
        "detokenize": False,
        "skip_special_tokens": False,
    }
    if request.greedy:
        kwargs.update(temperature=0.0)
    else:
        kwargs.update(
            temperature=float(request.temperature),
            top_p=min(float(request.top_p), 1.0),
            top_k=int(request.top_k),  # 0 disables top-k in vLLM, as in ours
        )
    if forced_length:
        kwargs.update(ignore_eos=True, stop_token_ids=[])
    else:
        kwargs["stop_token_ids"] = [int(t) for t in request.stop_token_ids]
    return kwargs


class _SchedulerTap:
    """What the engine's scheduler last reported (filled by a vLLM stat logger)."""

    def __init__(self) -> None:
        self.running = 0
        self.waiting = 0
        self.kv_cache_usage = 0.0
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.updates = 0
        self.updated_at = 0.0

    def record(self, stats: Any) -> None:
        self.running = int(stats.num_running_reqs)
        self.waiting = int(stats.num_waiting_reqs)
        self.kv_cache_usage = float(stats.kv_cache_usage)
        prefix = getattr(stats, "prefix_cache_stats", None)
        if prefix is not None:
            self.prefix_queries += int(getattr(prefix, "queries", 0))
            self.prefix_hits += int(getattr(prefix, "hits", 0))
        self.updates += 1
        self.updated_at = time.monotonic()


def _stat_logger_factory(tap: _SchedulerTap, base: type) -> Any:
    """A per-engine ``StatLoggerFactory`` whose loggers write into ``tap``."""

    class TapLogger(base):  # type: ignore[misc, valid-type]
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self.engine_index = engine_index

        def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0) -> None:
            if scheduler_stats is not None:
                tap.record(scheduler_stats)

        def log_engine_initialized(self) -> None:
            pass

    return TapLogger


def _import_vllm() -> Any:
    try:
        import vllm
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.async_llm import AsyncLLM
        from vllm.v1.metrics.loggers import StatLoggerBase
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return vllm, AsyncLLM, RequestOutputKind, StatLoggerBase


class VLLMEngine(LibraryEngine[VLLMEngineConfig]):
    """`Engine` over vLLM's ``AsyncLLM`` (see the module docstring); a request's handle is its output generator."""

    backend = "vllm"
    config_class = VLLMEngineConfig
    room_name = "max_model_len"
    abort_reason = "abort"

    def __init__(self, config: VLLMEngineConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self.engine_args: dict[str, Any] = {}
        self._vllm: Any = None
        self._delta_kind: Any = None
        self._tap = _SchedulerTap()
        self._probes = 0

    # ------------------------------------------------------------------ LibraryEngine hooks

    async def _load(self) -> None:
        """Start vLLM (its engine core process and workers) and load the tokenizer."""
        vllm, async_llm, output_kind, stat_logger_base = _import_vllm()
        from transformers import AutoTokenizer

        # Workers forked from a process that has touched CUDA cannot use it; vLLM's own advice is spawn.
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        path = resolve_model_path(self.config.model)
        self.engine_args = engine_kwargs(self.config, path, visible_gpu_count())
        args = vllm.AsyncEngineArgs(**self.engine_args)
        factory = _stat_logger_factory(self._tap, stat_logger_base)
        # Built on the running loop, as vLLM's own servers do (its client binds its queues and
        # sockets to it). This blocks the loop for the start-up (engine core process, weights,
        # CUDA graphs: a minute or more); nothing else runs on the engine actor until it is ready.
        self.llm = async_llm.from_engine_args(args, stat_loggers=[factory])
        self.tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, self.engine_args["tokenizer"])
        self._vllm = vllm
        self._delta_kind = output_kind.DELTA

    def _shutdown(self, llm: Any) -> None:
        llm.shutdown()

    def _room(self) -> int:
        return self.config.max_model_len

    def _submit(self, request: GenerationRequest, max_tokens: int) -> Any:
        params = self._vllm.SamplingParams(
            **sampling_kwargs(request, max_tokens, self.config.forced_length), output_kind=self._delta_kind
        )
        return self.llm.generate({"prompt_token_ids": list(request.prompt_ids)}, params, request.request_id)

    def _read(self, output: Any) -> Output:
        completion = output.outputs[0]
        return list(completion.token_ids), completion.finish_reason, completion.stop_reason

    def _stop(self, request: GenerationRequest, new: list[int], stop_reason: Any) -> tuple[list[int], int | None]:
        # vLLM includes the stop token (and EOS) in the output; its stop_reason is None for EOS.
        return new, stop_reason if isinstance(stop_reason, int) else (new[-1] if new else None)

    async def _abort(self, request_id: str, handle: Any) -> None:
        # The output processor puts a final "abort" output on the stream; the scheduler frees the blocks.
        if self.llm is not None:
            await self.llm.abort(request_id)

    async def _release(self, handle: Any, finished: bool) -> None:
        await handle.aclose()

    # ------------------------------------------------------------------ Engine and diagnostics

    def max_concurrency(self) -> int:
        return self.config.max_concurrency or self.config.max_num_seqs

    async def cache_stats(self, fresh: bool = False) -> dict[str, float]:
        """The scheduler's last report: ``running``, ``waiting`` requests, ``kv_cache_usage`` (0–1),
        cumulative ``prefix_cache_queries``/``prefix_cache_hits`` (tokens), and its age.

        The scheduler reports after each step, and an idle engine takes none, so the last
        report can predate the final aborts. ``fresh=True`` first runs a one-token probe
        request, whose step reports the scheduler as it is now (the probe already gone)."""
        if fresh and self.llm is not None:
            await self._probe()
        tap = self._tap
        return {
            "running": tap.running,
            "waiting": tap.waiting,
            "kv_cache_usage": tap.kv_cache_usage,
            "prefix_cache_queries": tap.prefix_queries,
            "prefix_cache_hits": tap.prefix_hits,
            "updates": tap.updates,
            "age_s": time.monotonic() - tap.updated_at if tap.updates else -1.0,
        }

    async def _probe(self) -> None:
        self._probes += 1
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, detokenize=False,
                                           output_kind=self._delta_kind)
        token = self.tokenizer.eos_token_id or 0
        async for _ in self.llm.generate({"prompt_token_ids": [int(token)]}, params, f"raysolve-probe-{self._probes}"):
            pass

"""`HFEngine`: transformers' continuous-batching manager behind the `Engine` protocol.

Built against transformers 5.23, also tested with 5.17 on CPU
(``transformers.generation.continuous_batching``):
``model.init_continuous_batching(generation_config=, continuous_batching_config=)``
returns a ``ContinuousBatchingManager`` whose background thread schedules and
runs the batches; requests go in with ``manager.add_request(input_ids,
request_id=, max_new_tokens=, streaming=True, eos_token_id=, **kwargs)``, come
out as cumulative ``GenerationOutput``s, and ``manager.cancel_request(id)``
drops a request and frees its cache blocks at the loop's next step.

What the manager does and does not do, and what this module adds:

Sampling and seeds
    The manager has no per-request seed; the engine samples itself, in a logits
    processor installed in the manager (``sampler.py`` says how and what is
    guaranteed). ``temperature <= 0`` without ``greedy`` is rejected with an
    ``error`` delta.

Stop tokens
    The manager supports per-request EOS sets (``add_request(eos_token_id=[...])``),
    so EOS (from the model's generation config, or the tokenizer) plus the
    request's ``stop_token_ids`` are passed as that request's EOS set: the
    manager stops the request on the stop token (no token after it is ever
    produced) and frees its blocks. The stop token is included in the final
    delta's ``token_ids`` and reported in ``Delta.stop`` with
    ``finish_reason="stop"``. ``max_tokens`` ends with ``"length"`` after
    exactly ``max_tokens`` tokens (``"stop"`` if the last one is a stop token).
    ``max_tokens`` is clamped so that prompt plus generation fits the whole
    cache (``HFEngine.capacity_tokens``): the manager's scheduler raises on a
    request it can never fit, which kills its thread and every request in it.

Cancellation
    ``cancel(request_id)`` calls ``manager.cancel_request`` (the request leaves
    the scheduler and its blocks are freed before the manager's next forward
    pass) and ends the ``generate`` stream at once with
    ``Delta(finish_reason="cancelled")``; tokens produced after that are
    dropped. A consumer that stops iterating (``aclose``, task cancellation)
    cancels its request the same way. ``cancel`` for an id whose ``generate``
    has not started yet is remembered for a while, and that stream then ends
    ``cancelled`` without running. With prefix sharing on, the complete blocks
    of a finished or cancelled request stay in the cache as reusable prefix
    blocks (evicted under memory pressure); see `HFEngine.cache_stats`.

Threads and asyncio
    The manager's thread puts outputs on its output queue; one bridge thread of
    this engine drains it (``manager.get_result``) and hands them to the event
    loop of each request with one ``loop.call_soon_threadsafe`` per batch; the
    coroutine side only ever waits on an ``asyncio.Event``. Nothing blocks the
    event loop: model loading and shutdown run in worker threads. (The
    manager's own ``register_result_handler`` is not used: it never removes
    the handler of a cancelled request, and a late output then lands on the
    shared queue or on a closed loop.)

Not used, on purpose: asynchronous double-buffered batching and CUDA graphs
(forced off: the per-request token index and the host-side filter switch
assume the synchronous loop), ``num_return_sequences`` forking, logprobs.
The attention default is ``"sdpa"`` (``compat.attn_implementation``). On CUDA,
cuDNN's SDPA backend is switched off by default (``HFEngineConfig.cudnn_sdpa``).
What is read of transformers' internals, per release: ``compat.py``.

torch and transformers are imported in ``start()`` only, so this module imports cheaply.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator

from raysolve.core.protocols import Delta, FinishReason, GenerationRequest
from raysolve.engines.common import TINY, EarlyCancels, fit_to_room, request_counters, resolve_model_path
from raysolve.engines.hf import compat

if TYPE_CHECKING:
    import torch

__all__ = ["HFEngine", "HFEngineConfig", "sampling_kwargs"]


@dataclass
class HFEngineConfig:
    """Options of the ``hf`` backend (``EngineConfig.options`` in the solver config)."""

    model: str = TINY
    """Model directory (or a hub id already in the local HF cache); ``"tiny"``: the shipped tiny
    model (the embedded default); ``"random-tiny"``: a randomly initialised one, for tests."""
    tokenizer: str | None = None
    """Tokenizer directory; None: the model's."""
    device: str = "auto"
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    dtype: str = "auto"
    """``"auto"`` (float32 on CPU, bfloat16 on CUDA), ``"float32"``, ``"bfloat16"`` or ``"float16"``."""
    attn_implementation: str = "sdpa"
    """``"sdpa"`` (``"paged|sdpa"`` is accepted), ``"paged|eager"``, or a flash implementation on CUDA."""
    max_concurrency: int = 32
    """Requests the coordinator should keep in flight on this engine."""
    max_model_len: int = 4096
    """Prompt plus generated tokens one request is expected to reach; sizes the default cache."""
    block_size: int = 64
    """Tokens per cache block (the manager's ``page_size``); also the prefix-sharing granularity."""
    num_blocks: int | None = None
    """Cache capacity in blocks. None: ``max_concurrency * ceil(max_model_len / block_size)`` plus 10%,
    except with flash attention on CUDA, where transformers fills the free memory (eager/SDPA read a
    ``max_batch_tokens x cache tokens`` mask every step, so their cache must stay workload-sized)."""
    max_batch_tokens: int | None = None
    """Tokens per forward pass (decode tokens plus prefill chunks). None: 512 on CPU, 2048 on CUDA
    with eager/SDPA, transformers' default (8192) with flash attention."""
    max_memory_percent: float | None = None
    """Share of free memory the manager may use when it infers sizes; None: its default."""
    max_requests_per_batch: int | None = None
    """Cap on sequences per forward pass; None: transformers' default (bounded by max_batch_tokens)."""
    prefix_sharing: bool = True
    """Share the cache blocks of common prompt prefixes (the samples of one problem)."""
    torch_threads: int | None = None
    """``torch.set_num_threads`` for this (engine) process. None: 1 on CPU, untouched on CUDA. One
    thread is much faster for tiny models: on a 2-core VM with one core busy elsewhere, two intra-op
    threads made a 128x384 matmul 40x slower and the engine 30x slower (130 vs 4,000 tokens/s)."""
    cudnn_sdpa: bool = False
    """Let SDPA use cuDNN attention on CUDA. Off by default (process-wide): cuDNN builds a plan per new
    shape and continuous batching changes shapes every step; on an H200 that made bf16 steps 8x slower."""
    random_model_seed: int = 0
    """Seed of the ``"random-tiny"`` placeholder."""
    manager_seed: int = 0
    """Seed the manager gives the global torch RNG (sampling does not use it)."""
    cuda_graph: bool = False
    """Capture CUDA graphs for decoding steps (CUDA only; ~1,900 vs ~1,530 tokens/s on an H200
    for a 1.5B model at 256 requests, ``../shared/docs/gpu.md``). Asynchronous batching and
    compilation stay off: slower or crashing there."""


def sampling_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """The request's options for `SeededSampling` (``add_request`` keyword arguments): the manager
    itself stays in argmax mode, so these are all that makes a request sample."""
    kwargs: dict[str, Any] = {"seed": int(request.seed), "greedy": bool(request.greedy)}
    if not request.greedy:
        kwargs.update(temperature=float(request.temperature), top_p=min(float(request.top_p), 1.0),
                      top_k=int(request.top_k))
    return kwargs


@dataclass(eq=False)
class _Stream:
    request_id: str
    loop: asyncio.AbstractEventLoop
    stops: frozenset[int]
    event: asyncio.Event = field(default_factory=asyncio.Event)
    latest: Any = None  # newest GenerationOutput (cumulative)
    failure: str | None = None  # set when the engine itself fails the stream
    cancelled: bool = False
    done: bool = False

    def wake(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.event.set()
        else:
            try:
                self.loop.call_soon_threadsafe(self.event.set)
            except RuntimeError:  # its loop is closed: nobody is waiting any more
                pass


class HFEngine:
    """`Engine` over transformers' continuous-batching manager (see the module docstring)."""

    def __init__(self, config: HFEngineConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise TypeError("pass either an HFEngineConfig or keyword options, not both")
        self.config = config if config is not None else HFEngineConfig(**options)
        self.model: Any = None
        self.tokenizer: Any = None
        self.manager: Any = None
        self.model_path: str | None = None
        self.eos_token_ids: tuple[int, ...] = ()
        self.vocab_size = 0
        self.capacity_tokens = 0
        """Tokens the whole cache holds; prompt plus ``max_tokens`` of one request is clamped to it."""
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()
        self._early_cancels = EarlyCancels()
        self._closing = threading.Event()
        self._bridge: threading.Thread | None = None
        self._start_lock = asyncio.Lock()
        self._counters = request_counters()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load tokenizer and model, create and start the manager (in a worker thread). Idempotent."""
        async with self._start_lock:
            if self.manager is None:
                await asyncio.to_thread(self._start_sync)

    def _start_sync(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        from raysolve.engines.hf.sampler import SeededSampling

        cfg = self.config
        device = _resolve_device(cfg.device)
        threads = cfg.torch_threads if cfg.torch_threads is not None else (1 if device.type == "cpu" else None)
        if threads:
            torch.set_num_threads(threads)
        if device.type == "cuda" and not cfg.cudnn_sdpa:
            torch.backends.cuda.enable_cudnn_sdp(False)
        dtype = _resolve_dtype(cfg.dtype, device)
        attn = compat.attn_implementation(cfg.attn_implementation)

        path = resolve_model_path(cfg.model, random_seed=cfg.random_model_seed)
        self.model_path = path
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer or path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn)
        model = model.to(device).eval()
        self.model = model
        self.vocab_size = int(model.config.get_text_config().vocab_size)

        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        eos_list = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_token_ids = tuple(int(e) for e in eos_list if e is not None and e >= 0)
        if not self.eos_token_ids:
            raise ValueError(f"{path}: no EOS token in the generation config or the tokenizer")

        gen_config = GenerationConfig(
            do_sample=False,  # argmax over the scores `SeededSampling` returns
            eos_token_id=list(self.eos_token_ids),
            pad_token_id=model.generation_config.pad_token_id,
            max_new_tokens=cfg.max_model_len,
        )
        # Eager/SDPA attention reads a static [max_batch_tokens, cache tokens] mask, so letting the manager
        # fill the GPU with cache makes that mask tens of GB (seen: 3.8 M cache tokens on an H200, and
        # 10x slower steps in bf16). Size the cache from the workload instead, unless attention is flash.
        num_blocks, max_batch_tokens = cfg.num_blocks, cfg.max_batch_tokens
        needs_mask = "flash" not in model.config._attn_implementation
        if num_blocks is None and (device.type == "cpu" or needs_mask):
            per_request = math.ceil(cfg.max_model_len / cfg.block_size)
            num_blocks = math.ceil(cfg.max_concurrency * per_request * 1.1)
        if max_batch_tokens is None and (device.type == "cpu" or needs_mask):
            max_batch_tokens = 512 if device.type == "cpu" else 2048
        cb_config = compat.continuous_batching_config(
            page_size=cfg.block_size,  # transformers >= 5.17 (deprecated alias: block_size)
            num_blocks=num_blocks,
            max_batch_tokens=max_batch_tokens,
            max_memory_percent=cfg.max_memory_percent,
            max_requests_per_batch=cfg.max_requests_per_batch,
            allow_block_sharing=cfg.prefix_sharing,
            use_async_batching=False,
            use_cuda_graph=cfg.cuda_graph and device.type == "cuda",
            auto_switch_to_flash=False,  # keep the configured attention (absent before 5.2x)
            return_logprobs=False,
            seed=cfg.manager_seed,
        )
        manager = model.init_continuous_batching(generation_config=gen_config, continuous_batching_config=cb_config)
        # The manager builds its batch processor (which takes this list) when its thread starts.
        manager.logit_processor = SeededSampling()
        manager.start()
        # The cache is created in the manager's thread: wait for it, so that sizing errors surface
        # here and the capacity is known before the first request.
        deadline = time.monotonic() + 120.0
        while manager.batch_processor is None:
            if not manager.is_running() or time.monotonic() > deadline:
                error = manager.background_thread_status.fatal_error
                compat.stop_manager(manager)
                raise RuntimeError(f"the continuous-batching manager failed to start: {error!r}")
            time.sleep(0.005)
        self.capacity_tokens = compat.capacity_tokens(manager.batch_processor.cache)
        self.manager = manager
        self._closing.clear()
        self._bridge = threading.Thread(target=self._bridge_loop, name="hf-engine-bridge", daemon=True)
        self._bridge.start()

    async def close(self) -> None:
        """Stop the manager thread and the bridge; open streams end with ``error``."""
        if self.manager is None:
            return
        self._closing.set()
        manager, self.manager = self.manager, None
        await asyncio.to_thread(compat.stop_manager, manager)
        if self._bridge is not None:
            await asyncio.to_thread(self._bridge.join, 5.0)
            self._bridge = None
        self._fail_all("engine closed")

    # ------------------------------------------------------------------ protocol

    def max_concurrency(self) -> int:
        return self.config.max_concurrency

    def stats(self) -> dict[str, float]:
        with self._lock:
            active = len(self._streams)
        return {**{k: float(v) for k, v in self._counters.items()}, "active": float(active)}

    async def cancel(self, request_id: str) -> None:
        with self._lock:
            stream = self._streams.get(request_id)
            if stream is None:
                self._early_cancels.add(request_id)
                return
            if stream.done or stream.cancelled:
                return
            stream.cancelled = True
        self._counters["requests_cancelled"] += 1
        if self.manager is not None:
            self.manager.cancel_request(request_id)
        stream.wake()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        rid = request.request_id
        dead = self.manager is None or not self.manager.is_running()
        problem = self._validate(request)
        if problem is None and dead:
            problem = "the generation thread has stopped (see the log)"
        if problem is not None:
            self._counters["requests_failed"] += 1
            yield Delta(finish_reason="error", error=problem, error_kind="engine_dead" if dead else "bad_request")
            return
        stops = frozenset(self.eos_token_ids) | frozenset(int(t) for t in request.stop_token_ids)
        stream = _Stream(rid, asyncio.get_running_loop(), stops)
        with self._lock:
            if rid in self._streams:
                duplicate = True
            else:
                duplicate = False
                early = self._early_cancels.pop(rid)
                if early is None:
                    self._streams[rid] = stream
        if duplicate:
            self._counters["requests_failed"] += 1
            yield Delta(finish_reason="error", error=f"request id {rid!r} is already running")
            return
        self._counters["requests_started"] += 1
        if early is not None:
            self._counters["requests_cancelled"] += 1
            yield Delta(finish_reason="cancelled")
            return
        # One request that outgrows the whole cache would make the manager's scheduler raise, which
        # kills its thread and every request with it: clamp, and report "length" at the clamp.
        max_tokens, refused = fit_to_room(request, self.capacity_tokens, "the cache (raise num_blocks)")
        if refused is not None:
            with self._lock:
                self._streams.pop(rid, None)
            self._counters["requests_failed" if refused.finish_reason == "error" else "requests_finished"] += 1
            yield refused
            return

        sent = 0
        try:
            added = self.manager.add_request(
                list(request.prompt_ids),
                request_id=rid,
                max_new_tokens=max_tokens,
                streaming=True,
                eos_token_id=sorted(stops),
                **sampling_kwargs(request),
            )
            if added is None:
                stream.done = True
                self._counters["requests_failed"] += 1
                yield Delta(finish_reason="error", error="the generation manager is not accepting requests",
                            error_kind="engine_dead")
                return
            while True:
                await stream.event.wait()
                stream.event.clear()
                if stream.cancelled:
                    yield Delta(finish_reason="cancelled")
                    return
                if stream.failure is not None:
                    stream.done = True
                    self._counters["requests_failed"] += 1
                    yield Delta(finish_reason="error", error=stream.failure, error_kind="engine_dead")
                    return
                out = stream.latest
                tokens = out.generated_tokens[:max_tokens]
                new = list(tokens[sent:])
                sent = len(tokens)
                status = int(out.status)
                if status == compat.FAILED:
                    stream.done = True
                    self._counters["tokens_generated"] += len(new)
                    self._counters["requests_failed"] += 1
                    yield Delta(token_ids=new, finish_reason="error", error=out.error or "generation failed")
                    return
                if status == compat.FINISHED:
                    stream.done = True
                    last = tokens[-1] if tokens else None
                    reason: FinishReason = "stop" if last in stops else "length"
                    self._counters["tokens_generated"] += len(new)
                    self._counters["requests_finished"] += 1
                    yield Delta(token_ids=new, finish_reason=reason, stop=last if reason == "stop" else None)
                    return
                if new:
                    self._counters["tokens_generated"] += len(new)
                    yield Delta(token_ids=new)
        finally:
            with self._lock:
                if self._streams.get(rid) is stream:
                    del self._streams[rid]
                abandoned = not stream.done and not stream.cancelled
                stream.done = True
            if abandoned:  # the consumer stopped listening (aclose / task cancelled / error)
                self._counters["requests_cancelled"] += 1
                if self.manager is not None:
                    self.manager.cancel_request(rid)

    # ------------------------------------------------------------------ diagnostics

    async def cache_stats(self) -> dict[str, int]:
        """Cache occupancy, read while the manager's loop is paused between two steps.

        ``blocks_total``; ``blocks_free`` (allocatable now); ``blocks_cached`` (held by no
        request, kept as reusable prefix blocks, evictable); ``requests_holding_blocks``.
        """
        manager = self.manager
        if manager is None:
            raise RuntimeError("engine not started")
        return await asyncio.to_thread(compat.cache_stats, manager)

    # ------------------------------------------------------------------ internals

    def _validate(self, request: GenerationRequest) -> str | None:
        if self.manager is None:
            return "engine not started (or closed)"
        if not request.prompt_ids:
            return "empty prompt"
        if min(request.prompt_ids) < 0 or max(request.prompt_ids) >= self.vocab_size:
            return f"prompt token ids must lie in [0, {self.vocab_size})"
        if not request.greedy:
            if not request.temperature > 0:
                return "temperature must be > 0 (use greedy=True for argmax decoding)"
            if not request.top_p > 0:
                return "top_p must be > 0"
            if request.top_k < 0:
                return "top_k must be >= 0"
        return None

    def _bridge_loop(self) -> None:
        """Drain the manager's output queue and wake the streams, one loop callback per batch."""
        manager = self.manager
        while not self._closing.is_set():
            out = manager.get_result(timeout=0.05)
            if out is None:
                if not manager.is_running() and not self._closing.is_set():
                    self._fail_all("the generation thread stopped unexpectedly (see the log)")
                    self._closing.wait(0.05)
                continue
            batch = [out]
            while (more := manager.get_result(timeout=0)) is not None:
                batch.append(more)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Stream, Any]]] = defaultdict(list)
            with self._lock:
                for o in batch:
                    stream = self._streams.get(o.request_id)
                    if stream is not None and not stream.done and not stream.cancelled:
                        by_loop[stream.loop].append((stream, o))
            for loop, items in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_deliver, items)
                except RuntimeError:  # loop closed; its streams went with it
                    pass

    def _fail_all(self, message: str) -> None:
        with self._lock:
            streams = [s for s in self._streams.values() if not s.done and not s.cancelled]
        for stream in streams:
            stream.failure = message
            stream.wake()


def _deliver(items: list[tuple[_Stream, Any]]) -> None:
    for stream, output in items:
        stream.latest = output
        stream.event.set()


def _resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    return device


def _resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    import torch

    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype

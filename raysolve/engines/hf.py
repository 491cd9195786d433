"""The ``hf`` backend: transformers' continuous-batching manager behind the `Engine` protocol.

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
    The manager samples with ``torch.multinomial`` on the process-global RNG
    (seeded once per manager); it has no per-request seed or generator. So the
    engine does its own sampling, in a logits-processor list installed in the
    manager (`_SeededSampling`), and leaves the manager in argmax mode
    (``do_sample=False``): for each request it scales by the request's
    temperature, applies its top-k and top-p, and adds Gumbel noise that is a
    pure function of ``(seed, index of the token in the segment, token id)``
    (a counter-based hash, no RNG state), so that the argmax the manager takes
    is an exact sample from the filtered softmax (Gumbel-max trick).
    Temperature, top-p, top-k, seed and greedy are all per request.

    Guaranteed: a request is never decoded greedily unless ``greedy=True``
    (``temperature <= 0`` without ``greedy`` is rejected with an ``error``
    delta); two requests with different seeds draw independent noise (equal
    only by a 64-bit key collision); the noise for a request does not depend on
    what else is in the batch or on its timing. The same seed and prompt twice
    give the same tokens whenever the model's logits are bitwise equal in both
    runs — always so on CPU in our tests, but batched kernels may round
    differently for different batch compositions (in particular on GPU), and
    a flipped near-tie then changes the continuation. Reproducibility is
    therefore "same seed, same batch layout, same hardware", not absolute
    (seen on an H200: float32 reproduced a sample alone and inside a batch of
    8, bfloat16 did not; the same batch run twice matched in both).

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

Internals relied on
    The sampler replaces ``manager.logit_processor`` before the manager's
    thread builds its batch processor, reads ``RequestState.generated_tokens``
    / ``initial_tokens`` / ``_true_initial_tokens`` for the token index, and
    `HFEngine.cache_stats` reads the paged cache's bookkeeping (both the 5.17
    and the 5.23 layouts).

Not used, on purpose: asynchronous double-buffered batching and CUDA graphs
(forced off: the per-request token index and the host-side filter switch
assume the synchronous loop), ``num_return_sequences`` forking, logprobs.
The attention default is ``"sdpa"``: in transformers 5.23 the ``paged|``
prefix is deprecated except for ``paged|eager`` (SDPA is paged natively), so
``"paged|sdpa"`` is accepted and mapped to ``"sdpa"`` (5.17 adds the prefix
itself). On CUDA, cuDNN's SDPA backend is switched off by default
(``HFEngineConfig.cudnn_sdpa``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import torch
from transformers.generation.continuous_batching.cb_logits_processors import (
    ContinuousBatchingLogitsProcessorList,
)
from transformers.generation.logits_process import LogitsProcessorList

from raysolve.core.protocols import Delta, FinishReason, GenerationRequest
from raysolve.engines.common import TINY, EarlyCancels, fit_to_room, request_counters, resolve_model_path

__all__ = ["HFEngine", "HFEngineConfig"]

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


# --------------------------------------------------------------------------------------------------------------- #
# Per-request seeded sampling
# --------------------------------------------------------------------------------------------------------------- #

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
_HASH_MUL = 0x45D9F3B  # < 2**27, so products of 32-bit values stay far below 2**63 in int64
_TWO_POW_M24 = 1.0 / (1 << 24)


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _to_int32(u: int) -> int:
    return u - (1 << 32) if u & 0x80000000 else u


def _noise_key(seed: int, index: int) -> tuple[int, int]:
    """Two 32-bit words (as signed int32) keyed by (seed, token index)."""
    z = _splitmix64(_splitmix64(seed & _M64) ^ index)
    return _to_int32(z & _M32), _to_int32(z >> 32)


def _hash32_(x: torch.Tensor) -> torch.Tensor:
    """In-place 32-bit integer mix of an int64 tensor holding values in [0, 2**32)."""
    x.bitwise_xor_(x >> 16).mul_(_HASH_MUL).bitwise_and_(_M32)
    x.bitwise_xor_(x >> 16).mul_(_HASH_MUL).bitwise_and_(_M32)
    return x.bitwise_xor_(x >> 16)


def gumbel_noise(key_a: torch.Tensor, key_b: torch.Tensor, vocab_base: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise of shape ``[rows, vocab]``, a pure function of the keys and the token id.

    ``key_a``/``key_b``: int64 ``[rows]`` in [0, 2**32); ``vocab_base``: int64 ``[vocab]`` per-token hashes.
    """
    h = vocab_base.unsqueeze(0) ^ key_a.unsqueeze(1)
    h = _hash32_(h)
    h.bitwise_xor_(key_b.unsqueeze(1))
    h = _hash32_(h)
    u = ((h >> 8).to(torch.float32) + 0.5) * _TWO_POW_M24  # 24 bits, strictly inside (0, 1)
    return -torch.log(-torch.log(u))


class _SeededSampling(ContinuousBatchingLogitsProcessorList):
    """Per-request temperature / top-k / top-p / seeded Gumbel noise, for a manager in argmax mode.

    The manager stores one int32 row per "tensor" for every sequence of a batch and hands
    us the rows of the sequences that sample a token this step, in order. Rows:
    0-1 noise key, 2 temperature (float32 bits), 3 top-p (float32 bits), 4 top-k, 5 greedy.
    """

    ROWS = 6
    KWARGS: dict[str, type] = {"seed": int, "temperature": float, "top_p": float, "top_k": int, "greedy": bool}

    def __init__(self) -> None:
        super().__init__(LogitsProcessorList(), per_request_processors=False, drop_unsupported_processors=True)
        self.tensors_required = self.ROWS
        self.supported_keys = dict(self.KWARGS)
        self.ignored_keys = set()
        self.do_processing = True
        self._filter = False  # set per batch on the host: does any sampled row use top-k / top-p?
        self._vocab_base: dict[tuple[int, str], torch.Tensor] = {}

    def __repr__(self) -> str:
        return "_SeededSampling(per-request seed/temperature/top_k/top_p/greedy)"

    def check_kwargs(self, kwargs: dict) -> None:
        for key, value in kwargs.items():
            expected = self.KWARGS.get(key)
            if expected is None:
                raise ValueError(f"unknown sampling option {key!r}")
            if not isinstance(value, expected):
                raise TypeError(f"sampling option {key!r} must be {expected.__name__}, got {type(value).__name__}")

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        # Only padding rows ever read these: greedy, temperature 1, no filter.
        one = torch.tensor([1.0], dtype=torch.float32).view(torch.int32).item()
        defaults = torch.tensor([0, 0, one, one, 0, 1], dtype=torch.int32)
        int32_tensor.copy_(defaults.view(self.ROWS, 1).to(int32_tensor.device))

    def prepare_tensor_args(self, requests_in_batch: list, arg_storage: torch.Tensor) -> torch.Tensor:
        rows: list[list[int]] = [[], [], [], [], []]
        floats: list[float] = []
        need_filter = False
        for future in requests_in_batch:
            if not future.has_new_token:
                continue
            state = future.state
            kw = state.logit_processor_kwargs
            greedy = kw.get("greedy", False)
            # Index of the token sampled now within the segment. A request the manager had
            # to re-prefill carries its earlier tokens in its prompt (`_true_initial_tokens`).
            index = len(state.generated_tokens)
            true_initial = getattr(state, "_true_initial_tokens", 0)
            if true_initial:
                index += len(state.initial_tokens) - true_initial
            a, b = _noise_key(kw.get("seed", 0), index)
            top_k = kw.get("top_k", 0)
            top_p = kw.get("top_p", 1.0)
            rows[0].append(a)
            rows[1].append(b)
            rows[2].append(top_k)
            rows[3].append(1 if greedy else 0)
            floats.append(1.0 if greedy else kw.get("temperature", 1.0))
            floats.append(top_p)
            if not greedy and (top_k > 0 or top_p < 1.0):
                need_filter = True
        n = len(floats) // 2
        self._filter = need_filter
        if n == 0:
            return arg_storage
        packed = torch.empty((self.ROWS, n), dtype=torch.int32)
        packed[0] = torch.tensor(rows[0], dtype=torch.int32)
        packed[1] = torch.tensor(rows[1], dtype=torch.int32)
        packed[2:4] = torch.tensor(floats, dtype=torch.float32).view(n, 2).t().contiguous().view(torch.int32)
        packed[4] = torch.tensor(rows[2], dtype=torch.int32)
        packed[5] = torch.tensor(rows[3], dtype=torch.int32)
        arg_storage[: self.ROWS, :n] = packed.to(arg_storage.device)
        return arg_storage

    def _base(self, vocab: int, device: torch.device) -> torch.Tensor:
        key = (vocab, str(device))
        base = self._vocab_base.get(key)
        if base is None:
            ids = torch.arange(vocab, dtype=torch.int64, device=device)
            base = _hash32_((ids * 0x9E3779B1 + 0x7F4A7C15) & _M32)
            self._vocab_base[key] = base
        return base

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, args: torch.Tensor) -> torch.Tensor:
        return self.sample_scores(scores, args)

    def sample_scores(self, scores: torch.Tensor, args: torch.Tensor) -> torch.Tensor:
        """Scores whose argmax is each row's sample. ``scores``: float ``[rows, vocab]``."""
        n, vocab = scores.shape
        args = args[:, :n]
        key_a = args[0].to(torch.int64) & _M32
        key_b = args[1].to(torch.int64) & _M32
        temperature = args[2].contiguous().view(torch.float32)
        top_p = args[3].contiguous().view(torch.float32)
        top_k = args[4].to(torch.int64)
        sample = (args[5] == 0).to(scores.dtype)

        scores = scores / temperature.unsqueeze(1)
        if self._filter:
            sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
            ranks = torch.arange(vocab, device=scores.device).unsqueeze(0)
            k = torch.where(top_k > 0, top_k, vocab).unsqueeze(1)
            drop = ranks >= k
            probs = sorted_scores.softmax(dim=-1)
            drop |= (probs.cumsum(dim=-1) - probs) >= top_p.unsqueeze(1)  # the top token always stays
            scores = scores.masked_fill(torch.zeros_like(drop).scatter(1, order, drop), float("-inf"))
        noise = gumbel_noise(key_a, key_b, self._base(vocab, scores.device))
        return scores + noise * sample.unsqueeze(1)


# --------------------------------------------------------------------------------------------------------------- #
# Engine
# --------------------------------------------------------------------------------------------------------------- #


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
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        cfg = self.config
        device = _resolve_device(cfg.device)
        threads = cfg.torch_threads if cfg.torch_threads is not None else (1 if device.type == "cpu" else None)
        if threads:
            torch.set_num_threads(threads)
        if device.type == "cuda" and not cfg.cudnn_sdpa:
            torch.backends.cuda.enable_cudnn_sdp(False)
        dtype = _resolve_dtype(cfg.dtype, device)
        attn = cfg.attn_implementation
        if attn == "paged|sdpa":
            attn = "sdpa"

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
            do_sample=False,  # argmax over the scores `_SeededSampling` returns
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
        cb_options = dict(
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
        known = {f.name for f in dataclasses.fields(ContinuousBatchingConfig)}
        if "page_size" not in known:  # transformers 5.17 still calls it block_size
            cb_options["block_size"] = cb_options.pop("page_size")
        cb_config = ContinuousBatchingConfig(**{k: v for k, v in cb_options.items() if k in known})
        manager = model.init_continuous_batching(generation_config=gen_config, continuous_batching_config=cb_config)
        # The manager builds its batch processor (which takes this list) when its thread starts.
        manager.logit_processor = _SeededSampling()
        manager.start()
        # The cache is created in the manager's thread: wait for it, so that sizing errors surface
        # here and the capacity is known before the first request.
        deadline = time.monotonic() + 120.0
        while manager.batch_processor is None:
            if not manager.is_running() or time.monotonic() > deadline:
                error = manager.background_thread_status.fatal_error
                _stop_manager(manager)
                raise RuntimeError(f"the continuous-batching manager failed to start: {error!r}")
            time.sleep(0.005)
        self.capacity_tokens = _capacity_tokens(manager.batch_processor.cache)
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
        await asyncio.to_thread(_stop_manager, manager)
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
        problem = self._validate(request)
        if problem is not None:
            self._counters["requests_failed"] += 1
            yield Delta(finish_reason="error", error=problem)
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

        sampling: dict[str, Any] = {"seed": int(request.seed), "greedy": bool(request.greedy)}
        if not request.greedy:
            sampling.update(
                temperature=float(request.temperature),
                top_p=min(float(request.top_p), 1.0),
                top_k=int(request.top_k),
            )
        sent = 0
        try:
            added = self.manager.add_request(
                list(request.prompt_ids),
                request_id=rid,
                max_new_tokens=max_tokens,
                streaming=True,
                eos_token_id=sorted(stops),
                **sampling,
            )
            if added is None:
                stream.done = True
                self._counters["requests_failed"] += 1
                yield Delta(finish_reason="error", error="the generation manager is not accepting requests")
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
                    yield Delta(finish_reason="error", error=stream.failure)
                    return
                out = stream.latest
                tokens = out.generated_tokens[:max_tokens]
                new = list(tokens[sent:])
                sent = len(tokens)
                status = int(out.status)
                if status == _FAILED:
                    stream.done = True
                    self._counters["tokens_generated"] += len(new)
                    self._counters["requests_failed"] += 1
                    yield Delta(token_ids=new, finish_reason="error", error=out.error or "generation failed")
                    return
                if status == _FINISHED:
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
        return await asyncio.to_thread(_cache_stats, manager)

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


_FINISHED = 3  # transformers' RequestStatus.FINISHED
_FAILED = 4  # transformers' RequestStatus.FAILED


def _deliver(items: list[tuple[_Stream, Any]]) -> None:
    for stream, output in items:
        stream.latest = output
        stream.event.set()


def _stop_manager(manager: Any) -> None:
    try:
        manager.stop(block=True, timeout=10.0, hard_stop=True)
    finally:
        manager.destroy()


# The paged cache's internals changed between transformers 5.17 (one BlockManager, per-group cache managers)
# and 5.23 (sectors shared by per-attention-type allocators); these two helpers read either layout.


def _capacity_tokens(cache: Any) -> int:
    allocators = getattr(cache, "cache_allocators", None)
    if allocators is not None:  # >= 5.2x
        return min(a.num_blocks * a.tokens_per_page for a in allocators.values())
    return int(cache.num_blocks * cache.block_size)  # 5.17


def _read_cache_stats(cache: Any) -> dict[str, int]:
    holders: set[str] = set()
    allocators = getattr(cache, "cache_allocators", None)
    if allocators is not None:  # >= 5.2x
        for allocator in allocators.values():
            holders.update(rid for rid, blocks in allocator.block_table.items() if blocks)
        cached = sum(len(allocator.ledger.cached_blocks) for allocator in allocators.values())
        free = round(cache.compute_free_capacity(relative=True) * cache.num_blocks)
    else:  # 5.17: "initialised" blocks are unreferenced blocks kept for prefix sharing
        for group in cache.group_cache_managers:
            holders.update(rid for rid, blocks in group.block_table.items() if blocks)
        cached = len(cache._block_manager._init_block_ids)
        free = cache.get_num_free_blocks() - cached
    return {
        "blocks_total": int(cache.num_blocks),
        "blocks_free": int(free),
        "blocks_cached": int(cached),
        "requests_holding_blocks": len(holders),
    }


def _cache_stats(manager: Any) -> dict[str, int]:
    cache = manager.batch_processor.cache
    if hasattr(manager, "pause"):  # >= 5.2x: read between two steps
        with manager.pause():
            return _read_cache_stats(cache)
    for _ in range(100):  # 5.17 cannot pause its loop: retry a read that raced with it
        try:
            return _read_cache_stats(cache)
        except RuntimeError:
            time.sleep(0.001)
    return _read_cache_stats(cache)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    return device


def _resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype

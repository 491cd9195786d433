"""BENCHMARK ENGINE — a load generator, not a model backend. Never use it to solve problems.

It stands in for a fast GPU engine so that the layers above it (engine actors, tool
loop, coordinator, voting, cancellation) can be pushed to the rates such an engine
produces — e.g. 16 actors × 20,000 tokens/s — on a small CPU machine, and their own cost
measured. It behaves like a batched decoder:

- **Throughput.** The engine produces ``tokens_per_s`` in total, shared evenly by the
  requests in flight, each capped at ``request_tokens_per_s`` (a GPU's single-sequence
  speed). Time advances in steps of ``step_s``; tokens reach the consumer in deltas of
  ``delta_tokens`` (and at the end), as a streaming server batches its output.
- **Work.** Each sample's text is drawn from its seed: a length from a lognormal
  distribution (``length_mean``, ``length_sigma``; 0: fixed), and with probability
  ``code_share`` a first segment that is a code call (``print(6 * 7)``), after which the
  next segment gives the answer. The answer is ``answer`` with probability ``accuracy``,
  else a random number below 1000. Text is one token per character (``CharCodec``).
- **Cancellation.** ``cancel`` takes the request out of the batch at once (its share goes
  to the others from the next step) and ends its stream ``cancelled`` at once, as vLLM's
  abort does (its stream ended 0.12 ms after the abort, p50, in ``results/gpu-smoke``).
- EOS, the request's stop tokens and ``max_tokens`` end a segment as on a real engine.

Time comes from a `Clock`: real time by default; tests pass a `VirtualClock`, in which
time passes only when the engine sleeps, so rates and durations are exact whatever the
speed of the machine.

Cost: one timer task per engine; per step, only the requests with a delta or an end due
are touched (a heap on the cumulative per-request token credit), so thousands of
requests per second cost little CPU in the engine itself.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol

from raysolve.core.protocols import Delta, GenerationRequest
from raysolve.engines.common import EarlyCancels, request_counters
from raysolve.engines.testing.scripted import EOS, CharCodec

CODE_CALL = "Let me compute.<tool_call>\n```python\nprint(6 * 7)\n```\n</tool_call>"


@dataclass
class LoadGenConfig:
    """Options of the ``loadgen`` benchmark engine."""

    tokens_per_s: float = 20_000.0
    """Total tokens per second the engine produces when it has enough requests."""
    request_tokens_per_s: float = 300.0
    """Most tokens per second one request gets (a GPU's single-sequence decode speed)."""
    max_concurrency: int = 256
    length_mean: int = 512
    """Mean tokens of an answering segment."""
    length_sigma: float = 0.0
    """Lognormal spread of lengths (0: every sample has ``length_mean`` tokens)."""
    code_share: float = 0.0
    """Share of samples whose first segment is a code call."""
    answer: str = "42"
    accuracy: float = 1.0
    step_s: float = 0.01
    delta_tokens: int = 64


class Clock(Protocol):
    """Where the engine's time comes from."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Wall-clock time (benchmarks)."""

    def now(self) -> float:
        return time.perf_counter()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class VirtualClock:
    """Time that advances only when the engine sleeps, by exactly what it asked (tests): the engine's
    rates hold exactly, however slow or busy the machine. ``sleep`` still yields to the event loop
    once, so consumers see each step's deltas before the next step."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


@dataclass
class _Request:
    request_id: str
    tokens: list[int]
    end: int
    """Index after the last token this segment emits."""
    reason: str
    stop: int | None
    start_credit: float
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    pos: int = 0
    cancelled: bool = False
    done: bool = False


class LoadGenEngine:
    """`Engine` for orchestration benchmarks (see the module docstring)."""

    def __init__(self, config: LoadGenConfig | None = None, *, clock: Clock | None = None, **options: object) -> None:
        self.config = config if config is not None else LoadGenConfig(**options)  # type: ignore[arg-type]
        self.clock: Clock = clock if clock is not None else RealClock()
        self.codec = CharCodec()
        self._eos = self.codec.eos_token_ids[0]
        self._active: dict[str, _Request] = {}
        self._heap: list[tuple[float, int, _Request]] = []
        self._seq = itertools.count()
        self._credit = 0.0
        """Tokens every request in the batch has been given since the engine started."""
        self._early = EarlyCancels()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._driver: asyncio.Task | None = None
        self._counters = request_counters()
        self._steps = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        if self._driver is not None:
            self._driver.cancel()

    def max_concurrency(self) -> int:
        return self.config.max_concurrency

    def stats(self) -> dict[str, float]:
        return {**{k: float(v) for k, v in self._counters.items()}, "active": float(len(self._active)),
                "steps": float(self._steps)}

    # ------------------------------------------------------------------ requests

    async def cancel(self, request_id: str) -> None:
        r = self._active.pop(request_id, None)
        if r is None:
            self._early.add(request_id)
            return
        r.cancelled = r.done = True
        self._counters["requests_cancelled"] += 1
        r.queue.put_nowait(Delta(finish_reason="cancelled"))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        if self._early.pop(request.request_id) is not None:
            self._counters["requests_started"] += 1
            self._counters["requests_cancelled"] += 1
            yield Delta(finish_reason="cancelled")
            return
        r = self._plan(request)
        self._counters["requests_started"] += 1
        self._active[request.request_id] = r
        heapq.heappush(self._heap, (r.start_credit + min(self.config.delta_tokens, r.end), next(self._seq), r))
        self._ensure_driver()
        finished = False
        try:
            while True:
                delta: Delta = await r.queue.get()
                if delta.finish_reason is not None:
                    finished = True
                yield delta
                if finished:
                    return
        finally:
            if not finished and not r.cancelled:  # the consumer went away
                await self.cancel(request.request_id)

    def _plan(self, request: GenerationRequest) -> _Request:
        cfg = self.config
        rng = random.Random(request.seed)
        prompt = self.codec.decode(request.prompt_ids[-200:])  # the tail tells whether code ran
        if "```output" not in prompt and rng.random() < cfg.code_share:
            text = CODE_CALL
            tokens = self.codec.encode(text)
        else:
            length = cfg.length_mean if cfg.length_sigma <= 0 else max(
                16, int(rng.lognormvariate(math.log(cfg.length_mean) - cfg.length_sigma ** 2 / 2, cfg.length_sigma)))
            answer = cfg.answer if rng.random() < cfg.accuracy else str(rng.randrange(1000))
            tail = f" The answer is \\boxed{{{answer}}}."
            filler = [ord(".")] * max(0, length - len(tail) - 1)  # one token per character; EOS included
            tokens = filler + self.codec.encode(tail) + [self._eos]
        stops = set(request.stop_token_ids) | {self._eos}
        end, reason, stop = len(tokens), "length", None
        for i, t in enumerate(tokens):
            if t in stops:
                end, reason, stop = i + 1, "stop", t
                break
        if request.max_tokens < end:
            end, reason, stop = request.max_tokens, "length", None
        return _Request(request.request_id, tokens, end, reason, stop, self._credit)

    # ------------------------------------------------------------------ the batch

    def _ensure_driver(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests run several): a new timer on it
            self._loop, self._wake, self._driver = loop, asyncio.Event(), None
        self._wake.set()
        if self._driver is None or self._driver.done():
            self._driver = asyncio.ensure_future(self._drive())

    async def _drive(self) -> None:
        cfg = self.config
        clock = self.clock
        last = clock.now()
        while True:
            if not self._active:
                assert self._wake is not None
                self._wake.clear()
                await self._wake.wait()
                last = clock.now()
            await clock.sleep(cfg.step_s)
            now = clock.now()
            dt, last = now - last, now
            self._steps += 1
            if self._active:
                self._credit += min(cfg.tokens_per_s * dt / len(self._active), cfg.request_tokens_per_s * dt)
            self._emit_due()

    def _emit_due(self) -> None:
        chunk = self.config.delta_tokens
        while self._heap and self._heap[0][0] <= self._credit:
            _, _, r = heapq.heappop(self._heap)
            if r.cancelled or r.done:
                continue
            upto = min(r.end, int(self._credit - r.start_credit))
            new = r.tokens[r.pos:upto]
            r.pos = upto
            if upto >= r.end:
                r.done = True
                self._active.pop(r.request_id, None)
                self._counters["tokens_generated"] += len(new)
                self._counters["requests_finished"] += 1
                r.queue.put_nowait(Delta(token_ids=new, finish_reason=r.reason, stop=r.stop))  # type: ignore[arg-type]
                continue
            self._counters["tokens_generated"] += len(new)
            r.queue.put_nowait(Delta(token_ids=new))
            heapq.heappush(self._heap, (r.start_credit + min(r.pos + chunk, r.end), next(self._seq), r))


__all__ = ["CODE_CALL", "EOS", "Clock", "LoadGenConfig", "LoadGenEngine", "RealClock", "VirtualClock"]

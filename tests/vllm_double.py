"""TEST DOUBLE of the parts of vLLM 0.25's API that ``raysolve.engines.vllm`` uses.

Not vLLM and not a backend: it lets the ``vllm`` backend's logic (request
building, delta handling, cancel bookkeeping, stat-logger wiring) run on a CPU
machine without vLLM. It RECORDS what the backend sends (``AsyncLLM.requests``:
prompt, ``SamplingParams``, request id per call; ``AsyncLLM.aborted``), which is what
tests assert on. It models no sampling: seeds and temperatures are recorded, not
honoured. It follows vLLM's documented shapes:

- ``AsyncEngineArgs(**fields)``; ``AsyncLLM.from_engine_args(args, stat_loggers=[factory])``
  where ``factory(vllm_config, engine_index)`` returns a ``StatLoggerBase`` whose
  ``record(scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0)``
  is called after every engine step;
- ``AsyncLLM.generate(prompt, sampling_params, request_id)``: an async generator of
  ``RequestOutput`` (``.outputs[0]`` a ``CompletionOutput`` with ``token_ids``,
  ``finish_reason`` in {None, "stop", "length", "abort"}, ``stop_reason``);
  ``output_kind=DELTA`` gives only new tokens; a stop token or EOS is included in
  ``token_ids``; closing the generator aborts the request;
- ``AsyncLLM.abort(request_id)``: the stream gets a final ``"abort"`` output at once
  and the request leaves the (simulated) scheduler, freeing its blocks.

Tokens come from ``script(prompt_ids, params) -> list[int]`` (default: 10, 11, 12, ...,
never EOS), one per request per step of ``step_s``.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Any, Callable

EOS_ID = 2


class RequestOutputKind(enum.Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


class AsyncEngineArgs:
    def __init__(self, **fields: Any) -> None:
        required = {"model", "tensor_parallel_size", "max_model_len", "enable_prefix_caching"}
        missing = required - set(fields)
        assert not missing, f"engine args lack {missing}"
        self.__dict__.update(fields)


class SamplingParams:
    def __init__(
        self,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        max_tokens: int | None = 16,
        stop_token_ids: list[int] | None = None,
        ignore_eos: bool = False,
        detokenize: bool = True,
        skip_special_tokens: bool = True,
        output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE,
    ) -> None:
        if n != 1 or temperature < 0 or not 0 < top_p <= 1 or top_k < -1:
            raise ValueError("invalid sampling parameters")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        self.__dict__.update(
            n=n, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed, max_tokens=max_tokens,
            stop_token_ids=list(stop_token_ids or []), ignore_eos=ignore_eos, detokenize=detokenize,
            skip_special_tokens=skip_special_tokens, output_kind=output_kind,
        )


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    outputs: list[CompletionOutput]
    finished: bool


@dataclass
class PrefixCacheStats:
    queries: int = 0
    hits: int = 0


@dataclass
class SchedulerStats:
    num_running_reqs: int = 0
    num_waiting_reqs: int = 0
    kv_cache_usage: float = 0.0
    prefix_cache_stats: PrefixCacheStats = field(default_factory=PrefixCacheStats)


class StatLoggerBase:
    def __init__(self, vllm_config: Any, engine_index: int = 0) -> None: ...

    def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0) -> None: ...

    def log_engine_initialized(self) -> None: ...


def counting(prompt_ids: list[int], params: SamplingParams) -> list[int]:
    """The default script: 10, 11, 12, ... (no EOS), whatever the seed."""
    return list(range(10, 10 + (params.max_tokens or 16)))


@dataclass
class _Request:
    rid: str
    prompt: list[int]
    params: SamplingParams
    tokens: list[int]
    queue: asyncio.Queue
    produced: int = 0
    blocks: int = 0


class AsyncLLM:
    """The double's engine: one simulated step every ``step_s`` seconds."""

    instances: list["AsyncLLM"] = []
    script: Callable[[list[int], SamplingParams], list[int]] = staticmethod(counting)
    step_s = 0.001
    block_size = 16
    num_blocks = 1024

    def __init__(self, args: AsyncEngineArgs, loggers: list[Any]) -> None:
        self.args = args
        self.loggers = loggers
        self.running: dict[str, _Request] = {}
        self.aborted: list[str] = []
        """Ids of running requests that ``abort`` stopped."""
        self.requests: list[tuple[list[int], SamplingParams, str]] = []
        """Every ``generate`` call: (prompt token ids, sampling params, request id)."""
        self.reports = 0
        """Scheduler reports sent to the stat loggers (one per step)."""
        self.cached_prefixes: set[tuple[int, ...]] = set()
        self._stepper: asyncio.Task | None = None
        self.closed = False
        type(self).instances.append(self)

    @classmethod
    def from_engine_args(cls, args: AsyncEngineArgs, stat_loggers: list[Any] | None = None) -> "AsyncLLM":
        loggers = [factory(None, 0) for factory in (stat_loggers or [])]
        for logger in loggers:
            logger.log_engine_initialized()
        return cls(args, loggers)

    async def generate(self, prompt: dict, sampling_params: SamplingParams, request_id: str):
        assert set(prompt) == {"prompt_token_ids"}, "the backend must send token ids (a TokensPrompt)"
        if request_id in self.running:
            raise ValueError(f"request id {request_id} already running")
        ids = list(prompt["prompt_token_ids"])
        if len(ids) + (sampling_params.max_tokens or 0) > self.args.max_model_len:
            raise ValueError("prompt plus max_tokens exceeds max_model_len")
        self.requests.append((ids, sampling_params, request_id))
        req = _Request(request_id, ids, sampling_params, list(self.script(ids, sampling_params)), asyncio.Queue())
        self.running[request_id] = req
        self._ensure_stepper()
        try:
            while True:
                out = await req.queue.get()
                yield out
                if out.finished:
                    return
        except (GeneratorExit, asyncio.CancelledError):
            await self.abort(request_id)
            raise

    async def abort(self, request_id: str) -> None:
        req = self.running.pop(request_id, None)
        if req is None:
            return
        self.aborted.append(request_id)
        req.queue.put_nowait(RequestOutput(request_id, [CompletionOutput(0, "", [], finish_reason="abort")], True))

    def shutdown(self) -> None:
        self.closed = True
        if self._stepper is not None:
            self._stepper.cancel()

    # ------------------------------------------------------------------ the simulated scheduler

    def _ensure_stepper(self) -> None:
        if self._stepper is None or self._stepper.done():
            self._stepper = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # Like vLLM's engine core: stats come with steps only, so an engine that went idle
        # through aborts never reports that it did.
        while self.running:
            await asyncio.sleep(self.step_s)
            if not self.running:  # everything was aborted meanwhile: no step, no report
                break
            for req in list(self.running.values()):
                self._step(req)
            self._report()

    def _step(self, req: _Request) -> None:
        p = req.params
        if req.produced >= len(req.tokens):
            self._finish(req, [], "length", None)
            return
        tok = req.tokens[req.produced]
        req.produced += 1
        if req.produced == 1:
            prefix = tuple(req.prompt[: len(req.prompt) // self.block_size * self.block_size])
            self.cached_prefixes.add(prefix)
        if not p.ignore_eos and tok == EOS_ID:
            self._finish(req, [tok], "stop", None)
        elif tok in p.stop_token_ids:
            self._finish(req, [tok], "stop", tok)
        elif p.max_tokens is not None and req.produced >= p.max_tokens:
            self._finish(req, [tok], "length", None)
        else:
            req.queue.put_nowait(RequestOutput(req.rid, [CompletionOutput(0, "", [tok])], False))

    def _finish(self, req: _Request, new: list[int], reason: str, stop: int | None) -> None:
        del self.running[req.rid]
        req.queue.put_nowait(RequestOutput(req.rid, [CompletionOutput(0, "", new, finish_reason=reason, stop_reason=stop)], True))

    def _report(self) -> None:
        used = sum(-(-(len(r.prompt) + r.produced) // self.block_size) for r in self.running.values())
        stats = SchedulerStats(len(self.running), 0, used / self.num_blocks)
        self.reports += 1
        for logger in self.loggers:
            logger.record(stats, None)


class _Module:
    """What ``import vllm`` gives the backend."""

    AsyncEngineArgs = AsyncEngineArgs
    SamplingParams = SamplingParams


def install(monkeypatch: Any, script: Callable | None = None, step_s: float = 0.001) -> type[AsyncLLM]:
    """Make ``raysolve.engines.vllm`` use this double; returns the engine class (for ``instances``)."""
    import raysolve.engines.vllm as backend

    engine_cls = type("AsyncLLM", (AsyncLLM,), {"instances": [], "step_s": step_s})
    if script is not None:
        engine_cls.script = staticmethod(script)
    monkeypatch.setattr(backend, "_import_vllm", lambda: (_Module, engine_cls, RequestOutputKind, StatLoggerBase))
    return engine_cls

"""`EngineActor`: one inference engine and the tool loops of the samples it runs.

Tokens never leave this actor: it takes whole ``SampleRequest``s, runs each
sample's tool-integrated loop on its own event loop (code goes to a sandbox
actor), and returns one ``SampleRecord`` per sample. ``cancel`` stops samples in
milliseconds; the loop then frees the engine request and the sandbox session.

Health: once its engine reports itself dead (``raysolve.core.errors.EngineDead``), the actor
refuses new samples with the same error until the coordinator restarts it; ``heartbeat``
says how long the engine has made no progress, for the coordinator's hang watchdog.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict, deque
from typing import Any, AsyncIterator

from raysolve.core.canonical import canonical_key
from raysolve.runtime.config import SolverConfig
from raysolve.engines import make_engine
from raysolve.core.protocols import Engine
from raysolve.core.errors import EngineDead, SampleError
from raysolve.core.prompting import HFTokenCodec, TokenCodec
from raysolve.core.protocols import Delta, GenerationRequest
from raysolve.core.records import SampleRecord, SampleRequest
from raysolve.core.timing import latency_summary_ms
from raysolve.core.tir import SampleSpec, run_sample

_PROMPT_CACHE_SIZE = 1024
_EARLY_CANCEL_TTL_S = 120.0
_LATENCY_WINDOW = 10_000
_CANCEL_WAIT_S = 5.0


class EngineActor:
    """Plain class; ``raysolve.runtime.actors.spawn_engine_actor`` wraps it with ``ray.remote``."""

    def __init__(self, index: int, config: SolverConfig, sandbox_actor: str) -> None:
        import ray

        from raysolve.sandbox import RemoteSandbox

        self.index = index
        self.config = config
        # Looked up by name, not passed as a handle: a restarted actor finds it again.
        # One owner per incarnation: a restarted actor claims the group and its old sessions are closed.
        self.sandbox = RemoteSandbox(ray.get_actor(sandbox_actor), owner=f"engine-{index}@{os.getpid()}")
        self.fmt = config.prompt_format()
        self.engine: Engine = make_engine(config.engine.backend, **config.engine.options)
        self.codec: TokenCodec | None = None
        self._started: asyncio.Task | None = None
        self._tasks: dict[str, asyncio.Task] = {}
        self._early_cancels: dict[str, float] = {}
        self._prompts: OrderedDict[tuple[str, str, int], tuple[int, ...]] = OrderedDict()
        self._progress_at = time.monotonic()
        """When the engine last produced a token or a sample ended (``heartbeat``)."""
        self._dead: str | None = None
        """Why the engine is unusable, once it said so: new samples are refused until a restart."""
        self.counters = {"samples_done": 0, "samples_cancelled": 0}
        self._cancel_at: dict[str, float] = {}
        self.cancel_latencies_s: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        """Seconds from ``cancel`` until the sample's loop has ended: its engine request stopped and
        its sandbox session closed (the engine's own part is ~1 step; see ``jobs/gpu_smoke.py``)."""

    async def ready(self) -> int:
        """Load the engine (once); returns the in-flight target for the coordinator."""
        await self._ensure_started()
        return self.config.engine.queue_depth or self.engine.max_concurrency()

    async def run_sample(self, request: SampleRequest) -> SampleRecord:
        await self._ensure_started()
        if self._early_cancels.pop(request.key, None) is not None:
            return self._record(request, None, cancelled=True)
        if self._dead is not None:
            raise EngineDead(f"engine {self.index} is unusable: {self._dead}")
        spec = SampleSpec(request.key, self._prompt_ids(request), request.seed, request.settings)
        assert self.codec is not None
        if not self._tasks:
            self._progress_at = time.monotonic()  # idle time counts from the first sample in flight
        task = asyncio.ensure_future(run_sample(spec, _Watched(self), self.sandbox, self.codec, self.fmt))
        self._tasks[request.key] = task
        try:
            outcome = await task
        except SampleError as exc:
            if exc.engine_unhealthy and self._dead is None:
                self._dead = str(exc)
            raise
        except asyncio.CancelledError:
            if not task.cancelled():  # this call itself was cancelled (ray.cancel): stop the sample too
                task.cancel()
                raise
            # ``cancel`` came before the sample's loop took its first step: nothing ran
            self.counters["samples_cancelled"] += 1
            return self._record(request, None, cancelled=True)
        finally:
            self._tasks.pop(request.key, None)
            self._progress_at = time.monotonic()
            cancelled_at = self._cancel_at.pop(request.key, None)
            if cancelled_at is not None:
                self.cancel_latencies_s.append(time.monotonic() - cancelled_at)
        cancelled = outcome.finish_reason == "cancelled"
        self.counters["samples_cancelled" if cancelled else "samples_done"] += 1
        return self._record(request, outcome, cancelled)

    async def cancel(self, keys: list[str]) -> float:
        """Cancel these samples and reply once all of them have stopped (engine request ended,
        sandbox session closed; at most a few seconds); returns the wall-clock time (``time.time()``)
        at which they all had, for the coordinator's settle-to-stopped latency."""
        now = time.monotonic()
        stopping = []
        for key in keys:
            task = self._tasks.get(key)
            if task is not None:
                if not task.done():
                    self._cancel_at.setdefault(key, now)
                task.cancel()
                stopping.append(task)
            else:  # the request may still be on its way to this actor
                self._early_cancels[key] = now
        self._early_cancels = {k: t for k, t in self._early_cancels.items() if now - t < _EARLY_CANCEL_TTL_S}
        if stopping:
            await asyncio.wait(stopping, timeout=_CANCEL_WAIT_S)
        return time.time()

    def heartbeat(self) -> dict[str, Any]:
        """For the coordinator's hang watchdog: samples running, and seconds since the engine last
        made progress (a token, a sample ending) while any ran (0 when idle)."""
        running = len(self._tasks)
        idle = time.monotonic() - self._progress_at if running else 0.0
        return {"running": running, "idle_s": idle, "dead": self._dead}

    def stats(self) -> dict[str, Any]:
        summary = latency_summary_ms(self.cancel_latencies_s)
        latency = {f"cancel_latency_ms_{k}": v for k, v in summary.items() if k != "n"}
        return {"index": self.index, "running": len(self._tasks), **self.counters, **latency, **self.engine.stats(),
                "cpu_s": time.process_time()}

    def cancel_latencies(self) -> list[float]:
        """The recent cancel-to-stopped latencies in seconds (see ``cancel_latencies_s``)."""
        return list(self.cancel_latencies_s)

    def placement(self) -> dict[str, Any]:
        """What this actor holds: Ray's GPU ids, ``CUDA_VISIBLE_DEVICES``, and, per GPU process the
        engine started, the ``CUDA_VISIBLE_DEVICES`` it inherited (to check workers stay on our GPUs)."""

        import ray

        return {
            "index": self.index,
            "node": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "ray_gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "children": _children_devices(),
        }

    async def run_on_engine(self, fn: Any, *args: Any) -> Any:
        """Await ``fn(engine, codec, fmt, *args)`` on this actor's event loop, next to the samples.

        For benchmarks and diagnostics that need the engine itself (engine-alone throughput on
        the same GPUs, abort checks); the tool loop never goes through here."""
        await self._ensure_started()
        return await fn(self.engine, self.codec, self.fmt, *args)

    async def close(self) -> None:
        """Stop the engine (its worker processes and GPU memory) before the actor is killed."""
        for task in list(self._tasks.values()):
            task.cancel()
        started = self._started
        if started is not None and started.done() and not started.cancelled() and started.exception() is None:
            await self.engine.close()

    async def cache_stats(self) -> dict[str, int]:
        """The engine's KV-cache occupancy, for backends that report it (empty otherwise)."""
        report = getattr(self.engine, "cache_stats", None)
        return await report() if report is not None else {}

    async def _ensure_started(self) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        # A restarted actor: the sessions of its earlier incarnation's samples were never closed.
        await self.sandbox.claim()
        # The vote key's LaTeX parser (SymPy) imports in seconds: once here, beside the engine's
        # start, rather than in the event loop on the first sample with a LaTeX answer.
        warm_keys = asyncio.get_running_loop().run_in_executor(None, canonical_key, r"\frac{\sqrt{2}}{2}")
        await self.engine.start()
        await warm_keys
        codec = getattr(self.engine, "codec", None)
        self.codec = codec if codec is not None else HFTokenCodec(self.engine.tokenizer, self.fmt.code_end)

    def _prompt_ids(self, request: SampleRequest) -> tuple[int, ...]:
        """Render a problem's prompt once for all its samples on this actor (keyed on everything
        that shapes it: the text and the number of code calls it announces)."""
        key = (request.problem_id, request.problem_text, request.settings.max_code_calls)
        ids = self._prompts.get(key)
        if ids is None:
            assert self.codec is not None
            ids = tuple(self.fmt.prompt_ids(self.codec, request.problem_text, request.settings.max_code_calls))
            self._prompts[key] = ids
            if len(self._prompts) > _PROMPT_CACHE_SIZE:
                self._prompts.popitem(last=False)
        return ids

    def _record(self, request: SampleRequest, outcome: Any, cancelled: bool) -> SampleRecord:
        return SampleRecord(
            problem_id=request.problem_id,
            sample_idx=request.sample_idx,
            seed=request.seed,
            answer=outcome.answer if outcome else None,
            answer_text=outcome.answer_text if outcome else None,
            finish_reason=outcome.finish_reason if outcome else "cancelled",
            cancelled=cancelled,
            generated_tokens=outcome.generated_tokens if outcome else 0,
            tool_output_tokens=outcome.tool_output_tokens if outcome else 0,
            code_calls=outcome.code_calls if outcome else 0,
            code_errors=outcome.code_errors if outcome else 0,
            wall_s=outcome.wall_s if outcome else 0.0,
            first_token_s=outcome.first_token_s if outcome else None,
            tool_s=round(outcome.tool_s, 4) if outcome else 0.0,
            engine=self.index,
            error=outcome.error if outcome else None,
            text=outcome.text if (outcome and self.config.keep_text) else None,
        )


class _Watched:
    """The actor's engine as the tool loop sees it: every delta counts as progress (``heartbeat``)."""

    def __init__(self, actor: EngineActor) -> None:
        self._actor = actor

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        stream = self._actor.engine.generate(request)
        try:
            async for delta in stream:
                self._actor._progress_at = time.monotonic()
                yield delta
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def cancel(self, request_id: str) -> None:
        await self._actor.engine.cancel(request_id)


def _children_devices() -> list[dict[str, Any]]:
    """This process's descendants with the ``CUDA_VISIBLE_DEVICES`` each was started with (Linux /proc)."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            env = child.environ()
            found.append({"pid": child.pid, "name": child.name(), "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES")})
        except (psutil.Error, OSError):
            continue
    return found

"""`Coordinator`: the Ray-facing shell around the pure scheduler.

Every scheduling decision — which sample starts on which engine, when a vote is
settled, what to cancel, what the result is — is made by
``raysolve.core.scheduling.Scheduler``. This actor only feeds it events (a problem
submitted, a sample's Ray call returned or raised, an engine back, the clock) and
carries out the actions it answers with (Ray calls to engine actors, results to
callers). It runs on one asyncio loop (a Ray async actor), so its state needs no locks,
and its cost is O(samples): one message per sample start, one per sample result and
one per cancellation batch — never tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, AsyncIterator

from raysolve.core.records import Problem, ProblemResult
from raysolve.core.scheduling import (
    Action,
    CancelSamples,
    ProblemDone,
    Scheduler,
    SolveOptions,
    StartSample,
    StreamEvent,
)
from raysolve.core.timing import Profiler
from raysolve.runtime.config import SolverConfig

_RECOVERY_POLL_S = 0.5
"""How often a dead engine actor is asked whether it is back."""


class Coordinator:
    """Plain class; ``raysolve.runtime.actors.spawn_coordinator`` wraps it with ``ray.remote``."""

    def __init__(self, config: SolverConfig, engines: list[Any], depths: list[int]) -> None:
        self.config = config
        self.engines = engines
        self.scheduler = Scheduler(config.scheduler_settings(), depths, clock=time.monotonic)
        self.done: deque[ProblemResult] = deque()
        self._done_event = asyncio.Event()
        self._futures: dict[int, asyncio.Future] = {}
        """Callers of one problem (``solve``, ``solve_stream``) by problem key, until its result."""
        self._streams: dict[int, asyncio.Queue] = {}
        self._tasks: set[asyncio.Task] = set()
        self._ticker: asyncio.Task | None = None
        self._wake_at = float("inf")
        self._recovering: set[int] = set()
        self.cancel_latencies_s: dict[str, deque[float]] = {
            "stopped": deque(maxlen=100_000), "acknowledged": deque(maxlen=100_000)}
        """Per settle with samples running, seconds until every sibling had stopped at its engine
        actor (``stopped``: the actors' wall-clock stop times, so hosts' clocks must agree) and until
        the coordinator had their replies (``acknowledged``: includes this loop's own queueing)."""
        self._profiler = Profiler()

    # ---- public API -------------------------------------------------------------

    async def submit(self, problems: list[Problem], options: SolveOptions | None = None) -> int:
        """Queue problems for batch solving; results come back through ``poll``."""
        for problem in problems:
            self.scheduler.submit(problem, options)
        self._run(self.scheduler.fill())
        return len(self.scheduler.queue)

    async def solve(self, problem: Problem, options: SolveOptions | None = None) -> ProblemResult:
        """Solve one problem and wait for it (Serve requests, the AIMO runner)."""
        key = self._submit_one(problem, options, streaming=False)
        try:
            return await asyncio.shield(self._futures[key])
        except asyncio.CancelledError:  # the caller went away: stop its samples
            self._run(self.scheduler.cancel_key(key))
            raise

    async def solve_stream(self, problem: Problem, options: SolveOptions | None = None) -> AsyncIterator[dict]:
        """Like ``solve``, as an event stream (a Ray streaming generator): ``sample`` when a
        sample finishes or is cancelled, ``settled`` when the vote is decided, then
        ``result`` (the ``ProblemResult``). Cancelling the stream stops the samples."""
        key = self._submit_one(problem, options, streaming=True)
        future, events = self._futures[key], self._streams[key]
        try:
            while True:
                getter = asyncio.ensure_future(events.get())
                await asyncio.wait({getter, future}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                    continue
                getter.cancel()
                while not events.empty():
                    yield events.get_nowait()
                yield {"event": "result", "result": future.result()}
                return
        finally:
            if not future.done():  # the caller went away: stop its samples
                self._run(self.scheduler.cancel_key(key))
            self._streams.pop(key, None)

    async def poll(self, max_results: int = 1024, timeout_s: float = 1.0) -> list[ProblemResult]:
        """Finished batch results, waiting up to ``timeout_s`` for the first one."""
        if not self.done:
            self._done_event.clear()
            try:
                await asyncio.wait_for(self._done_event.wait(), timeout_s)
            except asyncio.TimeoutError:
                return []
        out = []
        while self.done and len(out) < max_results:
            out.append(self.done.popleft())
        return out

    async def cancel_problem(self, problem_id: str, reason: str = "cancelled") -> bool:
        """Stop a problem now; its result (with the votes so far) is still emitted."""
        hits = any(s.problem.id == problem_id for s in self.scheduler.problems())
        self._run(self.scheduler.cancel(lambda s: s.problem.id == problem_id, reason))
        return hits

    async def profile(self, on: bool) -> str | None:
        """cProfile this actor's event loop (benchmarks): ``True`` starts; ``False`` stops and
        returns the top functions by own and by cumulative time."""
        return self._profiler.set(on)

    async def stats(self) -> dict[str, Any]:
        return {**self.scheduler.stats(), "cpu_s": time.process_time()}  # the process is the coordinator's

    async def take_cancel_latencies(self) -> dict[str, list[float]]:
        """The settle-to-stopped and settle-to-acknowledged latencies (seconds) since the last call;
        clears them."""
        out = {k: list(v) for k, v in self.cancel_latencies_s.items()}
        for v in self.cancel_latencies_s.values():
            v.clear()
        return out

    # ---- carrying out the scheduler's actions -----------------------------------------

    def _submit_one(self, problem: Problem, options: SolveOptions | None, streaming: bool) -> int:
        key = self.scheduler.submit(problem, options, urgent=True, streaming=streaming)  # latency first
        self._futures[key] = asyncio.get_running_loop().create_future()
        if streaming:
            self._streams[key] = asyncio.Queue()
        self._run(self.scheduler.fill())
        return key

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, StartSample):
                self._spawn(self._await_sample(action))
            elif isinstance(action, CancelSamples):
                self._cancel_on_engine(action)
            elif isinstance(action, ProblemDone):
                self._deliver(action)
            elif isinstance(action, StreamEvent):
                queue = self._streams.get(action.key)
                if queue is not None:
                    queue.put_nowait(action.event)
        self._ensure_ticker()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_sample(self, start: StartSample) -> None:
        request = start.request
        try:
            record = await self.engines[start.engine].run_sample.remote(request)
        except Exception as exc:  # actor died (retry) or the task raised (a failed sample)
            import ray.exceptions as rex

            died = isinstance(exc, (rex.RayActorError, rex.ActorUnavailableError))
            if died:
                self._engine_down(start.engine)
            self._run(self.scheduler.sample_failed(request.run_key, request.sample_idx, _describe(exc), died))
            return
        self._run(self.scheduler.sample_finished(request.run_key, record))

    def _cancel_on_engine(self, cancel: CancelSamples) -> None:
        ref = self.engines[cancel.engine].cancel.remote(list(cancel.keys))
        settled_wall = time.time() - (time.monotonic() - cancel.settled_at)
        self._spawn(self._time_cancel(ref, cancel.settled_at, settled_wall))

    async def _time_cancel(self, ref: Any, settled_at: float, settled_wall: float) -> None:
        """Settle -> every sibling stopped at its engine actor, and -> the cancel reply here."""
        try:
            stopped_at = await ref
        except Exception:  # a dead engine actor: its samples come back as failures instead
            return
        self.cancel_latencies_s["acknowledged"].append(time.monotonic() - settled_at)
        self.cancel_latencies_s["stopped"].append(max(0.0, stopped_at - settled_wall))

    def _deliver(self, done: ProblemDone) -> None:
        """To the one caller waiting on the problem (even one that went away: never to ``poll``),
        else to the batch results."""
        future = self._futures.pop(done.key, None)
        if future is not None:
            if not future.done():
                future.set_result(done.result)
        else:
            self.done.append(done.result)
            self._done_event.set()

    # ---- engines that die ---------------------------------------------------------------

    def _engine_down(self, engine: int) -> None:
        """Take a dead engine out of rotation and watch for its restart."""
        self.scheduler.engine_down(engine)
        if engine not in self._recovering:
            self._recovering.add(engine)
            self._spawn(self._await_engine(engine))

    async def _await_engine(self, engine: int) -> None:
        deadline = time.monotonic() + self.config.scheduling.engine_recovery_s
        try:
            while time.monotonic() < deadline:
                try:
                    await self.engines[engine].ready.remote()
                except Exception:  # still restarting, or gone for good
                    await asyncio.sleep(_RECOVERY_POLL_S)
                    continue
                self._run(self.scheduler.engine_up(engine))
                return
            self._run(self.scheduler.engine_dead(engine))
        finally:
            self._recovering.discard(engine)

    # ---- the clock ----------------------------------------------------------------------

    def _ensure_ticker(self) -> None:
        """Keep one task that calls ``Scheduler.tick`` when ``next_wake`` says, restarted when a
        new deadline falls before its current wake-up time."""
        if self._ticker is not None and asyncio.current_task() is self._ticker:
            return  # called from the ticker itself, which works out its next wake-up
        wake = self.scheduler.next_wake()
        running = self._ticker is not None and not self._ticker.done()
        if running and wake is not None and wake < self._wake_at:
            self._ticker.cancel()
            running = False
        if not running and wake is not None:
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while True:
            wake = self.scheduler.next_wake()
            if wake is None:
                self._wake_at = float("inf")
                return
            self._wake_at = wake
            await asyncio.sleep(max(0.0, wake - time.monotonic()))
            self._wake_at = float("inf")
            self._run(self.scheduler.tick())


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[-1] if text else ''}"

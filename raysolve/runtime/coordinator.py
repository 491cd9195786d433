"""`Coordinator`: the Ray-facing shell around the pure scheduler.

Every scheduling decision — which sample starts on which engine, when a vote is
settled, what to cancel, what the result is — is made by
``raysolve.core.scheduling.Scheduler``. This actor only feeds it events (a problem
submitted, a sample's Ray call returned or raised, an engine back, the clock) and
carries out the actions it answers with (Ray calls to engine actors, results to
callers). It runs on one asyncio loop (a Ray async actor), so its state needs no locks,
and its cost is O(samples): one message per sample start, one per sample result and
one per cancellation batch — never tokens.

Failures (``raysolve.core.errors``): a sample whose engine actor died, reported itself
dead, or was unreachable is retried; an engine that said it is dead, or that made no
progress for ``scheduling.engine_hang_s`` (the watchdog), has its actor restarted, and is
back in rotation once it answers ``ready`` again. Grading runs in a thread with a timeout,
off this loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any, AsyncIterator

from raysolve.core import grading
from raysolve.core.answers import is_correct
from raysolve.core.errors import find_sample_error
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
_GRADE_TIMEOUT_S = 120.0
"""Longest a result's grading (SymPy, math-verify) may take, queueing included; past it ``correct``
stays None. Grading runs beside the loop, so this only bounds a grader that never returns: it is
far above a normal grading (milliseconds) even on a starved host."""
_VERIFY_TIMEOUT_S = 30.0
"""Longest one math-verify comparison may take: its process is killed past it (``grading.py``)."""

log = logging.getLogger(__name__)


class Coordinator:
    """Plain class; ``raysolve.runtime.actors.spawn_coordinator`` wraps it with ``ray.remote``."""

    def __init__(self, config: SolverConfig, engines: list[Any], depths: list[int]) -> None:
        self.config = config
        self.engines = engines
        self.scheduler = Scheduler(config.scheduler_settings(), depths, clock=time.monotonic, grade=False)
        self._grader = ThreadPoolExecutor(max_workers=4, thread_name_prefix="grade")
        self._grader.submit(grading.warm_up)  # imports the parsers (seconds) before the first grade
        self.health = {"engines_restarted": 0, "engines_hung": 0, "engines_reported_dead": 0,
                       "engines_unreachable": 0, "grading_timeouts": 0}
        self._watchdog: asyncio.Task | None = None
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
        return {**self.scheduler.stats(), **self.health, "cpu_s": time.process_time()}  # the process is the coordinator's

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
        if self._watchdog is None and self.config.scheduling.engine_hang_s is not None:
            self._watchdog = asyncio.ensure_future(self._watch())
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
        engine = self.engines[start.engine]
        try:
            record = await engine.run_sample.remote(request)
        except Exception as exc:  # the engine failed under the sample (retry) or the sample raised
            import ray.exceptions as rex

            failure = find_sample_error(exc)
            retry = failure is not None and failure.retry
            if isinstance(exc, rex.ActorUnavailableError):  # unreachable: the sample may still run there
                self.health["engines_unreachable"] += 1
                self._spawn(self._cancel_quietly(engine, request.key))
                self._engine_down(start.engine)
                retry = True
            elif isinstance(exc, rex.RayActorError):  # the actor process died (Ray restarts it)
                self._engine_down(start.engine)
                retry = True
            elif failure is not None and failure.engine_unhealthy:  # alive, but its engine is not
                if start.engine not in self._recovering:
                    self.health["engines_reported_dead"] += 1
                self._restart_engine(start.engine, f"{failure.kind}: {failure}")
            self._run(self.scheduler.sample_failed(request.run_key, request.sample_idx, _describe(exc), retry))
            return
        self._run(self.scheduler.sample_finished(request.run_key, record))

    async def _cancel_quietly(self, engine: Any, key: str) -> None:
        try:
            await engine.cancel.remote([key])
        except Exception:
            pass

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
        """Grade the result off the event loop, then hand it on (``_hand_over``)."""
        if done.result.gold is None:
            self._hand_over(done)
            return
        self._spawn(self._grade_then_hand_over(done))

    async def _grade_then_hand_over(self, done: ProblemDone) -> None:
        r = done.result
        loop = asyncio.get_running_loop()
        try:
            correct = await asyncio.wait_for(
                loop.run_in_executor(self._grader, partial(is_correct, r.answer_text or r.answer, r.gold, done.modulus,
                                                           timeout_s=_VERIFY_TIMEOUT_S)), _GRADE_TIMEOUT_S)
        except asyncio.TimeoutError:
            self.health["grading_timeouts"] += 1
            correct = None
        except Exception:  # a grader bug must not lose the result
            log.exception("grading %s failed", r.problem_id)
            correct = None
        self._hand_over(replace(done, result=replace(r, correct=correct)))

    def _hand_over(self, done: ProblemDone) -> None:
        """To the one caller waiting on the problem (even one that went away: never to ``poll``),
        else to the batch results."""
        future = self._futures.pop(done.key, None)
        if future is not None:
            if not future.done():
                future.set_result(done.result)
        else:
            self.done.append(done.result)
            self._done_event.set()

    # ---- engines that die or hang ---------------------------------------------------------

    def _restart_engine(self, engine: int, reason: str) -> None:
        """Kill an engine's actor that is alive but unusable, so that Ray starts it again (a new
        process that loads the engine afresh); its samples in flight fail over and are retried."""
        if engine in self._recovering:  # already on its way back
            return
        import ray

        log.warning("engine %d is unusable (%s): restarting its actor", engine, reason)
        self.health["engines_restarted"] += 1
        self._engine_down(engine)
        ray.kill(self.engines[engine], no_restart=False)

    async def _watch(self) -> None:
        """The hang watchdog: an engine with samples in flight that made no progress for
        ``engine_hang_s`` (or does not answer a heartbeat within it) is restarted."""
        hang = self.config.scheduling.engine_hang_s
        assert hang is not None
        while True:
            await asyncio.sleep(min(5.0, hang / 4))
            watched = [i for i in range(len(self.engines))
                       if self.scheduler.load[i] and i not in self.scheduler.down]
            beats = await asyncio.gather(*(self._heartbeat(i, hang) for i in watched))
            for i, idle in zip(watched, beats):
                if idle is not None and idle >= hang and i not in self.scheduler.down:
                    self.health["engines_hung"] += 1
                    self._restart_engine(i, f"no progress for {idle:.1f} s")

    async def _heartbeat(self, engine: int, hang: float) -> float | None:
        """Seconds the engine has made no progress (inf: no answer within ``hang``; None: its
        actor is dead, which its samples report themselves)."""
        try:
            beat = await asyncio.wait_for(self.engines[engine].heartbeat.remote(), hang)
        except asyncio.TimeoutError:
            return float("inf")
        except Exception:
            return None
        return float(beat["idle_s"])

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

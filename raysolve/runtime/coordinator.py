"""`Coordinator`: fans problems out as samples, keeps engines full, votes, cancels.

It runs on one asyncio loop (a Ray async actor), so its state needs no locks. Its
cost is O(samples): it sees one message per sample start, one per sample result
and one per cancellation batch — never tokens. After every finished sample it asks
the stop policy; once a problem is settled it cancels that problem's in-flight
siblings and gives their engine slots to the next samples at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from raysolve.core.answers import is_correct
from raysolve.runtime.config import SolverConfig
from raysolve.io.problems import Problem
from raysolve.core.records import ProblemResult, SampleRecord, SampleRequest
from raysolve.core.records import SampleSettings
from raysolve.core.scheduling import SolveOptions
from raysolve.core.voting import Settled, StopPolicy, VoteState, final_decision, parse_policy

_TICK_S = 0.5
"""How often time-based stop rules are checked between sample results."""



@dataclass
class _Problem:
    key: int
    """Unique per submission, so two problems with one id never mix."""
    problem: Problem
    num_samples: int
    pool_size: int | None
    """None in launch-all mode."""
    policy: StopPolicy
    template: SampleRequest
    """Sample 0's request; other samples differ in index and seed."""
    mode: str
    future: asyncio.Future | None = None
    started_at: float | None = None
    next_idx: int = 0
    retry: list[int] = field(default_factory=list)
    attempts: dict[int, int] = field(default_factory=dict)
    wave_left: int = 0
    """Wave mode: samples of the current wave still to launch."""
    in_flight: dict[int, tuple[int, float]] = field(default_factory=dict)
    """sample index -> (engine index, dispatch time)."""
    records: list[SampleRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    history: list[str | None] = field(default_factory=list)
    """Answers of finished samples in finish order."""
    finished: int = 0
    failed: int = 0
    settled: Settled | None = None
    settled_at: float | None = None
    deadline: float | None = None
    activated: int = -1
    """Order in which the coordinator took the problem up (older problems start samples first)."""
    events: asyncio.Queue | None = None
    """Streaming callers (``solve_stream``): one event per finished sample and at settling."""

    def not_started(self) -> int:
        return self.num_samples - self.next_idx + len(self.retry)

    def can_start(self) -> bool:
        if self.settled is not None or self.not_started() == 0:
            return False
        if self.mode == "wave":  # the next wave only once the previous one has fully come back
            if not self.in_flight and self.wave_left == 0:
                self.wave_left = self.pool_size or 1
            return self.wave_left > 0
        return self.pool_size is None or len(self.in_flight) < self.pool_size

    def vote_state(self, now: float) -> VoteState:
        return VoteState(
            counts=self.counts,
            finished=self.finished,
            in_flight=len(self.in_flight),
            not_started=self.not_started(),
            elapsed_s=0.0 if self.started_at is None else now - self.started_at,
            history=self.history,
        )


class Coordinator:
    """Plain class; ``raysolve.runtime.actors.spawn_coordinator`` wraps it with ``ray.remote``."""

    def __init__(self, config: SolverConfig, engines: list[Any], depths: list[int]) -> None:
        self.config = config
        self.engines = engines
        self.depths = depths
        self.load = [0] * len(engines)
        self.queue: deque[_Problem] = deque()
        self.urgent: deque[_Problem] = deque()
        """Latency-bound problems (``solve``/``solve_stream``): started before the batch
        queue, first come first served among themselves."""
        self.active: dict[int, _Problem] = {}
        self._keys = itertools.count(1)
        self.done: deque[ProblemResult] = deque()
        self._done_event = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.down: set[int] = set()
        """Engines whose actor died: out of rotation until ``ready()`` answers again."""
        self.dead: set[int] = set()
        """Engines that did not come back within ``scheduling.engine_recovery_s``."""
        self._ticker: asyncio.Task | None = None
        self._wake_at = 0.0
        self._with_deadline = 0
        """Problems queued or active with a ``time_limit_s`` (the ticker looks for deadlines only then)."""
        self._ready: list[tuple[int, int]] = []
        """(activation number, problem key) of active problems that may be able to start a sample."""
        self._in_ready: set[int] = set()
        self._activations = itertools.count()
        self.cancel_latencies_s: dict[str, deque[float]] = {
            "stopped": deque(maxlen=100_000), "acknowledged": deque(maxlen=100_000)}
        """Per settle with samples running, seconds until every sibling had stopped at its engine
        actor (``stopped``: the actors' wall-clock stop times, so hosts' clocks must agree) and until
        the coordinator had their replies (``acknowledged``: includes this loop's own queueing)."""
        self._profiler: Any = None
        self.counters = {
            "problems_done": 0, "samples_started": 0, "samples_finished": 0,
            "samples_cancelled": 0, "samples_retried": 0, "samples_failed": 0,
            "cancel_calls": 0, "run_calls": 0,
        }

    # ---- public API -------------------------------------------------------------

    async def submit(self, problems: list[Problem], options: SolveOptions | None = None) -> int:
        """Queue problems for batch solving; results come back through ``poll``."""
        for problem in problems:
            self.queue.append(self._new_problem(problem, options))
        self._fill()
        return len(self.queue)

    async def solve(self, problem: Problem, options: SolveOptions | None = None) -> ProblemResult:
        """Solve one problem and wait for it (Serve requests, the AIMO runner)."""
        state = self._new_problem(problem, options)
        state.future = asyncio.get_running_loop().create_future()
        self.urgent.append(state)  # latency-bound callers go first
        self._fill()
        try:
            return await asyncio.shield(state.future)
        except asyncio.CancelledError:  # the caller went away: stop its samples
            self._cancel(lambda s: s is state, "cancelled")
            raise

    async def solve_stream(self, problem: Problem, options: SolveOptions | None = None):
        """Like ``solve``, as an event stream (a Ray streaming generator): ``sample`` when a
        sample finishes or is cancelled, ``settled`` when the vote is decided, then
        ``result`` (the ``ProblemResult``). Cancelling the stream stops the samples."""
        state = self._new_problem(problem, options)
        loop = asyncio.get_running_loop()
        state.future = loop.create_future()
        state.events = asyncio.Queue()
        self.urgent.append(state)
        self._fill()
        try:
            while True:
                getter = asyncio.ensure_future(state.events.get())
                await asyncio.wait({getter, state.future}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                    continue
                getter.cancel()
                while not state.events.empty():
                    yield state.events.get_nowait()
                yield {"event": "result", "result": state.future.result()}
                return
        finally:
            if not state.future.done():  # the caller went away: stop its samples
                self._cancel(lambda s: s is state, "cancelled")

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
        return self._cancel(lambda state: state.problem.id == problem_id, reason) > 0

    async def profile(self, on: bool) -> str | None:
        """cProfile this actor's event loop (benchmarks): ``True`` starts; ``False`` stops and
        returns the top functions by own and by cumulative time."""
        if self._profiler is None:
            from raysolve.core.timing import Profiler

            self._profiler = Profiler()
        return self._profiler.set(on)

    def _cancel(self, match: Callable[[_Problem], bool], reason: str) -> int:
        now = time.monotonic()
        hits = 0
        for queue in (self.urgent, self.queue):
            for state in [s for s in queue if match(s)]:
                queue.remove(state)
                state.settled = Settled(None, reason)
                self._finalize(state, now)
                hits += 1
        for state in [s for s in self.active.values() if match(s)]:
            if state.settled is None:
                self._settle(state, Settled(_leader(state.counts), reason), now)
            self._maybe_finalize(state)
            hits += 1
        return hits

    async def stats(self) -> dict[str, Any]:
        return {
            **self.counters,
            "queued": len(self.queue) + len(self.urgent),
            "active": len(self.active),
            "in_flight": sum(self.load),
            "engine_load": list(self.load),
            "engines_down": sorted(self.down),
            "cpu_s": time.process_time(),  # the coordinator has its process to itself
        }

    # ---- scheduling ---------------------------------------------------------------

    def _new_problem(self, problem: Problem, options: SolveOptions | None) -> _Problem:
        o = options or SolveOptions()
        cfg = self.config
        mode = o.mode or cfg.scheduling.mode
        if mode not in ("pool", "launch-all", "wave"):
            raise ValueError(f"unknown scheduling mode {mode!r}: use 'pool', 'wave' or 'launch-all'")
        template = SampleRequest(
            problem_id=problem.id,
            sample_idx=0,
            problem_text=problem.text,
            seed=_problem_seed(cfg.seed, problem.id),
            run_key=next(self._keys),
            settings=SampleSettings(
                max_tokens=o.max_tokens or cfg.budget.max_tokens,
                max_code_calls=cfg.budget.max_code_calls if o.max_code_calls is None else o.max_code_calls,
                code_timeout_s=cfg.budget.code_timeout_s,
                temperature=cfg.sampling.temperature if o.temperature is None else o.temperature,
                top_p=cfg.sampling.top_p,
                top_k=cfg.sampling.top_k,
                modulus=o.modulus or cfg.modulus,
            ),
        )
        state = _Problem(
            key=template.run_key,
            problem=problem,
            num_samples=o.num_samples or cfg.scheduling.num_samples,
            pool_size=None if mode == "launch-all" else (o.pool_size or cfg.scheduling.pool_size),
            policy=parse_policy(o.stop_policy or cfg.scheduling.stop_policy),
            template=template,
            mode=mode,
            deadline=None if o.time_limit_s is None else time.monotonic() + o.time_limit_s,
        )
        self._with_deadline += state.deadline is not None
        return state

    def _fill(self) -> None:
        """Start samples until every engine is at its depth or nothing can start."""
        if len(self.dead) == len(self.engines):
            self._cancel(lambda state: True, "no engine left")  # answer with what they have
            return
        self._ensure_ticker()
        while True:
            engine = self._free_engine()
            if engine is None:
                return
            state = self._next_startable()
            if state is None:
                return
            self._start_sample(state, engine)

    def _free_engine(self) -> int | None:
        best, best_ratio = None, 1.0
        for i, (load, depth) in enumerate(zip(self.load, self.depths)):
            ratio = load / depth
            if ratio < best_ratio and i not in self.down:
                best, best_ratio = i, ratio
        return best

    def _next_startable(self) -> _Problem | None:
        """The longest-active problem that can start a sample, else the next queued one.

        Only problems marked ready are looked at (a heap in activation order): a problem is
        marked when it becomes active and whenever one of its samples comes back, the only
        events that can let it start again. Scanning every active problem instead cost
        O(active) per sample start (20 % of the coordinator's CPU at 400 samples/s)."""
        while self._ready:
            _, key = self._ready[0]
            state = self.active.get(key)
            if state is not None and state.can_start():
                return state
            heapq.heappop(self._ready)
            self._in_ready.discard(key)
        cap = self.config.scheduling.max_active_problems
        while (self.urgent or self.queue) and (cap is None or len(self.active) < cap):
            state = (self.urgent or self.queue).popleft()
            self.active[state.key] = state
            state.activated = next(self._activations)
            self._mark_ready(state)
            if state.can_start():
                return state
        return None

    def _mark_ready(self, state: _Problem) -> None:
        if state.key not in self._in_ready and state.key in self.active:
            self._in_ready.add(state.key)
            heapq.heappush(self._ready, (state.activated, state.key))

    def _start_sample(self, state: _Problem, engine: int) -> None:
        now = time.monotonic()
        if state.started_at is None:
            state.started_at = now
        if state.retry:
            idx = state.retry.pop()
        else:
            idx = state.next_idx
            state.next_idx += 1
        state.attempts[idx] = state.attempts.get(idx, 0) + 1
        if state.mode == "wave":
            state.wave_left -= 1
        request = _with_index(state.template, idx)
        state.in_flight[idx] = (engine, now)
        self.load[engine] += 1
        self.counters["samples_started"] += 1
        self.counters["run_calls"] += 1
        ref = self.engines[engine].run_sample.remote(request)
        task = asyncio.ensure_future(self._await_sample(state, idx, engine, ref))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_sample(self, state: _Problem, idx: int, engine: int, ref: Any) -> None:
        record: SampleRecord | None = None
        try:
            record = await ref
        except Exception as exc:  # actor died (retry) or the task raised (a failed sample)
            record = self._on_failure(state, idx, engine, exc)
        finally:
            self.load[engine] -= 1
            _, dispatched = state.in_flight.pop(idx)
        if record is not None:
            self._on_record(state, record, dispatched)
        self._mark_ready(state)  # a slot of its pool (or its wave) may have opened
        self._maybe_finalize(state)
        self._fill()

    def _on_failure(self, state: _Problem, idx: int, engine: int, exc: Exception) -> SampleRecord | None:
        import ray.exceptions as rex

        died = isinstance(exc, (rex.RayActorError, rex.ActorUnavailableError))
        if died:
            self._engine_down(engine)
        if died and state.settled is None and state.attempts[idx] <= self.config.scheduling.max_sample_retries:
            state.retry.append(idx)
            self.counters["samples_retried"] += 1
            return None
        t = state.template
        return SampleRecord(
            problem_id=t.problem_id, sample_idx=idx, seed=_sample_seed(t.seed, idx), answer=None,
            finish_reason="cancelled" if state.settled is not None else "error",
            cancelled=state.settled is not None, generated_tokens=0, tool_output_tokens=0,
            code_calls=0, code_errors=0, wall_s=0.0, attempt=state.attempts[idx],
            error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}",
        )

    def _engine_down(self, engine: int) -> None:
        """Take a dead engine out of rotation and watch for its restart."""
        if engine not in self.down:
            self.down.add(engine)
            task = asyncio.ensure_future(self._await_engine(engine))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _await_engine(self, engine: int) -> None:
        deadline = time.monotonic() + self.config.scheduling.engine_recovery_s
        while time.monotonic() < deadline:
            try:
                await self.engines[engine].ready.remote()
            except Exception:  # still restarting, or gone for good
                await asyncio.sleep(0.5)
                continue
            self.down.discard(engine)
            self._fill()
            return
        self.dead.add(engine)
        self._fill()

    def _on_record(self, state: _Problem, record: SampleRecord, dispatched: float) -> None:
        now = time.monotonic()
        assert state.started_at is not None
        record.start_s = round(dispatched - state.started_at, 4)
        record.end_s = round(now - state.started_at, 4)
        record.attempt = state.attempts.get(record.sample_idx, 1)
        state.records.append(record)
        if state.events is not None:
            state.events.put_nowait({"event": "sample", "sample": record.to_row(), "votes": dict(state.counts)})
        if record.cancelled:
            self.counters["samples_cancelled"] += 1
            return
        if record.finish_reason == "error":
            state.failed += 1
            self.counters["samples_failed"] += 1
        state.finished += 1
        self.counters["samples_finished"] += 1
        record.finish_order = state.finished
        state.history.append(record.answer)
        if record.answer is not None:
            state.counts[record.answer] = state.counts.get(record.answer, 0) + 1
        if state.settled is None:
            self._decide(state, now)

    def _decide(self, state: _Problem, now: float) -> None:
        vote = state.vote_state(now)
        decision = state.policy.decide(vote)
        if isinstance(decision, Settled):
            self._settle(state, decision, now)
        elif vote.remaining == 0:
            self._settle(state, final_decision(vote), now)

    def _settle(self, state: _Problem, decision: Settled, now: float) -> None:
        state.settled = decision
        state.settled_at = now
        state.retry.clear()
        if state.events is not None:
            state.events.put_nowait({"event": "settled", "answer": decision.answer, "reason": decision.reason,
                                     "votes": dict(state.counts), "in_flight": len(state.in_flight)})
        by_engine: dict[int, list[str]] = {}
        for idx, (engine, _) in state.in_flight.items():
            by_engine.setdefault(engine, []).append(_with_index(state.template, idx).key)
        refs = []
        for engine, keys in by_engine.items():
            self.counters["cancel_calls"] += 1
            refs.append(self.engines[engine].cancel.remote(keys))
        if refs:
            settled_wall = time.time() - (time.monotonic() - now)
            task = asyncio.ensure_future(self._time_cancel(refs, now, settled_wall))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _time_cancel(self, refs: list[Any], settled_at: float, settled_wall: float) -> None:
        """Settle -> every sibling stopped at its engine actor, and -> their cancel replies here."""
        try:
            stopped_at = await asyncio.gather(*refs)
        except Exception:  # a dead engine actor: its samples come back as failures instead
            return
        self.cancel_latencies_s["acknowledged"].append(time.monotonic() - settled_at)
        self.cancel_latencies_s["stopped"].append(max(0.0, max(stopped_at) - settled_wall))

    async def take_cancel_latencies(self) -> dict[str, list[float]]:
        """The settle-to-stopped and settle-to-acknowledged latencies (seconds) since the last call;
        clears them."""
        out = {k: list(v) for k, v in self.cancel_latencies_s.items()}
        for v in self.cancel_latencies_s.values():
            v.clear()
        return out

    def _maybe_finalize(self, state: _Problem) -> None:
        if state.settled is not None and not state.in_flight and state.key in self.active:
            self._finalize(state, time.monotonic())

    def _finalize(self, state: _Problem, now: float) -> None:
        self.active.pop(state.key, None)
        self._with_deadline -= state.deadline is not None
        decision = state.settled or Settled(None, "cancelled")
        gold = state.problem.answer
        start = state.started_at if state.started_at is not None else now
        records = sorted(state.records, key=lambda r: r.sample_idx)
        result = ProblemResult(
            problem_id=state.problem.id,
            answer=decision.answer,
            settle_reason=decision.reason,
            votes=dict(sorted(state.counts.items(), key=lambda kv: -kv[1])),
            gold=gold,
            correct=None if gold is None else is_correct(decision.answer, gold, state.template.settings.modulus),
            samples_budget=state.num_samples,
            samples_started=len({r.sample_idx for r in records}),
            samples_finished=state.finished,
            samples_cancelled=sum(r.cancelled for r in records),
            samples_failed=state.failed,
            generated_tokens=sum(r.generated_tokens for r in records),
            tool_output_tokens=sum(r.tool_output_tokens for r in records),
            code_calls=sum(r.code_calls for r in records),
            settle_s=round((state.settled_at or now) - start, 4),
            wall_s=round(now - start, 4),
            policy=state.policy.name,
            mode=state.mode,
            samples=records,
        )
        self.counters["problems_done"] += 1
        if state.future is not None:
            if not state.future.done():
                state.future.set_result(result)
        else:
            self.done.append(result)
            self._done_event.set()

    def _ensure_ticker(self) -> None:
        running = self._ticker is not None and not self._ticker.done()
        if running and self._with_deadline and time.monotonic() + self._next_tick_s() < self._wake_at:
            self._ticker.cancel()  # a new deadline falls before the ticker wakes: restart it
            running = False
        if not running:
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        """Re-ask the stop policy while samples run, so time-based rules fire on time; wake
        early for the nearest ``time_limit_s`` deadline so it lands within milliseconds."""
        while self.active or self.queue or self.urgent:
            delay = self._next_tick_s()
            self._wake_at = time.monotonic() + delay
            await asyncio.sleep(delay)
            now = time.monotonic()
            self._cancel(lambda s: s.deadline is not None and now >= s.deadline and s.settled is None, "time_limit")
            for state in list(self.active.values()):
                if state.settled is None and state.started_at is not None:
                    self._decide(state, now)
                    self._maybe_finalize(state)
            self._fill()

    def _next_tick_s(self) -> float:
        if not self._with_deadline:  # batch work: no scan per sample
            return _TICK_S
        deadlines = [s.deadline for q in (self.active.values(), self.urgent, self.queue) for s in q
                     if s.deadline is not None and s.settled is None]
        if not deadlines:
            return _TICK_S
        return min(_TICK_S, max(0.0, min(deadlines) - time.monotonic()))


def _leader(counts: dict[str, int]) -> str | None:
    return max(counts, key=counts.__getitem__) if counts else None


def _problem_seed(base: int, problem_id: str) -> int:
    digest = hashlib.blake2b(f"{base}:{problem_id}".encode(), digest_size=5).digest()
    return int.from_bytes(digest, "big") << 16


def _sample_seed(problem_seed: int, idx: int) -> int:
    """Distinct for every sample index of a problem (indices below 65,536)."""
    return problem_seed | (idx & 0xFFFF)


def _with_index(template: SampleRequest, idx: int) -> SampleRequest:
    from dataclasses import replace

    return replace(template, sample_idx=idx, seed=_sample_seed(template.seed, idx))

"""Per-problem scheduling as pure code: which sample of which problem starts on which
engine, what a finished or failed sample changes, when a problem is settled, and what
its result is.

`Scheduler` has no Ray, no asyncio and no timers. The coordinator actor
(`raysolve.runtime.coordinator`) feeds it events — a problem submitted, a sample
finished or failed, an engine down or back, a cancel, a tick of the clock — and
carries out the `Action`s it answers with: start these samples, cancel those, deliver
this result, emit this stream event. Time comes from an injected clock, so
`tests/test_scheduling.py` drives random interleavings of events on a simulated clock
and checks the invariants (every sample accounted for once, never more in flight than
allowed, a settled problem starts nothing, votes agree with the answer, unique seeds).

Scheduling modes, per problem:
- ``pool``: at most ``pool_size`` samples in flight, the next starting as one finishes;
- ``wave``: ``pool_size`` samples launched together, the next wave only once the whole
  wave is back and the vote is still open;
- ``launch-all``: every sample at once.

A sample that finishes after its problem settled (its cancel lost the race) is kept in
the records, marked ``late``, and changes neither the votes nor the answer. The result is
delivered once every sibling has stopped — milliseconds after the settle — and never later
than ``settle_grace_s`` after it: a sibling still out then (a hung engine) is recorded as
cancelled, and its return only frees its engine slot.

A problem that infrastructure left without a real settle (every engine given up, every
sample failed) carries ``ProblemResult.failure``; writers keep it out of the done set.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Union

from raysolve.core.answers import is_correct
from raysolve.core.records import Problem, ProblemResult, SampleRecord, SampleRequest, SampleSettings
from raysolve.core.voting import Settled, StopPolicy, VoteState, final_decision, parse_policy

MODES = ("pool", "launch-all", "wave")

NO_ENGINE_LEFT = "no engine left"
"""Settle reason when every engine was given up: a failure, not an answer (solved again on resume)."""

TICK_S = 0.5
"""How often time-based stop rules are re-checked while samples run."""


@dataclass(frozen=True)
class SolveOptions:
    """Per-problem overrides of the run's configuration (Serve requests, AIMO budgets)."""

    num_samples: int | None = None
    pool_size: int | None = None
    mode: str | None = None
    stop_policy: str | None = None
    max_tokens: int | None = None
    max_code_calls: int | None = None
    temperature: float | None = None
    modulus: int | None = None
    time_limit_s: float | None = None
    """Settle with the votes so far (reason ``time_limit``) this long after submission."""

    @classmethod
    def latency(cls, **overrides: object) -> "SolveOptions":
        """The latency-first default (Serve requests, single problems): waves of 8 samples and
        ``beta:0.99:min=4`` (see ``results/replay-tiny-32``: 68 % fewer tokens than the full vote
        at the same accuracy, settling about when launch-all's full vote would)."""
        return cls(**{"mode": "wave", "pool_size": 8, "stop_policy": "latency", **overrides})  # type: ignore[arg-type]


@dataclass(frozen=True)
class SchedulerSettings:
    """The run's defaults, which ``SolveOptions`` override per problem."""

    num_samples: int = 8
    pool_size: int = 4
    mode: str = "pool"
    stop_policy: str = "default"
    sample: SampleSettings = SampleSettings()
    """Budgets and sampling settings of every sample."""
    seed: int = 0
    """Base of every problem's seeds."""
    max_active_problems: int | None = None
    max_sample_retries: int = 2
    """Retries of a sample whose engine died under it."""
    settle_grace_s: float | None = 1.0
    """Longest wait, after the vote settled, for cancelled siblings before the result is
    delivered anyway (None: wait for all)."""


# ---- actions: what the scheduler asks its shell to do ----------------------------------


@dataclass(frozen=True)
class StartSample:
    """Run ``request`` on engine ``engine``; report back with ``sample_finished``/``sample_failed``."""

    engine: int
    request: SampleRequest


@dataclass(frozen=True)
class CancelSamples:
    """Stop these samples (``SampleRequest.key``) on engine ``engine``; they still report back."""

    engine: int
    keys: tuple[str, ...]
    settled_at: float
    """Clock time of the settle that caused the cancel (for cancel-latency measurements)."""


@dataclass(frozen=True)
class ProblemDone:
    """Problem ``key`` is finished: deliver ``result`` to its caller."""

    key: int
    result: ProblemResult
    modulus: int | None = None
    """What the answers were reduced by (for grading outside the scheduler)."""


@dataclass(frozen=True)
class StreamEvent:
    """For streaming callers of problem ``key``: a sample came back, or the vote settled."""

    key: int
    event: dict


Action = Union[StartSample, CancelSamples, ProblemDone, StreamEvent]


# ---- seeds -------------------------------------------------------------------------------


def problem_seed(base: int, problem_id: str) -> int:
    """A problem's seed: 40 bits of a hash of the run seed and the problem id, shifted so the
    low 16 bits are free for the sample index."""
    digest = hashlib.blake2b(f"{base}:{problem_id}".encode(), digest_size=5).digest()
    return int.from_bytes(digest, "big") << 16


def sample_seed(problem_seed_: int, idx: int) -> int:
    """Distinct for every sample index of a problem (indices below 65,536)."""
    return problem_seed_ | (idx & 0xFFFF)


# ---- per-problem state -------------------------------------------------------------------


@dataclass
class ProblemState:
    """Everything the scheduler knows about one submitted problem."""

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
    streaming: bool = False
    deadline: float | None = None
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
    """Answers of the samples that voted, in finish order."""
    finished: int = 0
    failed: int = 0
    late: int = 0
    settled: Settled | None = None
    settled_at: float | None = None
    activated: int = -1
    """Order in which the scheduler took the problem up (older problems start samples first)."""

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

    def empty_record(self, idx: int, cancelled: bool, error: str, **fields: object) -> SampleRecord:
        """The record of sample ``idx`` that produced nothing it could report: cancelled, or an
        error."""
        t = self.template
        values: dict = dict(
            problem_id=t.problem_id, sample_idx=idx, seed=sample_seed(t.seed, idx), answer=None,
            finish_reason="cancelled" if cancelled else "error", cancelled=cancelled, generated_tokens=0,
            tool_output_tokens=0, code_calls=0, code_errors=0, wall_s=0.0, error=error)
        return SampleRecord(**{**values, **fields})

    def request(self, idx: int) -> SampleRequest:
        return replace(self.template, sample_idx=idx, seed=sample_seed(self.template.seed, idx),
                       attempt=self.attempts.get(idx, 1))


# ---- the scheduler -------------------------------------------------------------------------


class Scheduler:
    """The coordinator's decisions, as a state machine fed with events.

    Every event method returns the actions the shell must carry out, in order. Engines
    are numbered ``0..len(depths)-1``; ``depths[i]`` is how many samples engine ``i``
    should have in flight.
    """

    def __init__(self, settings: SchedulerSettings, depths: list[int], clock: Callable[[], float],
                 grade: bool = True) -> None:
        if not depths or min(depths) < 1:
            raise ValueError(f"every engine needs a depth of at least 1, got {depths}")
        self.settings = settings
        self.depths = list(depths)
        self.clock = clock
        self.load = [0] * len(depths)
        self.queue: deque[ProblemState] = deque()
        self.urgent: deque[ProblemState] = deque()
        """Latency-bound problems (``solve``/``solve_stream``): started before the batch
        queue, first come first served among themselves."""
        self.active: dict[int, ProblemState] = {}
        self.stopping: dict[int, ProblemState] = {}
        """Delivered problems with samples still out (past ``settle_grace_s``), until they return."""
        self.grade = grade
        """Grade results here (``correct``); the coordinator grades off its event loop instead."""
        self.down: set[int] = set()
        """Engines out of rotation until ``engine_up``."""
        self.dead: set[int] = set()
        """Engines given up for good."""
        self._keys = itertools.count(1)
        self._activations = itertools.count()
        self._ready: list[tuple[int, int]] = []
        """(activation number, key) of active problems that may be able to start a sample."""
        self._in_ready: set[int] = set()
        self._with_deadline = 0
        """Problems queued or active with a deadline (``next_wake`` looks for deadlines only then)."""
        self.counters = {
            "problems_done": 0, "samples_started": 0, "samples_finished": 0,
            "samples_cancelled": 0, "samples_retried": 0, "samples_failed": 0, "samples_late": 0,
            "cancel_calls": 0, "run_calls": 0, "samples_after_delivery": 0,
        }

    # ---- events -------------------------------------------------------------------------

    def submit(self, problem: Problem, options: SolveOptions | None = None, urgent: bool = False,
               streaming: bool = False) -> int:
        """Queue a problem; ``urgent`` ones (single latency-bound calls) start before batch work.
        Returns the problem's key. Call ``fill`` afterwards to start its samples."""
        state = self._new_problem(problem, options or SolveOptions(), streaming)
        (self.urgent if urgent else self.queue).append(state)
        return state.key

    def fill(self) -> list[Action]:
        """Start samples until every engine is at its depth or nothing can start."""
        if len(self.dead) == len(self.depths):
            return self.cancel(lambda state: True, NO_ENGINE_LEFT)  # answer with what they have
        actions: list[Action] = []
        while True:
            engine = self._free_engine()
            if engine is None:
                return actions
            state = self._next_startable()
            if state is None:
                return actions
            actions.append(self._start_sample(state, engine))

    def sample_finished(self, key: int, record: SampleRecord) -> list[Action]:
        """Sample ``record.sample_idx`` of problem ``key`` came back (finished or cancelled)."""
        if key in self.stopping:
            return self._returned_after_delivery(key, record.sample_idx)
        state = self.active[key]
        dispatched = self._leave(state, record.sample_idx)
        actions = self._on_record(state, record, dispatched)
        return actions + self._after_return(state)

    def sample_failed(self, key: int, idx: int, error: str, engine_died: bool) -> list[Action]:
        """Sample ``idx`` raised instead of returning a record. With ``engine_died`` it is retried
        (up to ``max_sample_retries`` times, unless its problem has settled) and the caller should
        report the engine with ``engine_down``; otherwise it counts as a failed sample."""
        if key in self.stopping:
            return self._returned_after_delivery(key, idx)
        state = self.active[key]
        dispatched = self._leave(state, idx)
        actions: list[Action] = []
        if engine_died and state.settled is None and state.attempts[idx] <= self.settings.max_sample_retries:
            state.retry.append(idx)
            self.counters["samples_retried"] += 1
        else:
            record = state.empty_record(idx, cancelled=state.settled is not None, error=error)
            actions = self._on_record(state, record, dispatched)
        return actions + self._after_return(state)

    def engine_down(self, engine: int) -> None:
        """Take an engine out of rotation (its actor died; it may come back)."""
        self.down.add(engine)

    def engine_up(self, engine: int) -> list[Action]:
        self.down.discard(engine)
        return self.fill()

    def engine_dead(self, engine: int) -> list[Action]:
        """The engine did not come back: give it up (when none is left, everything is answered)."""
        self.down.add(engine)
        self.dead.add(engine)
        return self.fill()

    def cancel(self, match: Callable[[ProblemState], bool], reason: str) -> list[Action]:
        """Settle every matching problem now with the votes so far (``reason``); queued ones end
        without samples. Their results are still delivered."""
        now = self.clock()
        actions: list[Action] = []
        for queue in (self.urgent, self.queue):
            for state in [s for s in queue if match(s)]:
                queue.remove(state)
                state.settled = Settled(None, reason)
                state.settled_at = now
                actions.append(self._finalize(state, now))
        for state in [s for s in self.active.values() if match(s)]:
            if state.settled is None:
                actions += self._settle(state, Settled(_leader(state.counts), reason), now)
            actions += self._maybe_finalize(state)
        return actions

    def cancel_key(self, key: int, reason: str = "cancelled") -> list[Action]:
        return self.cancel(lambda s: s.key == key, reason)

    def tick(self) -> list[Action]:
        """Re-ask the stop policies (time-based rules) and settle problems past their deadline."""
        now = self.clock()
        actions = self.cancel(lambda s: s.deadline is not None and now >= s.deadline and s.settled is None,
                              "time_limit")
        for state in list(self.active.values()):
            if state.settled is None and state.started_at is not None:
                actions += self._decide(state, now)
            actions += self._maybe_finalize(state)
        return actions + self.fill()

    # ---- queries ------------------------------------------------------------------------

    def busy(self) -> bool:
        return bool(self.active or self.queue or self.urgent)

    def next_wake(self) -> float | None:
        """Clock time by which ``tick`` should run next (None: nothing to watch): every
        ``TICK_S`` while problems are open, sooner when a deadline falls before that."""
        if not self.busy():
            return None
        now = self.clock()
        wake = now + TICK_S
        grace = self.settings.settle_grace_s
        if grace is not None:
            for s in self.active.values():
                if s.settled_at is not None and s.in_flight:
                    wake = min(wake, max(now, s.settled_at + grace))
        if self._with_deadline:
            for q in (self.active.values(), self.urgent, self.queue):
                for s in q:
                    if s.deadline is not None and s.settled is None:
                        wake = min(wake, max(now, s.deadline))
        return wake

    def problems(self) -> Iterable[ProblemState]:
        """Every problem not yet finished: active, then urgent, then queued."""
        return itertools.chain(self.active.values(), self.urgent, self.queue)

    def stats(self) -> dict[str, object]:
        return {
            **self.counters,
            "queued": len(self.queue) + len(self.urgent),
            "active": len(self.active),
            "in_flight": sum(self.load),
            "engine_load": list(self.load),
            "engines_down": sorted(self.down),
            "stopping": len(self.stopping),
        }

    # ---- internals ----------------------------------------------------------------------

    def _new_problem(self, problem: Problem, o: SolveOptions, streaming: bool) -> ProblemState:
        cfg = self.settings
        mode = o.mode or cfg.mode
        if mode not in MODES:
            raise ValueError(f"unknown scheduling mode {mode!r}: use 'pool', 'wave' or 'launch-all'")
        base = cfg.sample
        key = next(self._keys)
        template = SampleRequest(
            problem_id=problem.id,
            sample_idx=0,
            problem_text=problem.text,
            seed=problem_seed(cfg.seed, problem.id),
            run_key=key,
            settings=replace(
                base,
                max_tokens=o.max_tokens or base.max_tokens,
                max_code_calls=base.max_code_calls if o.max_code_calls is None else o.max_code_calls,
                temperature=base.temperature if o.temperature is None else o.temperature,
                modulus=o.modulus or base.modulus,
            ),
        )
        num_samples = o.num_samples or cfg.num_samples
        if template.settings.temperature <= 0 and num_samples > 1:
            raise ValueError(f"temperature 0 (greedy decoding) with {num_samples} samples: every sample would be "
                             "the same and the vote would mean nothing; use temperature > 0, or 1 sample")
        state = ProblemState(
            key=key,
            problem=problem,
            num_samples=num_samples,
            pool_size=None if mode == "launch-all" else (o.pool_size or cfg.pool_size),
            policy=parse_policy(o.stop_policy or cfg.stop_policy),
            template=template,
            mode=mode,
            streaming=streaming,
            deadline=None if o.time_limit_s is None else self.clock() + o.time_limit_s,
        )
        self._with_deadline += state.deadline is not None
        return state

    def _free_engine(self) -> int | None:
        best, best_ratio = None, 1.0
        for i, (load, depth) in enumerate(zip(self.load, self.depths)):
            ratio = load / depth
            if ratio < best_ratio and i not in self.down:
                best, best_ratio = i, ratio
        return best

    def _next_startable(self) -> ProblemState | None:
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
        cap = self.settings.max_active_problems
        while (self.urgent or self.queue) and (cap is None or len(self.active) < cap):
            state = (self.urgent or self.queue).popleft()
            self.active[state.key] = state
            state.activated = next(self._activations)
            self._mark_ready(state)
            if state.can_start():
                return state
        return None

    def _mark_ready(self, state: ProblemState) -> None:
        if state.key not in self._in_ready and state.key in self.active:
            self._in_ready.add(state.key)
            heapq.heappush(self._ready, (state.activated, state.key))

    def _start_sample(self, state: ProblemState, engine: int) -> StartSample:
        now = self.clock()
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
        state.in_flight[idx] = (engine, now)
        self.load[engine] += 1
        self.counters["samples_started"] += 1
        self.counters["run_calls"] += 1
        return StartSample(engine, state.request(idx))

    def _leave(self, state: ProblemState, idx: int) -> float:
        """Sample ``idx`` is back: free its engine slot; returns when it was dispatched."""
        engine, dispatched = state.in_flight.pop(idx)
        self.load[engine] -= 1
        return dispatched

    def _after_return(self, state: ProblemState) -> list[Action]:
        self._mark_ready(state)  # a slot of its pool (or its wave) may have opened
        return self._maybe_finalize(state) + self.fill()

    def _on_record(self, state: ProblemState, record: SampleRecord, dispatched: float) -> list[Action]:
        now = self.clock()
        assert state.started_at is not None
        record.start_s = round(dispatched - state.started_at, 4)
        record.end_s = round(now - state.started_at, 4)
        record.attempt = state.attempts.get(record.sample_idx, 1)
        state.records.append(record)
        actions: list[Action] = []
        if state.streaming:
            actions.append(StreamEvent(state.key, {"event": "sample", "sample": record.to_row(),
                                                   "votes": dict(state.counts)}))
        if record.cancelled:
            self.counters["samples_cancelled"] += 1
            return actions
        if record.finish_reason == "error":
            state.failed += 1
            self.counters["samples_failed"] += 1
        if state.settled is not None:  # its cancel lost the race: kept, but it no longer votes
            record.late = True
            state.late += 1
            self.counters["samples_late"] += 1
            return actions
        state.finished += 1
        self.counters["samples_finished"] += 1
        record.finish_order = state.finished
        state.history.append(record.answer)
        if record.answer is not None:
            state.counts[record.answer] = state.counts.get(record.answer, 0) + 1
        return actions + self._decide(state, now)

    def _decide(self, state: ProblemState, now: float) -> list[Action]:
        vote = state.vote_state(now)
        decision = state.policy.decide(vote)
        if isinstance(decision, Settled):
            return self._settle(state, decision, now)
        if vote.remaining == 0:
            return self._settle(state, final_decision(vote), now)
        return []

    def _settle(self, state: ProblemState, decision: Settled, now: float) -> list[Action]:
        state.settled = decision
        state.settled_at = now
        state.retry.clear()
        actions: list[Action] = []
        if state.streaming:
            actions.append(StreamEvent(state.key, {
                "event": "settled", "answer": decision.answer, "reason": decision.reason,
                "votes": dict(state.counts), "in_flight": len(state.in_flight)}))
        by_engine: dict[int, list[str]] = {}
        for idx, (engine, _) in state.in_flight.items():
            by_engine.setdefault(engine, []).append(state.request(idx).key)
        for engine, keys in by_engine.items():
            self.counters["cancel_calls"] += 1
            actions.append(CancelSamples(engine, tuple(keys), now))
        return actions

    def _maybe_finalize(self, state: ProblemState) -> list[Action]:
        if state.settled is None or state.key not in self.active:
            return []
        now = self.clock()
        grace = self.settings.settle_grace_s
        if not state.in_flight or (grace is not None and now >= (state.settled_at or now) + grace):
            return [self._finalize(state, now)]
        return []

    def _finalize(self, state: ProblemState, now: float) -> ProblemDone:
        self.active.pop(state.key, None)
        self._with_deadline -= state.deadline is not None
        self.counters["problems_done"] += 1
        if state.in_flight:  # still stopping past the grace: delivered without them
            for idx, (engine, dispatched) in sorted(state.in_flight.items()):
                state.records.append(state.empty_record(
                    idx, cancelled=True, error="still stopping when the result was delivered",
                    wall_s=round(now - dispatched, 4), engine=engine, attempt=state.attempts.get(idx, 1)))
                self.counters["samples_cancelled"] += 1
            self.stopping[state.key] = state
        return ProblemDone(state.key, build_result(state, now, grade=self.grade), state.template.settings.modulus)

    def _returned_after_delivery(self, key: int, idx: int) -> list[Action]:
        """A sample of an already delivered problem came back: only its engine slot matters now."""
        state = self.stopping[key]
        self._leave(state, idx)
        self.counters["samples_after_delivery"] += 1
        if not state.in_flight:
            del self.stopping[key]
        return self.fill()


def build_result(state: ProblemState, now: float, grade: bool = True) -> ProblemResult:
    """The ``ProblemResult`` of a settled problem (``correct`` left None without ``grade``)."""
    decision = state.settled or Settled(None, "cancelled")
    gold = state.problem.answer
    start = state.started_at if state.started_at is not None else now
    records = sorted(state.records, key=lambda r: r.sample_idx)
    failure = None
    if decision.reason == NO_ENGINE_LEFT:
        failure = NO_ENGINE_LEFT
    elif decision.answer is None and state.finished and state.failed == state.finished:
        first = next((r.error for r in records if r.finish_reason == "error" and r.error), "")
        failure = f"every sample failed ({first})" if first else "every sample failed"
    answer_text = next((r.answer_text for r in state.records
                        if r.answer == decision.answer and r.answer is not None and not r.late), None)
    graded = answer_text or decision.answer
    return ProblemResult(
        problem_id=state.problem.id,
        answer=decision.answer,
        settle_reason=decision.reason,
        votes=dict(sorted(state.counts.items(), key=lambda kv: -kv[1])),
        gold=gold,
        answer_text=answer_text,
        correct=None if gold is None or not grade else is_correct(graded, gold, state.template.settings.modulus),
        samples_budget=state.num_samples,
        samples_started=len({r.sample_idx for r in records}),
        samples_finished=state.finished,
        samples_cancelled=sum(r.cancelled for r in records),
        samples_failed=state.failed,
        samples_late=state.late,
        generated_tokens=sum(r.generated_tokens for r in records),
        tool_output_tokens=sum(r.tool_output_tokens for r in records),
        code_calls=sum(r.code_calls for r in records),
        settle_s=round((state.settled_at or now) - start, 4),
        wall_s=round(now - start, 4),
        policy=state.policy.name,
        mode=state.mode,
        failure=failure,
        samples=records,
    )


def _leader(counts: dict[str, int]) -> str | None:
    """The answer with the most votes; the first seen among ties (dicts keep insertion order)."""
    return max(counts, key=counts.__getitem__) if counts else None

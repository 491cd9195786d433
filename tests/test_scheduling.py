"""The pure scheduler (`raysolve.core.scheduling`) on a simulated clock: no Ray, no timers.

Unit tests pin each mode's behaviour; a hypothesis state machine drives random
interleavings of submit / start / finish / cancel / failure / engine-death / clock events
and checks the invariants after every step and once everything has drained.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from raysolve.core.records import Problem, ProblemResult, SampleRecord, SampleSettings
from raysolve.core.scheduling import (
    MODES,
    TICK_S,
    CancelSamples,
    ProblemDone,
    Scheduler,
    SchedulerSettings,
    SolveOptions,
    StartSample,
    StreamEvent,
    problem_seed,
    sample_seed,
)
from raysolve.core.tir import segment_seed


class Clock:
    """A simulated monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(start: StartSample, answer: str | None = "1", cancelled: bool = False) -> SampleRecord:
    r = start.request
    return SampleRecord(problem_id=r.problem_id, sample_idx=r.sample_idx, seed=r.seed, answer=None if cancelled else answer,
                        finish_reason="cancelled" if cancelled else "eos", cancelled=cancelled,
                        generated_tokens=10, tool_output_tokens=0, code_calls=0, code_errors=0, wall_s=0.1)


def starts(actions) -> list[StartSample]:
    return [a for a in actions if isinstance(a, StartSample)]


def done(actions) -> list[ProblemResult]:
    return [a.result for a in actions if isinstance(a, ProblemDone)]


def make(depths=(8,), **kw) -> tuple[Scheduler, Clock]:
    clock = Clock()
    return Scheduler(SchedulerSettings(**kw), list(depths), clock), clock


# ---- modes ------------------------------------------------------------------------------------


def test_pool_mode_keeps_at_most_pool_size_in_flight_and_refills():
    s, _ = make(num_samples=6, pool_size=2, stop_policy="full")
    s.submit(Problem("p", "x"))
    first = starts(s.fill())
    assert [a.request.sample_idx for a in first] == [0, 1]
    nxt = starts(s.sample_finished(first[0].request.run_key, record(first[0])))
    assert [a.request.sample_idx for a in nxt] == [2]
    assert len(s.active[first[0].request.run_key].in_flight) == 2


def test_launch_all_starts_every_sample_and_engines_cap_the_depth():
    s, _ = make(depths=(3, 2), num_samples=8, mode="launch-all")
    s.submit(Problem("p", "x"))
    out = starts(s.fill())
    assert len(out) == 5  # 3 + 2: the engines' depths, not the problem, limit it
    assert Counter(a.engine for a in out) == {0: 3, 1: 2}


def test_wave_mode_launches_the_next_wave_only_when_the_whole_wave_is_back():
    s, _ = make(num_samples=8, pool_size=3, mode="wave", stop_policy="full")
    s.submit(Problem("p", "x"))
    wave = starts(s.fill())
    assert len(wave) == 3
    assert starts(s.sample_finished(wave[0].request.run_key, record(wave[0]))) == []
    assert starts(s.sample_finished(wave[1].request.run_key, record(wave[1]))) == []
    second = starts(s.sample_finished(wave[2].request.run_key, record(wave[2])))
    assert [a.request.sample_idx for a in second] == [3, 4, 5]


def test_settling_cancels_siblings_and_a_late_finish_does_not_vote():
    s, _ = make(num_samples=6, mode="launch-all", stop_policy="first-k:2")
    key = s.submit(Problem("p", "x", answer="7"))
    out = starts(s.fill())
    s.sample_finished(key, record(out[0], "7"))
    actions = s.sample_finished(key, record(out[1], "7"))
    cancels = [a for a in actions if isinstance(a, CancelSamples)]
    assert sorted(k for c in cancels for k in c.keys) == sorted(a.request.key for a in out[2:])
    assert starts(s.fill()) == []  # a settled problem starts nothing
    s.sample_finished(key, record(out[2], "9"))  # its cancel lost the race
    for a in out[3:]:
        results = done(s.sample_finished(key, record(a, cancelled=True)))
    (result,) = results
    assert result.answer == "7" and result.votes == {"7": 2} and result.correct is True
    assert result.samples_finished == 2 and result.samples_late == 1 and result.samples_cancelled == 3
    late = [r for r in result.samples if r.late]
    assert [r.sample_idx for r in late] == [2] and late[0].answer == "9"


def test_a_deadline_settles_at_the_deadline_with_the_partial_vote():
    s, clock = make(num_samples=4, mode="launch-all", stop_policy="full")
    key = s.submit(Problem("p", "x"), SolveOptions(time_limit_s=0.3))
    out = starts(s.fill())
    assert s.next_wake() == pytest.approx(clock.now + 0.3)  # wakes for the deadline, not at the next tick
    clock.now += 0.1
    s.sample_finished(key, record(out[0], "5"))
    clock.now += 0.2
    actions = s.tick()
    assert {k for a in actions if isinstance(a, CancelSamples) for k in a.keys} == {a.request.key for a in out[1:]}
    for a in out[1:]:
        actions = s.sample_finished(key, record(a, cancelled=True))
    (result,) = done(actions)
    assert result.settle_reason == "time_limit" and result.answer == "5" and result.votes == {"5": 1}
    assert result.settle_s == pytest.approx(0.3)


def test_next_wake_is_a_tick_while_busy_and_none_when_idle():
    s, clock = make(num_samples=1)
    assert s.next_wake() is None
    key = s.submit(Problem("p", "x"))
    (a,) = starts(s.fill())
    assert s.next_wake() == pytest.approx(clock.now + TICK_S)
    s.sample_finished(key, record(a))
    assert s.next_wake() is None


def test_engine_death_retries_in_flight_samples_and_counts_attempts():
    s, _ = make(depths=(2, 2), num_samples=2, mode="launch-all", stop_policy="full", max_sample_retries=1)
    key = s.submit(Problem("p", "x"))
    out = starts(s.fill())
    dead_engine = out[0].engine
    s.engine_down(dead_engine)
    retried = starts(s.sample_failed(key, out[0].request.sample_idx, "RayActorError: died", engine_died=True))
    assert len(retried) == 1 and retried[0].engine != dead_engine
    assert retried[0].request.seed == out[0].request.seed  # the same sample, run again
    s.sample_finished(key, record(out[1]))
    (result,) = done(s.sample_finished(key, record(retried[0])))
    assert result.samples_finished == 2
    assert sorted(r.attempt for r in result.samples) == [1, 2]


def test_no_engine_left_answers_every_problem_with_what_it_has():
    s, _ = make(depths=(1,), num_samples=3, stop_policy="full")
    key = s.submit(Problem("a", "x"))
    s.submit(Problem("b", "y"))
    (a,) = starts(s.fill())
    s.engine_down(0)
    s.sample_failed(key, a.request.sample_idx, "RayActorError", engine_died=True)
    results = done(s.engine_dead(0))
    assert sorted(r.problem_id for r in results) == ["a", "b"]
    assert all(r.settle_reason == "no engine left" and r.answer is None for r in results)


def test_samples_of_a_problem_have_distinct_seeds_and_segment_seeds():
    base = problem_seed(0, "p")
    seeds = [sample_seed(base, i) for i in range(64)]
    assert len(set(seeds)) == 64
    segments = {segment_seed(seed, k) for seed in seeds for k in range(8)}
    assert len(segments) == 64 * 8


def test_options_override_the_run_defaults():
    s, _ = make(num_samples=8, sample=SampleSettings(max_tokens=100, temperature=0.7))
    s.submit(Problem("p", "x"), SolveOptions(num_samples=2, max_tokens=50, temperature=0.3, max_code_calls=0,
                                             mode="launch-all"))
    out = starts(s.fill())
    assert len(out) == 2
    settings_ = out[0].request.settings
    assert (settings_.max_tokens, settings_.temperature, settings_.max_code_calls) == (50, 0.3, 0)


def test_unknown_mode_is_refused():
    s, _ = make()
    with pytest.raises(ValueError, match="unknown scheduling mode"):
        s.submit(Problem("p", "x"), SolveOptions(mode="sideways"))


def test_urgent_problems_start_before_batch_work_first_come_first_served():
    s, _ = make(depths=(1,), num_samples=1)
    s.submit(Problem("batch", "x"))
    s.submit(Problem("u1", "x"), urgent=True)
    s.submit(Problem("u2", "x"), urgent=True)
    order = []
    (a,) = starts(s.fill())
    while a is not None:
        order.append(a.request.problem_id)
        nxt = starts(s.sample_finished(a.request.run_key, record(a)))
        a = nxt[0] if nxt else None
    assert order == ["u1", "u2", "batch"]


def test_the_answer_is_delivered_within_the_settle_grace_even_if_a_sibling_never_stops():
    s, clock = make(depths=(4,), num_samples=4, pool_size=4, stop_policy="first-k:2", settle_grace_s=1.0)
    key = s.submit(Problem("p", "x", answer="1"))
    a = starts(s.fill())
    assert not any(isinstance(x, ProblemDone) for x in s.sample_finished(key, record(a[0])))
    settle = s.sample_finished(key, record(a[1]))
    assert any(isinstance(x, CancelSamples) for x in settle) and not any(isinstance(x, ProblemDone) for x in settle)
    done = [x for x in s.sample_finished(key, record(a[2], cancelled=True)) if isinstance(x, ProblemDone)]
    assert not done  # one sibling still out: wait for it, up to the grace
    clock.now += 0.5
    assert s.next_wake() == pytest.approx(clock.now + 0.5) and not [x for x in s.tick() if isinstance(x, ProblemDone)]
    clock.now += 0.5
    (done,) = [x for x in s.tick() if isinstance(x, ProblemDone)]
    r = done.result
    assert r.answer == "1" and r.votes == {"1": 2} and r.samples_cancelled == 2 and r.failure is None
    stuck = [x for x in r.samples if x.sample_idx == a[3].request.sample_idx]
    assert stuck[0].cancelled and stuck[0].error == "still stopping when the result was delivered"
    assert s.load == [1] and s.stats()["stopping"] == 1
    s.sample_finished(key, record(a[3]))  # it comes back at last: its slot is free, nothing else changes
    assert s.load == [0] and s.stats()["stopping"] == 0 and s.counters["samples_after_delivery"] == 1


def test_a_problem_whose_every_sample_failed_is_a_failure_not_an_answer():
    s, _ = make(depths=(2,), num_samples=2, pool_size=2, stop_policy="full")
    key = s.submit(Problem("p", "x", answer="1"))
    a = starts(s.fill())
    s.sample_failed(key, a[0].request.sample_idx, "bad request", engine_died=False)
    (done,) = [x for x in s.sample_failed(key, a[1].request.sample_idx, "bad request", engine_died=False)
               if isinstance(x, ProblemDone)]
    assert done.result.answer is None and done.result.failure == "every sample failed (bad request)"


def test_a_retry_has_its_own_request_key():
    s, _ = make(depths=(2,), num_samples=1, pool_size=1, max_sample_retries=1)
    key = s.submit(Problem("p", "x"))
    (first,) = starts(s.fill())
    s.engine_down(0)
    s.sample_failed(key, first.request.sample_idx, "actor died", engine_died=True)
    (again,) = starts(s.engine_up(0))
    assert again.request.attempt == 2 and again.request.key != first.request.key


def test_greedy_decoding_with_many_samples_is_refused():
    s, _ = make()
    with pytest.raises(ValueError, match="temperature 0"):
        s.submit(Problem("p", "x"), SolveOptions(num_samples=4, temperature=0.0))
    s.submit(Problem("q", "x"), SolveOptions(num_samples=1, temperature=0.0))  # one greedy sample is fine


# ---- random interleavings ----------------------------------------------------------------------

POLICIES = ["full", "unbeatable", "first-k:2", "default", "k-identical:2", "stragglers:1", "esc:2", "time:1.5",
            "beta:0.9:min=2", "among:2/3"]
ANSWERS = ["1", "2", "3", None]


class SchedulerMachine(RuleBasedStateMachine):
    """A shell that carries out the scheduler's actions, with events in any order."""

    @initialize(depths=st.lists(st.integers(1, 4), min_size=1, max_size=3), retries=st.integers(0, 2),
                cap=st.none() | st.integers(1, 3))
    def setup(self, depths, retries, cap):
        self.clock = Clock()
        self.settings = SchedulerSettings(num_samples=4, pool_size=2, max_sample_retries=retries,
                                          max_active_problems=cap)
        self.s = Scheduler(self.settings, depths, self.clock)
        self.depths = depths
        self.running: dict[str, StartSample] = {}
        """What the engines hold: request key -> its start."""
        self.cancelling: set[str] = set()
        self.results: dict[int, ProblemResult] = {}
        self.submitted: dict[int, int] = {}
        """key -> number of samples asked for."""
        self.starts: Counter[int] = Counter()
        self.retried: Counter[int] = Counter()
        self.settled_keys: set[int] = set()

    # -- carrying out actions, checking what must hold of each --

    def apply(self, actions) -> None:
        for a in actions:
            if isinstance(a, StartSample):
                key = a.request.run_key
                assert key not in self.results, "a finished problem started a sample"
                assert self.s.active[key].settled is None, "a settled problem started a sample"
                assert a.request.key not in self.running, "one sample in flight twice"
                assert a.engine not in self.s.down
                self.running[a.request.key] = a
                self.starts[key] += 1
            elif isinstance(a, CancelSamples):
                for k in a.keys:
                    assert k in self.running and self.running[k].engine == a.engine
                    self.cancelling.add(k)
            elif isinstance(a, ProblemDone):
                assert a.key not in self.results, "a problem delivered twice"
                out = {st_.request.sample_idx for st_ in self.running.values() if st_.request.run_key == a.key}
                if out:  # delivered past the settle grace: what is still out is recorded as stopping
                    assert a.key in self.s.stopping and a.result.settle_reason
                    stopping = {r.sample_idx for r in a.result.samples if r.error == "still stopping when the result was delivered"}
                    assert stopping == out and all(r.cancelled for r in a.result.samples if r.sample_idx in out)
                    assert self.clock.now >= a.result.settle_s + self.s.active.get(a.key, self.s.stopping[a.key]).started_at
                self.results[a.key] = a.result
                self.check_result(a.key, a.result)
            else:
                assert isinstance(a, StreamEvent)

    def check_result(self, key: int, result: ProblemResult) -> None:
        idxs = [r.sample_idx for r in result.samples]
        assert len(idxs) == len(set(idxs)), "a sample recorded twice"
        assert result.samples_started == len(idxs)
        assert self.starts[key] == len(idxs) + self.retried[key], "a start neither recorded nor retried"
        assert all(0 <= i < self.submitted[key] for i in idxs)
        assert result.samples_finished + result.samples_cancelled + result.samples_late == len(idxs)
        voting = [r for r in result.samples if not r.cancelled and not r.late]
        assert sum(result.votes.values()) == sum(r.answer is not None for r in voting)
        assert Counter(r.answer for r in voting if r.answer is not None) == Counter(result.votes)
        assert sorted(r.finish_order for r in voting) == list(range(1, len(voting) + 1))
        if result.answer is None:
            assert not result.votes or result.settle_reason in ("cancelled",)
        else:
            assert result.votes[result.answer] == max(result.votes.values()), "the answer is not the leader"
        seeds = [r.seed for r in result.samples]
        assert len(set(seeds)) == len(seeds)
        assert len({segment_seed(x, k) for x in seeds for k in range(7)}) == 7 * len(seeds)

    # -- events --

    @rule(mode=st.sampled_from(MODES), samples=st.integers(1, 6), pool=st.integers(1, 3),
          policy=st.sampled_from(POLICIES), limit=st.none() | st.floats(0.05, 3.0), urgent=st.booleans())
    def submit(self, mode, samples, pool, policy, limit, urgent):
        key = self.s.submit(Problem(f"p{len(self.submitted) % 3}", "text", answer="1"),
                            SolveOptions(mode=mode, num_samples=samples, pool_size=pool, stop_policy=policy,
                                         time_limit_s=limit), urgent=urgent)
        self.submitted[key] = samples
        self.apply(self.s.fill())

    @precondition(lambda self: self.running)
    @rule(data=st.data(), answer=st.sampled_from(ANSWERS), lost_race=st.booleans())
    def finish(self, data, answer, lost_race):
        k = data.draw(st.sampled_from(sorted(self.running)))
        start = self.running.pop(k)
        cancelled = k in self.cancelling and not lost_race
        self.cancelling.discard(k)
        self.apply(self.s.sample_finished(start.request.run_key, record(start, answer, cancelled)))

    @precondition(lambda self: self.running)
    @rule(data=st.data(), died=st.booleans())
    def fail(self, data, died):
        k = data.draw(st.sampled_from(sorted(self.running)))
        start = self.running.pop(k)
        self.cancelling.discard(k)
        key, idx = start.request.run_key, start.request.sample_idx
        state = self.s.active.get(key)  # None: delivered already, the sample was still stopping
        will_retry = (died and state is not None and state.settled is None
                      and state.attempts[idx] <= self.settings.max_sample_retries)
        self.retried[key] += will_retry
        if died:
            self.s.engine_down(start.engine)
        self.apply(self.s.sample_failed(key, idx, "boom", engine_died=died))

    @precondition(lambda self: self.s.down - self.s.dead)
    @rule(data=st.data())
    def engine_back(self, data):
        self.apply(self.s.engine_up(data.draw(st.sampled_from(sorted(self.s.down - self.s.dead)))))

    @precondition(lambda self: self.s.down - self.s.dead)
    @rule(data=st.data())
    def engine_given_up(self, data):
        self.apply(self.s.engine_dead(data.draw(st.sampled_from(sorted(self.s.down - self.s.dead)))))

    @precondition(lambda self: self.submitted)
    @rule(data=st.data())
    def cancel(self, data):
        self.apply(self.s.cancel_key(data.draw(st.sampled_from(sorted(self.submitted)))))

    @rule(dt=st.floats(0.0, 2.0))
    def clock_tick(self, dt):
        self.clock.now += dt
        self.apply(self.s.tick())

    # -- what holds after every step --

    @invariant()
    def engines_within_depth(self):
        if not hasattr(self, "s"):
            return
        per_engine = Counter(a.engine for a in self.running.values())
        for i, depth in enumerate(self.depths):
            assert self.s.load[i] == per_engine[i] <= depth

    @invariant()
    def problems_within_their_pool(self):
        if not hasattr(self, "s"):
            return
        cap = self.settings.max_active_problems
        assert cap is None or len(self.s.active) <= cap
        for state in self.s.active.values():
            limit = state.num_samples if state.pool_size is None else state.pool_size
            assert len(state.in_flight) <= limit
            if state.settled is not None:
                assert not state.retry

    def teardown(self):
        if not hasattr(self, "s"):
            return
        for _ in range(10_000):  # drain: every submitted problem must come out exactly once
            if not self.s.busy() and not self.running:
                break
            if self.running:
                k = sorted(self.running)[0]
                start = self.running.pop(k)
                cancelled = k in self.cancelling
                self.cancelling.discard(k)
                self.apply(self.s.sample_finished(start.request.run_key, record(start, "2", cancelled)))
                continue
            for engine in sorted(self.s.down - self.s.dead):
                self.apply(self.s.engine_up(engine))
            self.clock.now += 10.0
            self.apply(self.s.tick())
        assert not self.s.busy() and not self.running and not self.s.stopping
        assert sorted(self.results) == sorted(self.submitted)
        assert sum(self.s.load) == 0


SchedulerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow])
test_scheduler_invariants_hold_under_random_interleavings = SchedulerMachine.TestCase

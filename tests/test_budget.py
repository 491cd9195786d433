"""Budget policies and the competition loop on a simulated clock (no Ray, no engine).

``SimulatedEngine`` is a TEST DOUBLE of the solve function: it advances a fake clock by
what a problem would take and returns a ``ProblemResult`` shaped like the coordinator's.
"""

from __future__ import annotations

import pytest

from raysolve.competition.budget import AdaptiveBudget, FixedBudget, Outcome, ProblemPlan, make_policy, with_stragglers
from raysolve.competition.loop import Competition, CompetitionLog, submission_answer
from raysolve.io.problems import Problem
from raysolve.core.records import ProblemResult, SampleRecord


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SimulatedEngine:
    """Samples launched together all run at once; sample i of n finishes at
    ``(latency + slot_s * n) * (1 + 0.5 * i / n)``. ``latency_s`` models a GPU below
    saturation (latency flat in n), ``slot_s`` a CPU (latency grows with n). The problem
    settles once ``settle_after`` samples finished, or at its deadline with what finished."""

    def __init__(self, clock: Clock, *, slot_s: float = 0.0, latency_s: float = 0.0, settle_after: int = 4,
                 answer: str = "42", overhead_s: float = 0.02, fail: set[str] = frozenset()) -> None:
        self.clock, self.slot_s, self.latency_s = clock, slot_s, latency_s
        self.settle_after, self.answer, self.overhead_s, self.fail = settle_after, answer, overhead_s, fail
        self.calls: list[tuple[str, ProblemPlan]] = []

    def __call__(self, problem: Problem, plan: ProblemPlan) -> ProblemResult:
        self.calls.append((problem.id, plan))
        if problem.id in self.fail:
            self.clock.now += 0.1
            raise RuntimeError("engine actor died")
        n = plan.num_samples
        base = self.latency_s + self.slot_s * n
        finish = [base * (1 + 0.5 * i / n) for i in range(n)]
        settle_at = finish[min(self.settle_after, n) - 1]
        reason = "first-k"
        if settle_at > plan.deadline_s:
            settle_at, reason = plan.deadline_s, "time_limit"
        done = [t for t in finish if t <= settle_at]
        self.clock.now += settle_at + self.overhead_s
        samples = [SampleRecord(problem.id, i, i, self.answer if t <= settle_at else None,
                                "stop" if t <= settle_at else "cancelled", t > settle_at, 100, 0, 1, 0, t,
                                start_s=0.0, end_s=min(t, settle_at)) for i, t in enumerate(finish)]
        return ProblemResult(problem.id, self.answer if done else None, reason,
                             {self.answer: len(done)} if done else {}, samples_started=n,
                             samples_finished=len(done), samples_cancelled=n - len(done),
                             settle_s=settle_at, wall_s=settle_at, samples=samples)


def problems(n: int, gold: str = "42") -> list[Problem]:
    return [Problem(f"p{i}", f"problem {i}", gold) for i in range(n)]


# ---- policies ----------------------------------------------------------------------


def test_fixed_budget_gives_even_shares_and_never_reuses_time() -> None:
    policy = FixedBudget(total_s=100, problems=10, samples=12, stragglers=2)
    assert policy.plan(100, 10) == ProblemPlan(10.0, 12, "unbeatable|latency|stragglers:2")
    assert policy.plan(95, 5).deadline_s == 10.0  # 45 s saved earlier are not used
    assert policy.plan(20, 5).deadline_s == 4.0  # but never more than an even share of what is left


def test_adaptive_deadline_is_base_plus_buffer_capped_like_aimo2() -> None:
    # The AIMO-2 numbers: 50 problems in 17,500 s (350 s each), at most 560 s a problem.
    policy = AdaptiveBudget(total_s=17_500, problems=50)
    assert policy.base_s == 350 and policy.deadline_s(17_500, 50) == pytest.approx(350)
    assert policy.deadline_s(17_500 - 40 * 300, 10) == pytest.approx(560)  # 2,000 s of buffer, capped
    assert policy.deadline_s(17_500 - 49 * 300, 1) == pytest.approx(560)
    assert policy.deadline_s(17_500 - 10 * 340, 40) == pytest.approx(350 + 10 * 10)  # buffer below the cap
    # 500 s behind schedule: the deficit is spread evenly, not taken from this problem alone.
    assert policy.deadline_s(17_500 - 10 * 400, 40) == pytest.approx(13_500 / 40)
    assert policy.floor_s == pytest.approx(350 / 4)


def test_adaptive_deadline_keeps_later_problems_what_recent_ones_needed() -> None:
    policy = AdaptiveBudget(total_s=1000, problems=10, cap=3.0)
    assert policy.deadline_s(600, 6) == pytest.approx(100)  # on schedule, nothing learned: base
    for _ in range(4):
        policy.observe(Outcome(used_s=40, samples_launched=16, finished_latencies_s=(30,) * 16, settle_reason="x"))
    # Recent problems needed 40 s: keep 5 * 40 for the others, give this one the rest.
    assert policy.expected_need_s() == 40
    assert policy.deadline_s(600, 6) == pytest.approx(300)  # 600 - 5 * 40 = 400, capped at 3 * 100
    assert policy.deadline_s(300, 6) == pytest.approx(100)  # 300 - 5 * 40
    assert policy.deadline_s(60, 6) == pytest.approx(10)  # behind: an even share of what is left
    assert policy.deadline_s(0, 3) == 0.0


def test_adaptive_sample_count_fits_the_deadline_on_a_cpu_like_engine() -> None:
    policy = AdaptiveBudget(total_s=100, problems=10, max_samples=32, min_samples=2)
    assert policy.samples_for(10) == 32  # no history yet
    # Median latency grows with the count: 0.5 s per sample launched (16 -> 8 s).
    policy.observe(Outcome(8.0, 16, tuple([8.0] * 16), "x"))
    assert policy.samples_for(10) == 16  # 0.8 * 10 / 0.5
    assert policy.samples_for(5) == 8
    assert policy.samples_for(0.1) == 2  # min_samples


def test_adaptive_sample_count_climbs_where_latency_is_flat() -> None:
    policy = AdaptiveBudget(total_s=100, problems=10, max_samples=64, min_samples=4, window=1)
    n = 4
    for _ in range(6):  # a GPU below saturation: every sample takes 2 s, whatever the count
        policy.observe(Outcome(2.0, n, tuple([2.0] * n), "x"))
        n = policy.samples_for(10)
    assert n == 64


def test_median_latency_is_censored_when_few_samples_finished() -> None:
    assert Outcome(5.0, 8, (1, 2, 3, 4), "x").median_latency_s() == 4
    assert Outcome(5.0, 8, (1, 2, 3), "time_limit").median_latency_s() == 5.0  # at least the time they ran


def test_policy_specs_are_checked() -> None:
    assert with_stragglers("full", 0) == "full"
    with pytest.raises(ValueError, match="stragglers"):
        with_stragglers("nonsense", 2)
    with pytest.raises(ValueError, match="unknown budget policy"):
        make_policy("greedy", 10, 2)
    with pytest.raises(ValueError, match="min_samples"):
        AdaptiveBudget(10, 2, max_samples=4, min_samples=8)
    with pytest.raises(ValueError, match="total_s"):
        FixedBudget(0, 2)


# ---- the competition loop -----------------------------------------------------------


def test_run_stays_within_budget_and_unused_time_flows_forward() -> None:
    clock = Clock()
    engine = SimulatedEngine(clock, slot_s=0.05)  # 16 samples: 0.8 s to the 4th finish
    run = Competition(AdaptiveBudget(total_s=60, problems=20), engine, problems_total=20, total_s=60,
                      modulus=1000, clock=clock)
    rows = run.run(problems(20))
    assert len(rows) == 20 and all(r.answer == 42 and r.correct for r in rows)
    assert run.elapsed_s() <= 60
    plans = [plan for _, plan in engine.calls]
    assert plans[0].deadline_s == pytest.approx(3.0)
    assert all(p.deadline_s > 3.0 for p in plans[1:])  # earlier problems left time unused
    assert max(p.deadline_s for p in plans) <= 1.6 * 3.0 + 1e-9


def test_fixed_budget_wastes_what_the_adaptive_one_reuses() -> None:
    def run(policy):
        clock = Clock()
        # Half the problems are slow (need 4 s with 16 samples), half fast (0.5 s).
        slow = {f"p{i}" for i in range(0, 20, 2)}
        fast_engine, slow_engine = SimulatedEngine(clock, slot_s=0.03), SimulatedEngine(clock, slot_s=0.25)
        comp = Competition(policy, lambda p, plan: (slow_engine if p.id in slow else fast_engine)(p, plan),
                           problems_total=20, total_s=60, clock=clock)
        rows = comp.run(problems(20))
        return rows, comp.elapsed_s()

    fixed, fixed_s = run(FixedBudget(60, 20, samples=16))
    adaptive, adaptive_s = run(AdaptiveBudget(60, 20, max_samples=16))
    assert fixed_s <= 60 and adaptive_s <= 60
    assert sum(r.answer_source == "vote" for r in adaptive) > sum(r.answer_source == "vote" for r in fixed)


def test_a_failed_problem_gets_the_fallback_and_the_run_goes_on() -> None:
    clock = Clock()
    engine = SimulatedEngine(clock, slot_s=0.01, fail={"p1"})
    run = Competition(FixedBudget(30, 3), engine, problems_total=3, total_s=30, modulus=1000,
                      fallback_answer=1234, clock=clock)
    rows = run.run(problems(3))
    assert [r.answer for r in rows] == [42, 234, 42]  # the fallback, modulo 1000
    assert rows[1].answer_source == "fallback" and rows[1].settle_reason == "error"
    assert "engine actor died" in rows[1].error and rows[1].correct is False


def test_a_deadline_answers_with_the_partial_vote_or_the_fallback() -> None:
    clock = Clock()
    # 16 samples finish between 3.2 s and 4.8 s; deadline 4 s: some finished, partial vote.
    partial = Competition(FixedBudget(4, 1), SimulatedEngine(clock, slot_s=0.2, settle_after=16),
                          problems_total=1, total_s=4, clock=clock).answer(Problem("a", "x", "42"))
    assert (partial.answer, partial.answer_source, partial.settle_reason) == (42, "partial", "time_limit")
    assert 0 < partial.samples_finished < 16
    none = Competition(FixedBudget(2, 1), SimulatedEngine(clock, slot_s=0.2), problems_total=1, total_s=2,
                       clock=clock, fallback_answer=7).answer(Problem("b", "x", "42"))
    assert (none.answer, none.answer_source, none.samples_finished) == (7, "fallback", 0)


def test_no_time_left_answers_at_once_without_solving() -> None:
    clock = Clock()
    engine = SimulatedEngine(clock, slot_s=0.01)
    run = Competition(FixedBudget(10, 2), engine, problems_total=2, total_s=10, clock=clock)
    clock.now += 11  # start-up overran the budget
    row = run.answer(Problem("late", "x"))
    assert row.settle_reason == "no_time" and row.answer == 0 and engine.calls == []


def test_submission_answer_rules() -> None:
    def result(answer, votes, reason="beta"):
        return ProblemResult("p", answer, reason, votes)

    assert submission_answer(result("1234", {"1234": 3}), 1000, 0) == (234, "vote")
    assert submission_answer(result("-3", {"-3": 2}), 1000, 0) == (997, "vote")
    assert submission_answer(result("3/4", {"3/4": 3, "12": 2}), None, 0) == (12, "vote")
    assert submission_answer(result("5", {"5": 1}, "time_limit"), 1000, 0) == (5, "partial")
    assert submission_answer(result(None, {}), 1000, 1999) == (999, "fallback")
    assert submission_answer(None, 100000, 5) == (5, "fallback")


def test_log_resumes_and_charges_the_time_already_spent(tmp_path) -> None:
    clock = Clock()
    log = CompetitionLog(tmp_path)
    run = Competition(FixedBudget(30, 3), SimulatedEngine(clock, slot_s=0.1), problems_total=3, total_s=30,
                      clock=clock, log=log)
    first = run.answer(Problem("p0", "x", "42"))
    log.close()
    with (tmp_path / "problems.jsonl").open("a") as f:
        f.write('{"id": "torn')  # a crash mid-write
    log = CompetitionLog(tmp_path)
    assert log.done_ids == {"p0"} and log.spent_s == pytest.approx(first.used_s)
    again = Competition(FixedBudget(30, 3), SimulatedEngine(clock, slot_s=0.1), problems_total=3, total_s=30,
                        clock=clock, log=log, spent_before_s=log.spent_s)
    assert again.problems_left == 2 and again.time_left_s() == pytest.approx(30 - first.used_s)
    again.run(problems(3)[1:])
    summary = again.summary()
    log.finish(summary)
    log.close()
    assert summary["problems"] == 3 and summary["score"] == 1.0 and summary["within_budget"]
    lines = (tmp_path / "submission.csv").read_text().splitlines()
    assert lines == ["id,answer", "p0,42", "p1,42", "p2,42"]
    assert (tmp_path / "time-per-problem.png").stat().st_size > 1000

"""Coordinator + engine actors + sandbox actor on a local Ray instance, with the scripted TEST engine.

The scripted engine stands in for the model only; Ray, the actors, the tool loop and the
process sandbox are real. No assertion here depends on how fast the machine is: samples
that must still be running when something happens are made too long to finish on their own
(``HOLD``: only a cancel ends them), and tests wait for observed states, not for sleeps. The
scheduling decisions themselves are tested on a simulated clock in ``test_scheduling.py``.
"""

import time

import pytest

from raysolve.core.scheduling import SolveOptions
from raysolve.runtime.config import EngineConfig, SolverConfig
from raysolve.engines.testing.scripted import crash_once_problem, directive_problem, fault_once_problem
from raysolve.io.problems import Problem
from raysolve.runtime.solver import Solver


def scripted_config(**scheduling) -> SolverConfig:
    cfg = SolverConfig(engine=EngineConfig(backend="scripted", num_cpus=0.5,
                                           options={"tokens_per_s": 4000, "concurrency": 16}))
    cfg.budget.max_tokens = 100_000
    for k, v in scheduling.items():
        setattr(cfg.scheduling, k, v)
    return cfg


HOLD = 100_000
"""Tokens of a sample that, in these tests, only a cancel ends: 25 s at the scripted 4,000 tokens/s,
hundreds of times what the short samples beside it need."""


def wait_until(condition, what: str, timeout_s: float = 120.0) -> None:
    """Poll ``condition`` until true; the timeout only turns a hang into a failure."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def solver(ray_local):
    with Solver(scripted_config()) as s:
        yield s


def _interval_overlap(records):
    events = sorted([(r.start_s, 1) for r in records] + [(r.end_s, -1) for r in records],
                    key=lambda e: (e[0], e[1]))
    depth = peak = 0
    for _, d in events:
        depth += d
        peak = max(peak, depth)
    return peak


def test_settled_problem_cancels_its_in_flight_siblings(solver):
    # 8 samples launched together, all answer 42; samples 0-4 are short, 5-7 never end on their own.
    # After 5 votes the lead (5) beats the 3 still out: the vote settles and cancels them.
    problem = Problem("p", directive_problem(["42"], [60, 90, 120, 150, 180, HOLD, HOLD, HOLD], code=False),
                      answer="42")
    result = solver.solve(problem, SolveOptions(mode="launch-all", num_samples=8, stop_policy="unbeatable"))
    assert result.answer == "42" and result.correct is True
    assert result.settle_reason == "unbeatable"
    assert result.votes == {"42": 5} and result.samples_finished == 5 and result.samples_late == 0
    cancelled = [r for r in result.samples if r.cancelled]
    assert sorted(r.sample_idx for r in cancelled) == [5, 6, 7]
    for r in cancelled:  # stopped part-way
        assert r.generated_tokens < HOLD
        assert r.finish_reason == "cancelled" and r.finish_order is None
    assert sorted(r.finish_order for r in result.samples if not r.cancelled) == [1, 2, 3, 4, 5]
    engines = solver.stats()["engines"]
    assert sum(e["active"] for e in engines) == 0  # nothing is still generating
    assert sum(e["samples_cancelled"] for e in engines) >= 3


def test_early_stop_saves_tokens_against_the_full_vote(solver):
    problems = [Problem(f"q{i}", directive_problem(["7"], [200, 260, 320, 380], code=False),
                        answer="7") for i in range(6)]
    full = list(solver.solve_iter(problems, SolveOptions(stop_policy="full", num_samples=12, pool_size=4)))
    early = list(solver.solve_iter(problems, SolveOptions(stop_policy="default", num_samples=12, pool_size=4)))
    assert {r.problem_id for r in full} == {r.problem_id for r in early} == {p.id for p in problems}
    assert all(r.answer == "7" and r.correct for r in full + early)
    full_tokens = sum(r.total_tokens for r in full)
    early_tokens = sum(r.total_tokens for r in early)
    assert all(r.samples_started == 12 and r.settle_reason == "budget" for r in full)
    assert early_tokens < full_tokens
    for r in early:
        # unanimous votes settle `default` (beta 0.95) at the 4th vote, whatever the timing: at most
        # the 4 voters and the 3 others of the pool of 4 started, of a budget of 12
        assert r.samples_finished == 4 and r.votes == {"7": 4}
        assert r.samples_started <= 7
        assert _interval_overlap(r.samples) <= 4  # the bounded per-problem pool


def test_batch_mode_interleaves_problems_and_votes_by_majority(solver):
    problems = [Problem(f"m{i}", directive_problem(["1", "2", "2"], [30]), answer="2") for i in range(10)]
    results = list(solver.solve_iter(problems, SolveOptions(stop_policy="full", num_samples=6, pool_size=2)))
    assert len(results) == 10
    for r in results:
        assert r.votes == {"2": 4, "1": 2} and r.answer == "2" and r.correct
        assert r.code_calls == 6 and r.tool_output_tokens > 0
        assert sorted(s.sample_idx for s in r.samples) == list(range(6))
        assert len({s.seed for s in r.samples}) == 6  # no two samples share a seed
        assert _interval_overlap(r.samples) <= 2


def test_engine_actor_crash_costs_only_in_flight_samples(ray_local, tmp_path):
    cfg = scripted_config(num_samples=4, pool_size=4, stop_policy="full")
    cfg.engine.num_actors = 2
    with Solver(cfg) as s:
        # the first sample of c0 to start kills its engine actor's process while it is in flight
        problems = [Problem("c0", crash_once_problem(str(tmp_path / "crashed"), ["5"], [400]), answer="5")]
        problems += [Problem(f"c{i}", directive_problem(["5"], [400], code=False), answer="5") for i in range(1, 6)]
        results = list(s.solve_iter(problems))
        stats = s.stats()["coordinator"]
    assert (tmp_path / "crashed").exists()
    assert sorted(r.problem_id for r in results) == [f"c{i}" for i in range(6)]
    assert all(r.answer == "5" and r.samples_finished == 4 and r.samples_failed == 0 for r in results)
    assert stats["samples_retried"] >= 1
    retried = [x for r in results for x in r.samples if x.attempt > 1]
    assert retried and all(x.finish_reason == "eos" for x in retried)


def test_cancel_problem_emits_partial_result(solver):
    import ray

    problem = Problem("slow", directive_problem(["9"], [HOLD], code=False))
    ref = solver.coordinator.solve.remote(problem, SolveOptions(mode="launch-all", num_samples=4))
    wait_until(lambda: ray.get(solver.coordinator.stats.remote())["in_flight"] == 4, "4 samples in flight")
    assert ray.get(solver.coordinator.cancel_problem.remote("slow"))
    result = ray.get(ref)
    assert result.settle_reason == "cancelled" and result.answer is None
    assert result.samples_cancelled == 4 and result.correct is None


def test_all_engines_gone_answers_every_problem_instead_of_hanging(ray_local):
    cfg = scripted_config(num_samples=4, pool_size=2, stop_policy="full", engine_recovery_s=2.0)
    with Solver(cfg) as s:
        ray_local.kill(s.engines[0], no_restart=True)
        problems = [Problem(f"d{i}", directive_problem(["5"], [50], code=False)) for i in range(3)]
        results = list(s.solve_iter(problems))
    assert sorted(r.problem_id for r in results) == ["d0", "d1", "d2"]
    assert all(r.settle_reason == "no engine left" and r.answer is None for r in results)
    assert all(r.failure == "no engine left" for r in results)  # not done: a resumed run solves them


@pytest.mark.parametrize("fault", ["dead", "hang"])
def test_a_dead_or_hung_engine_is_restarted_and_its_samples_retried(ray_local, tmp_path, fault):
    # The first sample of f0 to start breaks its engine: "dead" makes it fail every request with
    # engine_dead (the tool loop raises, the actor refuses new samples, the coordinator restarts
    # it); "hang" makes it stop producing tokens without failing, which only the watchdog sees
    # (no progress for engine_hang_s = 2 s, where a healthy scripted engine emits every few ms).
    cfg = scripted_config(num_samples=4, pool_size=4, stop_policy="full", engine_hang_s=2.0)
    cfg.engine.num_actors = 2
    with Solver(cfg) as s:
        problems = [Problem("f0", fault_once_problem(fault, str(tmp_path / "broke"), ["5"], [400]), answer="5")]
        problems += [Problem(f"f{i}", directive_problem(["5"], [400], code=False), answer="5") for i in range(1, 3)]
        results = list(s.solve_iter(problems))
        stats = s.stats()["coordinator"]
    assert (tmp_path / "broke").exists()
    assert sorted(r.problem_id for r in results) == [f"f{i}" for i in range(3)]
    assert all(r.answer == "5" and r.samples_finished == 4 and r.samples_failed == 0 and r.failure is None
               for r in results), [(r.problem_id, r.answer, r.samples_failed) for r in results]
    assert stats["engines_restarted"] >= 1 and stats["samples_retried"] >= 1
    assert stats["engines_hung" if fault == "hang" else "engines_restarted"] >= 1
    retried = [x for r in results for x in r.samples if x.attempt > 1]
    assert retried and all(x.finish_reason == "eos" for x in retried)


def test_greedy_sampling_with_many_samples_is_refused(solver):
    import ray

    with pytest.raises(ray.exceptions.RayTaskError, match="temperature 0"):
        solver.solve(Problem("g", directive_problem(["1"], [10], code=False)),
                     SolveOptions(num_samples=4, temperature=0.0))


def test_problems_sharing_an_id_do_not_mix(solver):
    a = Problem("same", directive_problem(["1"], [40], code=False))
    b = Problem("same", directive_problem(["2"], [40], code=False))
    results = list(solver.solve_iter([a, b], SolveOptions(num_samples=3, stop_policy="full")))
    assert sorted(r.answer for r in results) == ["1", "2"]
    assert all(r.samples_finished == 3 and len(r.votes) == 1 for r in results)


def test_a_cancel_racing_the_sample_start_is_a_clean_cancel(solver):
    # The cancel can reach the engine actor before the request, between the request and the
    # sample's first step, or mid-sample; each must come back as a cancelled record, never an error.
    import ray

    from raysolve.core.records import SampleRequest
    from raysolve.core.records import SampleSettings

    engine = solver.engines[0]
    text = directive_problem(["3"], [400], code=False)
    records = []
    for i in range(30):
        request = SampleRequest("race", i, text, seed=i, settings=SampleSettings(max_tokens=10_000), run_key=9)
        if i % 3 == 0:
            engine.cancel.remote([request.key])
            ref = engine.run_sample.remote(request)
        else:
            ref = engine.run_sample.remote(request)
            engine.cancel.remote([request.key])
        records.append(ref)
    out = ray.get(records)
    assert all(r.cancelled and r.finish_reason == "cancelled" and r.error is None for r in out)


def test_wave_mode_starts_a_second_wave_only_when_the_first_is_open_and_back(solver):
    split = Problem("w1", directive_problem(["1", "2"], [60, 200, 60, 200]), answer="1")
    agreed = Problem("w2", directive_problem(["9"], [60]), answer="9")
    opts = SolveOptions(mode="wave", pool_size=4, num_samples=12, stop_policy="first-k:4")
    r_split = solver.solve(split, opts)
    r_agreed = solver.solve(agreed, opts)
    assert r_agreed.samples_started == 4 and r_agreed.answer == "9"  # settled inside the first wave
    first = [s for s in r_split.samples if s.sample_idx < 4]
    later = [s for s in r_split.samples if s.sample_idx >= 4]
    assert later and min(s.start_s for s in later) >= max(s.end_s for s in first) - 1e-3



def test_time_limit_settles_with_the_partial_vote_and_stops_the_rest(solver):
    # Three short samples vote; five never end on their own. The limit (2 s, ~200x what the short
    # ones need) settles with the three votes and cancels the five. That the coordinator wakes at
    # the deadline rather than at its next tick is shown on a simulated clock (test_scheduling.py);
    # here the bounds are loose: never before the limit, and well before the next tick plus slack.
    lengths = [40, 40, 40] + [HOLD] * 5
    problem = Problem("t", directive_problem(["5"], lengths, code=False), answer="5")
    result = solver.solve(problem, SolveOptions(mode="launch-all", num_samples=8, stop_policy="full",
                                                time_limit_s=2.0))
    assert result.settle_reason == "time_limit" and result.answer == "5"
    assert result.votes == {"5": 3} and result.samples_cancelled == 5
    assert 1.9 <= result.settle_s < 12.0  # the limit counts from submission, settle_s from the first start


def test_a_caller_that_goes_away_stops_its_samples_and_its_result_reaches_no_one_else(solver):
    import ray

    ref = solver.coordinator.solve.remote(Problem("gone", directive_problem(["9"], [HOLD], code=False)),
                                          SolveOptions(mode="launch-all", num_samples=4))
    in_flight = lambda: ray.get(solver.coordinator.stats.remote())["in_flight"]  # noqa: E731
    wait_until(lambda: in_flight() == 4, "4 samples in flight")
    ray.cancel(ref)
    wait_until(lambda: in_flight() == 0, "the samples stopped")
    after = Problem("after", directive_problem(["1"], [20], code=False))
    results = list(solver.solve_iter([after], SolveOptions(num_samples=2, stop_policy="full")))
    assert [r.problem_id for r in results] == ["after"]  # not the abandoned problem's result
    assert ray.get(solver.coordinator.poll.remote(timeout_s=0.1)) == []

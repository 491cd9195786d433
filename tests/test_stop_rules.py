"""The stop rules added for issue 5: windows, the runner-up set, Dirichlet, predictive, stragglers."""

import random
import time

import pytest

from raysolve.core.posteriors import leader_is_mode, leader_wins_at_budget
from raysolve.core.voting import (
    CONTINUE,
    ESCWindow,
    EqualAmong,
    Predictive,
    RecentAgree,
    Settled,
    Stragglers,
    VoteState,
    parse_policy,
    tally,
)


def state(history, budget, in_flight=0):
    """A VoteState after ``history`` (answers in finish order) of ``budget`` samples."""
    return VoteState(tally(history), len(history), in_flight, budget - len(history) - in_flight, 0.0, history)


def test_recent_window_looks_only_at_the_latest_votes():
    rule = RecentAgree(4, 5)
    assert rule.decide(state(list("abaab"), 16)) == CONTINUE  # 3 of the last 5
    assert rule.decide(state(list("babaaa"), 16)) == Settled("a", "recent:4/5")  # last five: a,b,a,a,a
    assert rule.decide(state(list("aaabb"), 16)) == CONTINUE
    assert rule.decide(state(["a", None, "a", "a", "a"], 16)) == Settled("a", "recent:4/5")


def test_equal_among_applies_only_while_few_have_finished():
    rule = EqualAmong(5, 7)
    assert rule.decide(state(list("aaaaabb"), 16)) == Settled("a", "among:5/7")
    assert rule.decide(state(list("aaaabbba"), 16)) == CONTINUE  # 8 finished: past the window
    assert parse_policy("runner-up").name == "recent:4/5|among:5/7|among:6/9"


def test_esc_judges_complete_windows():
    rule = ESCWindow(3)
    assert rule.decide(state(list("aa"), 12)) == CONTINUE
    assert rule.decide(state(list("aab"), 12)) == CONTINUE
    assert rule.decide(state(list("aabccc"), 12)) == Settled("c", "esc:3")  # the plurality of all votes
    assert rule.decide(state(list("aabcc"), 12)) == CONTINUE  # window 2 incomplete
    assert rule.decide(state([None, None, None], 12)) == CONTINUE


def test_stragglers_cut_the_last_k():
    rule = Stragglers(2)
    assert rule.decide(state(list("aaaaab"), 8, in_flight=2)) == Settled("a", "stragglers:2")
    assert rule.decide(state(list("aaaaa"), 8, in_flight=3)) == CONTINUE
    assert rule.decide(state(list("aaaaaaab"), 8)) == CONTINUE  # nothing left to cut


# ---------------------------------------------------------------- the predictive probability


def _urn(v1, v2, others, remaining, trials, rng):
    """Monte Carlo of the Pólya urn the closed form describes."""
    wins = 0
    for _ in range(trials):
        a, b, o = v1 + 1, v2 + 1, others + 1
        x, y = v1, v2
        for _ in range(remaining):
            u = rng.random() * (a + b + o)
            if u < a:
                a += 1
                x += 1
            elif u < a + b:
                b += 1
                y += 1
            else:
                o += 1
        wins += x > y
    return wins / trials


@pytest.mark.parametrize("v1,v2,others,remaining", [(3, 0, 0, 13), (5, 3, 1, 7), (4, 4, 0, 8), (2, 1, 3, 20), (6, 1, 0, 25)])
def test_predictive_matches_a_simulated_polya_urn(v1, v2, others, remaining):
    rng = random.Random(7)
    exact = leader_wins_at_budget(v1, v2, others, remaining)
    assert exact == pytest.approx(_urn(v1, v2, others, remaining, 20000, rng), abs=0.012)


def test_predictive_is_one_exactly_when_the_lead_is_unbeatable():
    for v1 in range(8):
        for v2 in range(v1 + 1):
            for r in range(10):
                p = leader_wins_at_budget(v1, v2, 0, r)
                assert (p == 1.0) == (v1 > v2 + r), (v1, v2, r, p)


def test_predictive_knows_the_budget():
    # Same votes, less budget left: more sure. Beta (budget-blind) cannot tell these apart.
    assert leader_wins_at_budget(4, 2, 0, 2) > leader_wins_at_budget(4, 2, 0, 20)
    rule = Predictive(0.99, min_votes=3)
    unanimous = [rule.decide(state(list("a" * n), 32)) for n in range(1, 9)]
    first = next(i for i, d in enumerate(unanimous, start=1) if d != CONTINUE)
    assert 3 <= first <= 8


def test_dirichlet_mode_is_deterministic_and_sensible():
    assert leader_is_mode((5,)) == leader_is_mode((5,))
    assert leader_is_mode((8, 1)) > 0.95 > leader_is_mode((3, 2))
    assert parse_policy("dirichlet:0.95").decide(state(list("aaaaaaab"), 16)).answer == "a"


def test_every_rule_decides_in_microseconds():
    specs = ["unbeatable", "beta:0.95", "predictive:0.99", "dirichlet:0.95", "runner-up", "esc:5", "default"]
    rng = random.Random(1)
    states = [state([rng.choice("aab") for _ in range(rng.randint(1, 20))], 32) for _ in range(200)]
    for spec in specs:
        policy = parse_policy(spec)
        for s in states:  # warm the caches, as a long run does
            policy.decide(s)
        # CPU time of this process, not wall time: a busy host that takes the CPU away mid-loop
        # makes the loop take longer, not the decisions cost more. Best of three rounds.
        rounds = []
        for _ in range(3):
            started = time.process_time()
            for _ in range(5):
                for s in states:
                    policy.decide(s)
            rounds.append((time.process_time() - started) / (5 * len(states)) * 1e6)
        per_decision_us = min(rounds)
        # Correctness bound only, 30x what the slowest rule costs here; bench: jobs/bench_policies.py
        assert per_decision_us < 200, (spec, per_decision_us)


def test_named_defaults_for_batch_and_latency():
    from raysolve.core.scheduling import SolveOptions

    assert parse_policy("latency").name == "beta:0.99:min=4"
    assert parse_policy("default").name == "unbeatable|beta:0.95"
    opts = SolveOptions.latency(num_samples=16)
    assert (opts.mode, opts.pool_size, opts.stop_policy, opts.num_samples) == ("wave", 8, "latency", 16)

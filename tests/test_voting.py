"""Tests for raysolve.core.voting: tally, VoteState, stop policies, specs."""

from __future__ import annotations

import itertools
from fractions import Fraction
from math import comb
from typing import Sequence

import pytest

from raysolve.core.voting import (
    CONTINUE,
    AnyOf,
    BetaPosterior,
    Continue,
    FirstKAgree,
    FullVote,
    KIdentical,
    MaxSamples,
    Settled,
    StopPolicy,
    TimeLimit,
    UnbeatableLead,
    VoteState,
    default_policy,
    final_decision,
    parse_policy,
    tally,
)


def state(counts: dict[str, int], remaining: int = 0, *, none: int = 0, elapsed_s: float = 0.0) -> VoteState:
    """A state with ``none`` answerless finished samples and all remaining in flight."""
    return VoteState(counts, finished=sum(counts.values()) + none, in_flight=remaining, not_started=0, elapsed_s=elapsed_s)


def first_settle(policy: StopPolicy, stream: Sequence[str | None], budget: int) -> tuple[int, Settled] | None:
    """Replay finished samples one by one (sequential scheduling); return the
    number of finished samples at which ``policy`` first settles."""
    for i in range(1, len(stream) + 1):
        s = VoteState(tally(stream[:i]), finished=i, in_flight=0, not_started=budget - i)
        d = policy.decide(s)
        if isinstance(d, Settled):
            return i, d
    return None


# ---------------------------------------------------------------------------
# tally and VoteState


def test_tally_first_seen_order_and_skips_none() -> None:
    counts = tally(["b", None, "a", "a", "b", None, "c"])
    assert counts == {"b": 2, "a": 2, "c": 1}
    assert list(counts) == ["b", "a", "c"]


def test_vote_state_properties() -> None:
    s = VoteState({"a": 3, "b": 1}, finished=5, in_flight=2, not_started=6, elapsed_s=1.5)
    assert s.votes == 4
    assert s.remaining == 8
    assert s.leader() == ("a", 3)
    assert s.runner_up() == 1
    assert s.top_two() == ("a", 3, 1)


def test_vote_state_empty() -> None:
    s = VoteState({}, finished=2, in_flight=0, not_started=0)
    assert s.leader() == (None, 0)
    assert s.runner_up() == 0


@pytest.mark.parametrize(
    "counts, leader, v2",
    [
        ({"b": 2, "a": 2}, "b", 2),  # tie: first seen wins
        ({"a": 1, "b": 3, "c": 3}, "b", 3),
        ({"a": 1, "b": 1, "c": 2}, "c", 1),
        ({"x": 5}, "x", 0),
    ],
)
def test_leader_tie_breaks_toward_first_seen(counts: dict[str, int], leader: str, v2: int) -> None:
    s = state(counts)
    assert s.leader() == (leader, counts[leader])
    assert s.runner_up() == v2


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(counts={"a": 3}, finished=2, in_flight=0, not_started=0),  # more votes than finished
        dict(counts={}, finished=-1, in_flight=0, not_started=0),
        dict(counts={}, finished=0, in_flight=-1, not_started=0),
    ],
)
def test_vote_state_rejects_inconsistent_counts(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        VoteState(**kwargs)


# ---------------------------------------------------------------------------
# FullVote and final_decision


def test_full_vote_never_settles() -> None:
    p = FullVote()
    assert p.decide(state({"a": 50})) is CONTINUE
    assert p.decide(state({"a": 50}, remaining=0)) == Continue()


def test_final_decision() -> None:
    assert final_decision(state({"b": 2, "a": 2, "c": 1})) == Settled("b", "budget")
    assert final_decision(state({"a": 1, "b": 3})) == Settled("b", "budget")


def test_final_decision_no_votes() -> None:
    assert final_decision(state({}, none=4)) == Settled(None, "budget")


# ---------------------------------------------------------------------------
# UnbeatableLead


@pytest.mark.parametrize(
    "counts, remaining, fires",
    [
        ({"a": 3}, 2, True),
        ({"a": 3}, 3, False),  # the runner-up could tie
        ({"a": 5, "b": 2}, 2, True),
        ({"a": 5, "b": 2}, 3, False),
        ({"a": 2, "b": 2}, 0, False),  # a tie at budget end is for final_decision
        ({}, 0, False),
    ],
)
def test_unbeatable_cases(counts: dict[str, int], remaining: int, fires: bool) -> None:
    d = UnbeatableLead().decide(state(counts, remaining))
    assert isinstance(d, Settled) is fires
    if fires:
        assert d == Settled(state(counts).leader()[0], "unbeatable")


def test_unbeatable_unanimous_stream_needs_a_majority() -> None:
    # Alone it saves under half: 16 samples, unanimous, settles at 9.
    assert first_settle(UnbeatableLead(), ["a"] * 16, budget=16) == (9, Settled("a", "unbeatable"))


def _all_states(max_answers: int = 3, max_count: int = 4, max_remaining: int = 3):
    for k in range(0, max_answers + 1):
        for values in itertools.product(range(1, max_count + 1), repeat=k):
            counts = {f"a{i}": v for i, v in enumerate(values)}
            for r in range(0, max_remaining + 1):
                yield counts, r


def _completions(counts: dict[str, int], r: int):
    """Every way the r remaining samples could vote: an existing answer, a new
    one, or no answer."""
    choices: list[str | None] = [*counts, "new", None]
    for votes in itertools.product(choices, repeat=r):
        final = dict(counts)
        for v in votes:
            if v is not None:
                final[v] = final.get(v, 0) + 1
        yield final


def test_unbeatable_is_exact_by_brute_force() -> None:
    """Whenever it fires, every completion keeps the leader as the strict
    winner; whenever it doesn't, some completion lets another answer reach the
    leader's count (so under some tie-break the full vote could differ)."""
    policy = UnbeatableLead()
    checked = 0
    for counts, r in _all_states():
        s = state(counts, r)
        leader, _ = s.leader()
        fires = isinstance(policy.decide(s), Settled)
        finals = list(_completions(counts, r))
        if fires:
            for final in finals:
                best = final[leader]  # type: ignore[index]
                assert all(n < best for a, n in final.items() if a != leader), (counts, r, final)
        elif leader is not None:
            assert any(
                any(n >= final[leader] for a, n in final.items() if a != leader) for final in finals
            ), (counts, r)
        checked += 1
    assert checked > 100


# ---------------------------------------------------------------------------
# FirstKAgree and KIdentical


def test_first_k_agree_fires_at_k() -> None:
    assert first_settle(FirstKAgree(4), ["a"] * 16, budget=16) == (4, Settled("a", "first-k:4"))


def test_first_k_agree_ignores_answerless_samples() -> None:
    stream = ["a", None, "a", "a", None, "a"]
    assert first_settle(FirstKAgree(4), stream, budget=16) == (6, Settled("a", "first-k:4"))


def test_first_k_agree_needs_unanimity() -> None:
    assert first_settle(FirstKAgree(4), ["a", "a", "b", "a", "a", "a", "a"], budget=16) is None


def test_k_identical() -> None:
    p = KIdentical(3)
    assert p.decide(state({"a": 2, "b": 2})) is CONTINUE
    assert p.decide(state({"a": 2, "b": 3})) == Settled("b", "k-identical:3")
    assert first_settle(p, ["a", "b", "a", "b", "c", "b"], budget=16) == (6, Settled("b", "k-identical:3"))


# ---------------------------------------------------------------------------
# BetaPosterior


def _p_exact(v1: int, v2: int) -> Fraction:
    n = v1 + v2 + 1
    return Fraction(sum(comb(n, j) for j in range(v1 + 1)), 2**n)


@pytest.mark.parametrize("threshold, at", [(0.95, 4), (0.99, 6), (0.9, 3), (0.999, 9)])
def test_beta_unanimous_stream(threshold: float, at: int) -> None:
    """The doc: a unanimous stream stops after 4 samples at 0.95, 6 at 0.99."""
    p = BetaPosterior(threshold, min_votes=0)
    assert first_settle(p, ["a"] * 40, budget=40) == (at, Settled("a", p.name))


def test_beta_min_votes_floor() -> None:
    p = BetaPosterior(0.95, min_votes=6)
    assert first_settle(p, ["a"] * 40, budget=40) == (6, Settled("a", "beta:0.95:min=6"))
    # the floor counts votes, not finished samples
    assert first_settle(p, ["a", None, "a", None, "a", "a", "a", "a"], budget=40) == (8, Settled("a", "beta:0.95:min=6"))


@pytest.mark.parametrize(
    "v1, v2, fires",
    [
        (3, 0, False),  # 15/16 = 0.9375
        (4, 0, True),  # 31/32
        (5, 1, False),  # 1 - 8/128 = 0.9375
        (6, 1, True),  # 1 - 9/256 = 0.9648
        (7, 2, False),  # 1 - 56/1024 = 0.9453
        (8, 2, True),  # 1 - 67/2048 = 0.9673
    ],
)
def test_beta_hand_computed(v1: int, v2: int, fires: bool) -> None:
    d = BetaPosterior(0.95).decide(state({"a": v1, "b": v2}))
    assert isinstance(d, Settled) is fires


def test_beta_threshold_is_inclusive_and_exact() -> None:
    # 3 votes to 0 gives exactly 15/16
    assert BetaPosterior(0.9375, min_votes=0).decide(state({"a": 3})) == Settled("a", "beta:0.9375:min=0")
    assert BetaPosterior(0.9376, min_votes=0).decide(state({"a": 3})) is CONTINUE


def test_beta_ignores_third_answers() -> None:
    p = BetaPosterior(0.95)
    assert p.decide(state({"a": 6, "b": 1})) == p.decide(state({"c": 1, "a": 6, "b": 1, "d": 1}))


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9, 0.95, 0.99])
def test_beta_matches_exact_fraction(threshold: float) -> None:
    p = BetaPosterior(threshold, min_votes=0)
    c = Fraction(repr(threshold))
    for v1 in range(0, 30):
        for v2 in range(0, v1 + 1):
            if v1 == 0:
                continue
            expected = _p_exact(v1, v2) >= c
            assert isinstance(p.decide(state({"a": v1, "b": v2})), Settled) is expected, (v1, v2)


@pytest.mark.parametrize("v1, v2", [(300, 250), (280, 250), (500, 460), (200, 0), (260, 240)])
def test_beta_large_counts(v1: int, v2: int) -> None:
    p = BetaPosterior(0.95)
    expected = _p_exact(v1, v2) >= Fraction(19, 20)
    assert isinstance(p.decide(state({"a": v1, "b": v2})), Settled) is expected
    assert p.probability(v1, v2) == pytest.approx(float(_p_exact(v1, v2)))


# ---------------------------------------------------------------------------
# MaxSamples and TimeLimit


def test_max_samples() -> None:
    p = MaxSamples(8)
    assert p.decide(VoteState({"a": 3, "b": 2}, finished=7, in_flight=4, not_started=5)) is CONTINUE
    assert p.decide(VoteState({"a": 3, "b": 4}, finished=8, in_flight=4, not_started=4)) == Settled("b", "max-samples:8")
    assert p.decide(VoteState({}, finished=8, in_flight=0, not_started=0)) == Settled(None, "max-samples:8")


def test_time_limit() -> None:
    p = TimeLimit(300)
    assert p.decide(state({"a": 1}, 5, elapsed_s=299.9)) is CONTINUE
    assert p.decide(state({"a": 1, "b": 2}, 5, elapsed_s=300.0)) == Settled("b", "time:300")
    assert p.decide(state({}, 5, none=2, elapsed_s=400.0)) == Settled(None, "time:300")


# ---------------------------------------------------------------------------
# AnyOf and the default


def test_any_of_first_member_reason_wins() -> None:
    p = AnyOf(UnbeatableLead(), BetaPosterior(0.95))
    # both fire: unbeatable's reason
    assert p.decide(state({"a": 6}, 1)) == Settled("a", "unbeatable")
    # only beta fires
    assert p.decide(state({"a": 4}, 12)) == Settled("a", "beta:0.95")
    assert p.decide(state({"a": 2, "b": 1}, 12)) is CONTINUE
    assert p.name == "unbeatable|beta:0.95"


def test_any_of_flattens_and_validates() -> None:
    inner = AnyOf(UnbeatableLead(), KIdentical(5))
    p = AnyOf(inner, TimeLimit(60))
    assert p.policies == (UnbeatableLead(), KIdentical(5), TimeLimit(60))
    with pytest.raises(ValueError):
        AnyOf()


def test_default_policy() -> None:
    p = default_policy()
    assert p == AnyOf(UnbeatableLead(), BetaPosterior(0.95, min_votes=3))
    assert p.name == "unbeatable|beta:0.95"
    assert first_settle(p, ["a"] * 16, budget=16) == (4, Settled("a", "beta:0.95"))
    # near the end of a small budget, the exact rule fires first
    assert first_settle(p, ["a", "a", "a"], budget=4) == (3, Settled("a", "unbeatable"))


def test_policies_satisfy_the_protocol() -> None:
    for p in [FullVote(), UnbeatableLead(), FirstKAgree(2), KIdentical(2), BetaPosterior(), MaxSamples(3), TimeLimit(1), default_policy()]:
        assert isinstance(p, StopPolicy)


# ---------------------------------------------------------------------------
# parse_policy


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("full", FullVote()),
        ("unbeatable", UnbeatableLead()),
        ("first-k:4", FirstKAgree(4)),
        ("k-identical:5", KIdentical(5)),
        ("beta", BetaPosterior(0.95, min_votes=3)),
        ("beta:0.95", BetaPosterior(0.95)),
        ("beta:0.99:min=4", BetaPosterior(0.99, min_votes=4)),
        ("beta:min=4:0.99", BetaPosterior(0.99, min_votes=4)),
        ("max-samples:8", MaxSamples(8)),
        ("time:300", TimeLimit(300)),
        ("time:2.5", TimeLimit(2.5)),
        ("default", default_policy()),
        ("unbeatable|beta:0.95", default_policy()),
        (" unbeatable | first-k:4 ", AnyOf(UnbeatableLead(), FirstKAgree(4))),
        ("default|time:300", AnyOf(UnbeatableLead(), BetaPosterior(0.95), TimeLimit(300))),
    ],
)
def test_parse_policy(spec: str, expected: StopPolicy) -> None:
    assert parse_policy(spec) == expected


@pytest.mark.parametrize(
    "policy",
    [
        FullVote(),
        UnbeatableLead(),
        FirstKAgree(4),
        KIdentical(5),
        BetaPosterior(),
        BetaPosterior(0.99, min_votes=4),
        BetaPosterior(0.975, min_votes=0),
        MaxSamples(8),
        TimeLimit(300),
        TimeLimit(0.25),
        default_policy(),
        AnyOf(UnbeatableLead(), BetaPosterior(0.99, min_votes=5), KIdentical(6), TimeLimit(120)),
    ],
)
def test_policy_name_round_trips(policy: StopPolicy) -> None:
    parsed = parse_policy(policy.name)
    assert parsed == policy
    assert parsed.name == policy.name


@pytest.mark.parametrize(
    "spec, names",
    [
        ("", "''"),
        ("bogus", "'bogus'"),
        ("unbeatable|bogus:1", "'bogus:1'"),
        ("unbeatable||full", "empty"),
        ("first-k", "'first-k'"),
        ("first-k:x", "'x'"),
        ("first-k:0", "'first-k:0'"),
        ("k-identical:2.5", "'2.5'"),
        ("beta:1.5", "'beta:1.5'"),
        ("beta:high", "'high'"),
        ("beta:0.9:min=x", "'x'"),
        ("beta:0.9:0.8", "'beta:0.9:0.8'"),
        ("full:1", "'full:1'"),
        ("time:-5", "'time:-5'"),
        ("max-samples:0", "'max-samples:0'"),
    ],
)
def test_parse_policy_errors_name_the_bad_part(spec: str, names: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_policy(spec)
    assert names in str(err.value)


@pytest.mark.parametrize(
    "make",
    [lambda: FirstKAgree(0), lambda: KIdentical(-1), lambda: BetaPosterior(1.0), lambda: BetaPosterior(0.9, min_votes=-1), lambda: MaxSamples(0), lambda: TimeLimit(0)],
)
def test_constructors_validate(make) -> None:
    with pytest.raises(ValueError):
        make()

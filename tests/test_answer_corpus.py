"""The vote key and grading against a corpus of answer forms (``answer_cases.py``): grading
pairs across categories (integers to matrices, units, percentages, multiple choice), groups
of forms that must share one vote key and never another group's, and keys under a modulus.
"""

from __future__ import annotations

import itertools

import pytest

from answer_cases import GRADING_PAIRS, MATH_VERIFY_DISAGREES, VOTE_KEY_GROUPS, VOTE_KEY_MODULUS
from raysolve.core.answers import is_correct, vote_key


@pytest.mark.parametrize("pred, gold, expected, category", GRADING_PAIRS,
                         ids=[f"{c}:{p}|{g}" for p, g, _, c in GRADING_PAIRS])
def test_grading(pred: str, gold: str, expected: bool, category: str) -> None:
    assert is_correct(pred, gold) is expected


def test_the_corpus_covers_the_categories() -> None:
    categories = {c for *_, c in GRADING_PAIRS}
    assert len(GRADING_PAIRS) >= 300 and len(categories) >= 20
    assert {(p, g) for p, g, *_ in GRADING_PAIRS} >= set(MATH_VERIFY_DISAGREES)  # where math-verify alone is wrong
    assert len(VOTE_KEY_GROUPS) >= 60


@pytest.mark.parametrize("category, forms", VOTE_KEY_GROUPS, ids=[f"{c}:{f[0]}" for c, f in VOTE_KEY_GROUPS])
def test_equal_forms_share_one_key(category: str, forms: list[str]) -> None:
    keys = {form: vote_key(form) for form in forms}
    assert len(set(keys.values())) == 1, keys


def test_different_answers_never_share_a_key() -> None:
    owner: dict[str | None, int] = {}
    clashes = []
    for i, (_, forms) in enumerate(VOTE_KEY_GROUPS):
        for key in {vote_key(form) for form in forms}:
            if key in owner and owner[key] != i:
                clashes.append((key, VOTE_KEY_GROUPS[owner[key]][1], forms))
            owner.setdefault(key, i)
    assert not clashes


@pytest.mark.parametrize("raw, modulus, expected", VOTE_KEY_MODULUS)
def test_keys_under_a_modulus(raw: str, modulus: int, expected: str | None) -> None:
    assert vote_key(raw, modulus) == expected

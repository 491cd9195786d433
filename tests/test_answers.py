"""Tests for raysolve.core.answers: extraction, the vote key, modulus, grading (the broad corpus of
forms is ``test_answer_corpus.py``)."""

from __future__ import annotations

import threading

import pytest

from raysolve.core import grading
from raysolve.core.answers import (
    apply_modulus,
    extract_boxed,
    is_correct,
    normalize_answer,
    parse_answer,
    vote_key,
)
from raysolve.core.grading import math_verify_equal

# ---------------------------------------------------------------------------
# extract_boxed


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"The answer is \boxed{42}.", "42"),
        (r"\boxed{\frac{a}{b^{2}}}", r"\frac{a}{b^{2}}"),
        (r"\boxed{a{b{c}}d}", "a{b{c}}d"),
        (r"first \boxed{1}, then \boxed{2}, finally \boxed{3}", "3"),
        (r"\boxed {x+1}", "x+1"),
        (r"\fbox{7}", "7"),
        (r"so $\boxed 5$", "5"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),
        (r"\boxed{\left\{ x \right.}", r"\left\{ x \right."),  # escaped brace unbalanced on purpose
        (r"\boxed{\boxed{5}}", r"\boxed{5}"),  # nested box belongs to the outer one
        (r"\boxed{x \fbox{y} z}", r"x \fbox{y} z"),
        (r"\boxed{}", ""),
    ],
)
def test_extract_boxed(text: str, expected: str) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "no box here",
        "",
        r"\boxed{5",  # truncated
        r"\boxed{1} and then \boxed{2",  # last box unbalanced: no answer, not the earlier one
        r"\boxedx{3}",  # a different command
        r"\boxed",
    ],
)
def test_extract_boxed_none(text: str) -> None:
    assert extract_boxed(text) is None


# ---------------------------------------------------------------------------
# normalize_answer (notation only) and vote_key


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  42 ", "42"),
        ("$42$", "42"),
        (r"\(42\)", "42"),
        (r"\boxed{7}", "7"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        (r"\left\{1,2\right\}", r"\{1,2\}"),
        (r"a \rightarrow b", r"a\rightarrow b"),  # \right inside \rightarrow untouched
        (r"3\!\cdot\! 4", r"3\cdot4"),
        (r"\alpha b", r"\alpha b"),  # the space ends the control word
        (r"\text{(A)}", "(A)"),
        (r"\textbf{Monday}", "Monday"),
        (r"\text{no solution}", "nosolution"),
        (r"12\text{ cm}", "12"),  # a unit after a number is notation
        (r"x\text{ cm}", "xcm"),  # but not after anything else
        ("x = 3", "3"),
        ("y=-2", "-2"),
        ("x=y=3", "x=y=3"),  # not a single assignment
        (r"x \in [1,2]", "[1,2]"),
        ("12.", "12"),
        (r"90^\circ", "90"),
        (r"90^{\circ}", "90"),
        (r"50\%", "50"),
        (r"\dfrac{\sqrt{3}}{2}", r"\frac{\sqrt{3}}{2}"),
        (r"\cfrac{\pi}{4}", r"\frac{\pi}{4}"),
        (r"1\,000", "1{,}000"),  # a thin space between digit groups separates thousands
        ("1 2", "1 2"),  # whitespace between numbers stays: 1 2 is not 12
        (r"1 & 0 \\ 0 & 1", r"1&0\\0&1"),  # a row break is not a thin space
        ("\u22125", "-5"),  # the Unicode minus
        ("+5", "5"),
        (r"\varnothing", r"\{\}"),
        ("", ""),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1,000", "1000"),
        ("1,234,567", "1234567"),
        ("1{,}000", "1000"),
        (r"1\,000", "1000"),
        ("+5", "5"),
        ("007", "7"),
        ("12.0", "12"),
        ("12.50", "25/2"),  # exact: decimals are fractions
        (".5", "1/2"),
        ("0.333", "333/1000"),  # ... only when exactly equal: not 1/3
        ("-0.0", "0"),
        ("-3", "-3"),
        (r"\frac{2}{4}", "1/2"),
        (r"\dfrac{6}{3}", "2"),
        (r"\frac12", "1/2"),
        (r"-\frac{3}{6}", "-1/2"),
        (r"\frac{-3}{-6}", "1/2"),
        (r"\frac{3}{-6}", "-1/2"),
        (r"2\frac12", "5/2"),
        ("2/4", "1/2"),
        ("1/0", "1/0"),  # not a number: its text
        ("1e3", "1000"),
        (r"1.5\times10^{3}", "1500"),
        ("10^6", "1000000"),
        ("2^{10}", "1024"),
        (r"\frac{1}{2}\pi", "pi/2"),
        (r"\sqrt{12}", "2*sqrt(3)"),
        (r"\frac{\sqrt5+1}{2}", "1/2 + sqrt(5)/2"),
        (r"\left(1, \frac{1}{2}\right)", "(1, 1/2)"),
        (r"\{3, 1, 2\}", "{1, 2, 3}"),
        (r"(-\infty, 3]", "(-oo, 3]"),
        (r"\begin{pmatrix}1 & 0 \\ 0 & 1\end{pmatrix}", "[[1, 0], [0, 1]]"),
        (r"\textbf{(C)}", "(C)"),
        ("C", "(C)"),
        ("Monday", "Monday"),  # words stay words (math-verify would read a product of letters)
        ("1 2", "1 2"),
        ("", None),
    ],
)
def test_vote_key(raw: str, expected: str | None) -> None:
    assert vote_key(raw) == expected


@pytest.mark.parametrize(
    "a, b",
    [
        (r"\frac{2}{4}", "1/2"),
        (r"\dfrac{1}{2}", r"$\frac12$"),
        ("1,000", "1000"),
        ("x = 12.0", "12"),
        (r"\left(1,2\right)", "(1, 2)"),
        (r"\sqrt3", r"\sqrt{3}"),
        ("x^{2}", "x^2"),
        (r"\text{(A)}", "A"),
        ("1e3", "1000"),
    ],
)
def test_equal_answers_share_a_key(a: str, b: str) -> None:
    assert vote_key(a) == vote_key(b)


@pytest.mark.parametrize(
    "raw",
    ["x = 3.", r"\text{x = 1,000}", r"\dfrac{4}{8}", "-0.50", r"\left(1,\,2\right)", r"\boxed{\text{(B)}}", r"1\,000",
     r"1 & 0 \\ 0 & 1"],
)
def test_normalize_idempotent(raw: str) -> None:
    once = normalize_answer(raw)
    assert normalize_answer(once) == once


# ---------------------------------------------------------------------------
# apply_modulus / parse_answer


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1234", "234"),
        ("999", "999"),
        ("1000", "0"),
        ("-3", "997"),  # Python's %: the least non-negative residue
        ("12.0", "12"),
        ("+12", "12"),
        ("2,024", "24"),
        (r"\frac{2048}{2}", "24"),
        ("x = 5", "5"),
        ("9" * 5000, "999"),  # beyond int()'s default digit limit
        ("-" + "9" * 5000, "1"),
        ("1/2", None),  # not an integer: no vote
        ("2.5", None),
        ("2^{10}", "24"),  # integer-valued: 1024
        ("1e3", "0"),
        ("", None),
    ],
)
def test_apply_modulus(raw: str, expected: str | None) -> None:
    assert apply_modulus(raw, 1000) == expected


def test_apply_modulus_without_modulus_just_normalises() -> None:
    assert apply_modulus(r"\dfrac{2}{4}", None) == "1/2"
    assert apply_modulus("  ", None) is None


def test_apply_modulus_rejects_bad_modulus() -> None:
    with pytest.raises(ValueError):
        apply_modulus("5", 0)


@pytest.mark.parametrize(
    "text, modulus, expected",
    [
        (r"... so the answer is $\boxed{1,024}$.", None, "1024"),
        (r"... so the answer is $\boxed{1,024}$.", 1000, "24"),
        (r"\boxed{3} wait, actually \boxed{\dfrac{4}{6}}", None, "2/3"),
        (r"\boxed{\dfrac{4}{6}}", 1000, None),
        ("I could not finish", None, None),
        (r"\boxed{12", None, None),
        (r"\boxed{ }", None, None),
    ],
)
def test_parse_answer(text: str, modulus: int | None, expected: str | None) -> None:
    assert parse_answer(text, modulus) == expected


# ---------------------------------------------------------------------------
# is_correct


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("12", "12", True),
        ("12.0", "12", True),  # normalisation alone
        ("0.5", r"\frac{1}{2}", True),  # math-verify
        (r"\frac{1}{2}", "0.5", True),
        (r"\frac{\sqrt2}{2}", r"\sqrt{2}/2", True),
        (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", True),
        ("3", "x=3", True),
        (r"\{2,1\}", r"\{1,2\}", True),
        ("2", "3", False),
        (r"\frac{1}{3}", "0.33", False),
        ("Dynamo", "Monday", False),  # math-verify would read both as products of letters
        ("Monday", r"\text{Monday}", True),
        ("", "3", False),
        (None, "3", False),
        ("3", None, False),  # no gold: not correct, no error
        (r"1 & 0 \\ 0 & 1", r"1&0\\0&1", True),  # a row break followed by a space
        (r"17\text{ any text}", "17", True),  # units, as math-verify drops them
        (r"5 \text{ dollars}", "5", True),
        (r"50\%", "0.5", False),  # a percent sign is notation: 50 is not 1/2
        ("0.333", r"\frac13", False),  # exact numbers: different keys decide
        (r"x \in [1,2]", "[1, 2]", True),
    ],
)
def test_is_correct(pred: str | None, gold: str | None, expected: bool) -> None:
    assert is_correct(pred, gold) is expected


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("24", "1024", True),
        ("1024", "24", True),
        ("997", "-3", True),
        ("12.0", "12", True),
        ("25", "1024", False),
        ("2^{10}", "1024", True),  # an integer-valued form
        (r"\sqrt{2}", "1024", False),  # must be an integer under a modulus
        (None, "5", False),
    ],
)
def test_is_correct_with_modulus(pred: str | None, gold: str, expected: bool) -> None:
    assert is_correct(pred, gold, modulus=1000) is expected


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("5", "10^{10^{10}}"),
        ("10^{10^{10}}", "5"),
        ("5", "(x+1)^{10^{10}}"),
        ("5", "9999999999999!"),
        ("5", "3^{100000}"),
    ],
)
def test_is_correct_refuses_huge_numbers(pred: str, gold: str) -> None:
    """Without a timeout these would hang sympy; they must grade False quickly."""
    assert is_correct(pred, gold) is False


def test_is_correct_keeps_moderate_powers() -> None:
    assert is_correct(r"2^{2022}\cdot 2", "2^{2023}") is True


def test_is_correct_off_main_thread() -> None:
    """math-verify's signal timeouts fail outside the main thread; there a comparison that
    needs math-verify runs in the grading process instead."""
    results: list[bool] = []
    errors: list[BaseException] = []

    def grade() -> None:
        try:
            results.append(is_correct("0.5", r"\frac{1}{2}", timeout_s=30))  # equal keys
            results.append(is_correct("2", "3", timeout_s=30))
            results.append(math_verify_equal(r"\frac{1}{2}", "0.5", timeout_s=30))  # the grading process
            results.append(math_verify_equal("2", "3", timeout_s=30))
        except BaseException as e:  # pragma: no cover - the failure we guard against
            errors.append(e)

    t = threading.Thread(target=grade)
    t.start()
    t.join(timeout=300)
    assert not errors
    assert results == [True, False, True, False]


def test_an_overrunning_comparison_is_killed_and_the_next_one_gets_a_fresh_process() -> None:
    results: list[bool] = []

    def grade() -> None:
        results.append(math_verify_equal("x+1", "1+x", timeout_s=30))
        first = grading._PROCESS._proc
        results.append(math_verify_equal("x+2", "2+x", timeout_s=1e-6))  # no answer comes back that fast
        results.append(grading._PROCESS._proc is None and first is not None and not first.is_alive())
        results.append(math_verify_equal("x+3", "3+x", timeout_s=30))

    t = threading.Thread(target=grade)
    t.start()
    t.join(timeout=300)
    assert results == [True, False, True, True]


def test_is_correct_with_timeout_on_main_thread() -> None:
    assert is_correct("0.5", r"\frac{1}{2}", timeout_s=5) is True


def test_a_deeply_nested_or_huge_answer_keeps_its_text_and_returns() -> None:
    nested = "(" * 900 + "5" + ")" * 900  # the structural reading would recurse past Python's limit
    assert vote_key(nested) == nested
    assert vote_key("x" * 5000) == "x" * 5000

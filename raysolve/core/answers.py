"""Answers: extract the last ``\\boxed{}``, key it for voting (``canonical.py``), apply an
integer modulus, and grade against a gold answer (``grading.py`` for math-verify).

Everything here is pure (no Ray, no I/O). ``parse_answer`` runs once per finished sample
in the tool loop (engine actors); ``is_correct`` runs once per problem on the
coordinator's grading thread.
"""

from __future__ import annotations

import re

from raysolve.core.canonical import BOX, INT_DIGITS, canonical_key, normalize_answer, rational_of
from raysolve.core.grading import math_verify_equal

__all__ = [
    "extract_boxed",
    "normalize_answer",
    "vote_key",
    "apply_modulus",
    "parse_answer",
    "is_correct",
]

# ---------------------------------------------------------------------------
# Extraction


def extract_boxed(text: str) -> str | None:
    """Content of the last top-level ``\\boxed{...}`` (or ``\\fbox{...}``).

    Braces nest; escaped ``\\{``/``\\}`` don't count. ``\\boxed {x}`` and the
    brace-less ``\\boxed 5`` are accepted. Boxes inside a box belong to it
    (``\\boxed{\\boxed{5}}`` gives ``\\boxed{5}``). Returns None when there is no
    box, or when the last one is unbalanced (a truncated sample: an earlier box
    is an intermediate result, not the answer).
    """
    found: str | None = None
    pos = 0
    while (m := BOX.search(text, pos)) is not None:
        i = m.end()
        n = len(text)
        while i < n and text[i].isspace():
            i += 1
        if i < n and text[i] == "{":
            end = _match_brace(text, i)
            if end < 0:
                return None
            found = text[i + 1 : end]
            pos = end + 1
        elif i > m.end() and i < n:
            # "\boxed 5": one bare token, up to whitespace or '$'.
            j = i
            while j < n and not text[j].isspace() and text[j] != "$":
                j += 1
            found = text[i:j]
            pos = j
        else:
            pos = m.end()
    return found


def _match_brace(text: str, start: int) -> int:
    """Index of the '}' closing the '{' at ``start``, or -1 if unbalanced."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2  # skip the escaped character (\{ \} \\)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


# ---------------------------------------------------------------------------
# The vote key, a modulus, and the per-sample entry point

_DIGITS = re.compile(r"-?\d+")


def vote_key(ans: str, modulus: int | None = None) -> str | None:
    """The key a sample votes with (``canonical.canonical_key``): equal for answers that are
    the same, exactly. Under a modulus an integer becomes ``str(n % modulus)`` (Python's
    ``%``: ``-3`` -> ``997`` for 1000), including integer-valued forms (``12.0``, ``1{,}012``,
    ``\\frac{24}{2}``, ``10^6``, ``1e3``), and anything else becomes None: it cannot be a
    valid answer and must not vote. An empty answer is None."""
    key = canonical_key(ans)
    if key is None or modulus is None:
        return key
    if modulus <= 0:
        raise ValueError(f"modulus must be positive, got {modulus}")
    if not _DIGITS.fullmatch(key):
        return None
    return str(_int_mod(key, modulus))


apply_modulus = vote_key
"""The name the competition loop has used for ``vote_key``."""


def _int_mod(s: str, modulus: int) -> int:
    """``int(s) % modulus`` for a digit string of any length."""
    neg = s.startswith("-")
    digits = s.lstrip("-")
    r = 0
    for i in range(0, len(digits), INT_DIGITS):
        chunk = digits[i : i + INT_DIGITS]
        r = (r * pow(10, len(chunk), modulus) + int(chunk)) % modulus
    return (-r) % modulus if neg else r


def parse_answer(text: str, modulus: int | None = None) -> str | None:
    """The vote of one finished sample: the key of its last box, modulus applied.
    None (no vote) when there is no box, it is empty or unbalanced, or it is
    not an integer under a modulus."""
    boxed = extract_boxed(text)
    if boxed is None:
        return None
    return vote_key(boxed, modulus)


# ---------------------------------------------------------------------------
# Grading


def is_correct(
    predicted: str | None,
    gold: str | None,
    modulus: int | None = None,
    *,
    timeout_s: float | None = None,
) -> bool:
    """Grade one answer: ``predicted`` (a box's content as the model wrote it, or a vote key)
    against ``gold``.

    Under a modulus with an integer gold, only the keys decide (the prediction must be an
    integer congruent to gold). Otherwise equal keys are correct; two exact numbers, two
    multiple-choice letters or two words with different keys are not (``0.333`` is not
    ``\\frac13``, ``50\\%`` is not ``0.5``); everything else goes to math-verify on the strings
    as written, so that it sees ``\\text{}`` boundaries and drops units the way it intends
    (``grading.math_verify_equal``, bounded by ``timeout_s`` on any thread). No gold, no
    prediction: False.
    """
    if predicted is None or gold is None:
        return False
    if modulus is not None:
        gold_key = vote_key(gold, modulus)
        if gold_key is not None:
            return vote_key(predicted, modulus) == gold_key
        # A non-integer gold under a modulus is a dataset slip: grade plainly.
    g, p = canonical_key(gold), canonical_key(predicted)
    if g is None or p is None:
        return False
    if g == p:
        return True
    if _decided_by_keys(g) and _decided_by_keys(p):
        return False
    return math_verify_equal(gold, predicted, timeout_s=timeout_s)


_CHOICE_KEY = re.compile(r"\([A-E]\)")
_WORD_KEY = re.compile(r"[A-Za-z]{2,}(?: [A-Za-z]+)*")
_NUMBERS_KEY = re.compile(r"[(\[{][-\d/, ()\[\]{}]*[)\]}]")


def _decided_by_keys(key: str) -> bool:
    """Keys whose inequality is the answer: exact numbers, tuples, sets, intervals and matrices
    of exact numbers (math-verify calls ``(1,2)`` and ``\\{1,2\\}`` equal), choice letters, words
    (which math-verify reads as products of letters, calling anagrams equal)."""
    return rational_of(key) is not None or bool(
        _CHOICE_KEY.fullmatch(key) or _WORD_KEY.fullmatch(key) or _NUMBERS_KEY.fullmatch(key))

"""Answers: extract the last ``\\boxed{}``, normalise it for voting, apply an
integer modulus, and grade against a gold answer.

Everything here is pure (no Ray, no I/O). ``parse_answer`` runs once per
finished sample on the coordinator, so it is string work only; ``is_correct``
is for grading and is the only place that touches ``math_verify`` (imported
lazily, it pulls in sympy).
"""

from __future__ import annotations

import math
import re
import threading
from typing import Any, Iterable

__all__ = [
    "extract_boxed",
    "normalize_answer",
    "apply_modulus",
    "parse_answer",
    "is_correct",
]

# ---------------------------------------------------------------------------
# Extraction

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


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
    while (m := _BOX.search(text, pos)) is not None:
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
# Normalisation

_TEXT_WRAP = re.compile(r"\\(?:text|textrm|textbf|textit|textup|mbox|mathrm)\s*\{([^{}]*)\}")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_SPACING = re.compile(r"\\[,!;: ]|\\q?quad(?![A-Za-z])|~")
_DISPLAY = re.compile(r"\\(?:displaystyle|textstyle)(?![A-Za-z])")
_SMALL_FRAC = re.compile(r"\\[dt]frac(?![A-Za-z])")
_CTRL_WORD_END = re.compile(r"\\[A-Za-z]+$")
_TRAILING_DECOR = re.compile(r"(?:\^\s*\{?\s*\\circ\s*\}?|°|\\%|%)$")
_LEADING_VAR = re.compile(r"^[A-Za-z]=")
_THOUSANDS_BRACE = re.compile(r"(?<=\d)\{,\}(?=\d{3})")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_INT = re.compile(r"-?\d+")
_DECIMAL = re.compile(r"-?\d*\.\d+")
_FRAC_ARG = r"(?:\{(-?\d+)\}|(\d))"
_LATEX_FRAC = re.compile(r"(-?)\\frac" + _FRAC_ARG + _FRAC_ARG)
_SLASH_FRAC = re.compile(r"(-?\d+)/(-?\d+)")

# Python refuses int(str) above 4300 digits; such strings are reduced by hand.
_INT_DIGITS = 4000


def normalize_answer(ans: str) -> str:
    """Canonical string for grouping votes. Conservative: it only rewrites
    notation, never decides mathematical equivalence (grading does that).

    In order:
      * strip ``$``/``\\$``, a wrapping ``\\(..\\)``/``\\[..\\]``, ``\\displaystyle``;
      * unwrap a whole-answer ``\\boxed{..}``;
      * drop ``\\left``/``\\right`` and spacing (``\\, \\! \\; \\: \\quad ~``);
      * unwrap ``\\text{..}``-like wrappers (``\\text``, ``\\textbf``, ``\\mbox``,
        ``\\mathrm``...) keeping their content; units are kept (``12 cm`` stays
        distinct from ``12``);
      * remove whitespace, except one space where it ends a control word
        before a letter (``\\alpha b`` must not become ``\\alphab``);
      * drop a trailing ``.``, a trailing degree sign (``^\\circ``) or percent;
      * ``\\dfrac``/``\\tfrac`` -> ``\\frac``;
      * drop a leading single-letter ``x=`` when it is the only ``=``;
      * whole-answer numbers: ``+5`` -> ``5``; ``1,000``/``1{,}000`` -> ``1000``;
        ``007`` -> ``7``; ``12.0`` -> ``12``, ``0.50`` -> ``0.5``, ``.5`` -> ``0.5``;
        ``\\frac{2}{4}``, ``\\frac24``, ``2/4`` -> ``1/2`` (integer parts only,
        and only when the fraction is the whole answer: ``\\frac{1}{2}\\pi``
        is left alone, since ``1/2\\pi`` would read differently).

    Decimals are not turned into fractions (``0.5`` and ``1/2`` vote apart;
    ``is_correct`` still grades them equal). Case is kept.
    """
    s = ans.strip().replace("\\$", "").replace("$", "").strip()
    if s.startswith(("\\(", "\\[")) and s.endswith(("\\)", "\\]")):
        s = s[2:-2]
    s = _DISPLAY.sub("", s).strip()
    s = _unwrap_whole_box(s)
    s = _LEFT_RIGHT.sub("", s)
    s = _SPACING.sub(" ", s)
    while True:
        unwrapped = _TEXT_WRAP.sub(r"\1", s)
        if unwrapped == s:
            break
        s = unwrapped
    s = _squeeze_spaces(s)
    s = s.rstrip(".")
    s = _TRAILING_DECOR.sub("", s)
    s = _SMALL_FRAC.sub(r"\\frac", s)
    if s.count("=") == 1 and _LEADING_VAR.match(s):
        s = s[2:]
    return _canonical_number(s)


def _unwrap_whole_box(s: str) -> str:
    """``\\boxed{X}`` -> ``X`` when the box is the whole string."""
    m = _BOX.match(s)
    if m is None:
        return s
    i = m.end()
    while i < len(s) and s[i].isspace():
        i += 1
    if i < len(s) and s[i] == "{" and _match_brace(s, i) == len(s) - 1:
        return s[i + 1 : -1].strip()
    return s


def _squeeze_spaces(s: str) -> str:
    parts = s.split()
    if not parts:
        return ""
    out = parts[0]
    for p in parts[1:]:
        if p[0].isalpha() and _CTRL_WORD_END.search(out):
            out += " " + p
        else:
            out += p
    return out


def _canonical_number(s: str) -> str:
    """Rewrite ``s`` when the whole of it is a plain number or integer fraction."""
    if s.startswith("+") and len(s) > 1 and (s[1].isdigit() or s[1] in ".\\"):
        s = s[1:]
    s = _THOUSANDS_BRACE.sub(",", s)
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if _INT.fullmatch(s):
        return _canonical_int(s)
    if _DECIMAL.fullmatch(s):
        whole, frac = s.split(".")
        frac = frac.rstrip("0")
        neg = whole.startswith("-")
        whole = _canonical_int(whole.lstrip("-") or "0")
        out = whole + ("." + frac if frac else "")
        return "-" + out if neg and out != "0" else out
    m = _LATEX_FRAC.fullmatch(s)
    if m:
        num = m.group(2) or m.group(3)
        den = m.group(4) or m.group(5)
        if m.group(1):  # a minus sign in front of \frac
            num = num[1:] if num.startswith("-") else "-" + num
        return _reduced(num, den, s)
    m = _SLASH_FRAC.fullmatch(s)
    if m:
        return _reduced(m.group(1), m.group(2), s)
    return s


def _canonical_int(s: str) -> str:
    neg = s.startswith("-")
    digits = s.lstrip("-").lstrip("0") or "0"
    return "-" + digits if neg and digits != "0" else digits


def _reduced(num: str, den: str, original: str) -> str:
    """``num/den`` in lowest terms with the sign in front; ``original`` if not
    representable (zero denominator, or too many digits to parse)."""
    if len(num) > _INT_DIGITS or len(den) > _INT_DIGITS:
        return original
    p, q = int(num), int(den)
    if q == 0:
        return original
    if q < 0:
        p, q = -p, -q
    g = math.gcd(p, q)
    p, q = p // g, q // g
    return str(p) if q == 1 else f"{p}/{q}"


# ---------------------------------------------------------------------------
# Modulus and the per-sample entry point


def apply_modulus(ans: str, modulus: int | None) -> str | None:
    """Normalise ``ans``; under a modulus, an integer becomes ``str(n % modulus)``
    (Python's ``%``: ``-3`` -> ``997`` for 1000) and anything else becomes None,
    since it cannot be a valid answer and must not vote. Integer-valued forms
    such as ``12.0``, ``+12``, ``1,012`` or ``\\frac{24}{2}`` count as integers;
    unevaluated expressions such as ``2^{10}`` do not. An empty answer is None.
    """
    s = normalize_answer(ans)
    if not s:
        return None
    if modulus is None:
        return s
    if modulus <= 0:
        raise ValueError(f"modulus must be positive, got {modulus}")
    if not _INT.fullmatch(s):
        return None
    return str(_int_mod(s, modulus))


def _int_mod(s: str, modulus: int) -> int:
    """``int(s) % modulus`` for a digit string of any length."""
    neg = s.startswith("-")
    digits = s.lstrip("-")
    r = 0
    for i in range(0, len(digits), _INT_DIGITS):
        chunk = digits[i : i + _INT_DIGITS]
        r = (r * pow(10, len(chunk), modulus) + int(chunk)) % modulus
    return (-r) % modulus if neg else r


def parse_answer(text: str, modulus: int | None = None) -> str | None:
    """The vote of one finished sample: last box, normalised, modulus applied.
    None (no vote) when there is no box, it is empty or unbalanced, or it is
    not an integer under a modulus."""
    boxed = extract_boxed(text)
    if boxed is None:
        return None
    return apply_modulus(boxed, modulus)


# ---------------------------------------------------------------------------
# Grading

_WORD = re.compile(r"[A-Za-z]{2,}")
# Limits that keep sympy from hanging when math-verify runs without a timeout
# (off the main thread it must): 10^{10^{10}} vs 5 never returns otherwise.
_MAX_VERIFY_CHARS = 1000
_MAX_EXPONENT = 100_000
_MAX_LOG10 = 10_000  # |numeric powers| within 10^(+-10000)
_MAX_FACTORIAL = 10_000


def is_correct(
    predicted: str | None,
    gold: str,
    modulus: int | None = None,
    *,
    timeout_s: int | None = None,
) -> bool:
    """Grade one answer.

    Exact match after normalisation first (and, under a modulus with an integer
    gold, only that: the prediction must be an integer congruent to gold).
    Otherwise equivalence via math-verify (``\\frac{1}{2}`` = ``0.5``).

    math-verify's own timeouts use ``signal.alarm``, which fails outside the
    main thread (Ray actors, thread pools), so they are off by default;
    ``timeout_s`` turns them on, but only when called from the main thread.
    Without a timeout, inputs that would make sympy build astronomically large
    numbers (``10^{10^{10}}``, ``(10^9)!``) or very long strings are not sent
    to math-verify and grade False. Two plain words (``Monday``) are compared
    exactly, because math-verify reads them as products of letters and would
    call anagrams equal.
    """
    if predicted is None:
        return False
    if modulus is not None:
        gold_mod = apply_modulus(gold, modulus)
        if gold_mod is not None:
            return apply_modulus(predicted, modulus) == gold_mod
        # A non-integer gold under a modulus is a dataset slip: grade plainly.
    g = normalize_answer(gold)
    p = normalize_answer(predicted)
    if not g or not p:
        return False
    if g == p:
        return True
    if _WORD.fullmatch(g) or _WORD.fullmatch(p):
        return False
    if len(g) > _MAX_VERIFY_CHARS or len(p) > _MAX_VERIFY_CHARS:
        return False
    return _math_verify_equal(g, p, timeout_s)


def _math_verify_equal(gold: str, pred: str, timeout_s: int | None) -> bool:
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    if threading.current_thread() is not threading.main_thread():
        timeout_s = None
    try:
        g = parse(f"${gold}$", parsing_timeout=timeout_s)  # type: ignore[arg-type]
        p = parse(f"${pred}$", parsing_timeout=timeout_s)  # type: ignore[arg-type]
        if not g or not p or not (_tame(g) and _tame(p)):
            return False
        return bool(verify(g, p, timeout_seconds=timeout_s))
    except (Exception, TimeoutException):  # TimeoutException is a BaseException
        return False


def _tame(parsed: Iterable[Any]) -> bool:
    """True when no power or factorial in the parsed sympy trees is large
    enough to stall an exact comparison. Children are checked before parents,
    so every ``evalf`` here works on bounded arguments; sympy Floats carry huge
    exponents, so the magnitude checks themselves cannot overflow."""
    from sympy import Basic, Float, Pow, postorder_traversal
    from sympy.functions.combinatorial.factorials import factorial, factorial2

    max_exp = Float(_MAX_EXPONENT)
    big, tiny = Float(f"1e{_MAX_LOG10}"), Float(f"1e-{_MAX_LOG10}")
    try:
        for expr in parsed:
            if not isinstance(expr, Basic):
                continue
            for node in postorder_traversal(expr):
                if isinstance(node, Pow):
                    if not node.exp.free_symbols and bool(abs(node.exp.evalf(15)) > max_exp):
                        return False  # (x+1)^{10^{10}} would stall expansion too
                    if not node.free_symbols:
                        v = abs(node.evalf(15))
                        if v != 0 and bool(v > big or v < tiny):
                            return False
                elif isinstance(node, (factorial, factorial2)):
                    arg = node.args[0]
                    if not arg.free_symbols and bool(abs(arg.evalf(15)) > _MAX_FACTORIAL):
                        return False
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return False  # an undecidable comparison (nan, zoo): don't risk it
    return True

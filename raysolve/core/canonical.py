"""The vote key: one canonical string per answer, equal exactly when the answers are.

Samples vote with the key of their boxed answer, so forms that are the same number must
share a key (``\\frac12``, ``0.5``, ``1/2``; ``\\sqrt{12}``, ``2\\sqrt3``; ``10^6``, ``1e6``)
and different answers must never share one (``1 2`` is not ``12``). Pure string work first,
then math-verify's LaTeX parser for what is left:

1. **Notation** (``normalize_answer``): wrappers (``$``, ``\\(…\\)``, a whole ``\\boxed{}``,
   ``\\left``/``\\right``, ``\\displaystyle``, thin spaces), ``\\text{…}`` unwrapped,
   ``\\dfrac``/``\\tfrac``/``\\cfrac`` as ``\\frac``, the Unicode minus, a trailing period,
   degree or percent sign, a leading single-letter ``x=``, trailing units in ``\\text{}``
   after a number, ``x \\in`` before a set, ``\\emptyset``/``\\varnothing`` as ``\\{\\}``.
   Whitespace goes, except between two digits and after a control word.
2. **Numbers**, exactly, by hand: integers (``+5``, ``007``, ``1{,}000``), decimals,
   fractions, mixed numbers (``2\\frac12``), scientific notation (``1.5e3``,
   ``1.5\\times10^{3}``, ``10^6``) all become ``n`` or ``p/q`` in lowest terms. Decimals
   equal fractions only when exactly equal: ``0.5`` is ``1/2``, ``0.333`` is ``333/1000``,
   not ``1/3``. Percent and degree signs are notation: ``50\\%`` is ``50`` (not ``1/2``).
3. **Structure**, by hand: tuples and intervals (``(a, b)`` keyed the same as the open
   interval, since the notation is the same), sets (elements sorted), unions of intervals,
   matrices (``pmatrix``/``bmatrix``/``matrix`` alike), multiple-choice letters
   (``\\text{(A)}``, ``(A)``, ``A``), each element keyed recursively.
4. **Expressions** (radicals, ``\\pi``, powers, polynomials): math-verify's LaTeX parser
   into SymPy, floats made exact rationals, expanded, printed with SymPy's canonical term
   order; ``(1+\\sqrt5)/2`` and ``\\frac{\\sqrt5+1}{2}`` meet. Only after a screen that keeps
   out what could make SymPy compute for long (big or nested exponents, factorials,
   sums, integrals, long strings): those keep their normalised text, as does anything the
   parser cannot read.

Results are cached per distinct string (samples of a problem repeat their answers); a
first sight of a LaTeX expression costs a parse (milliseconds), numbers microseconds.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction

__all__ = ["BOX", "INT_DIGITS", "canonical_key", "normalize_answer", "rational_of"]

# ---------------------------------------------------------------- notation

BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
"""``\\boxed`` or ``\\fbox`` (not ``\\boxedx``): where a sample's answer starts."""
_TEXT_WRAP = re.compile(r"\\(?:text|textrm|textbf|textit|textup|textsf|mbox|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
_LEFT_RIGHT = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])")
_SPACING = re.compile(r"\\\\|\\[,!;: >]|\\q?quad(?![A-Za-z])|~|\\hspace\{[^{}]*\}")
_DISPLAY = re.compile(r"\\(?:displaystyle|textstyle)(?![A-Za-z])")
_SMALL_FRAC = re.compile(r"\\[dtc]frac(?![A-Za-z])")
_THIN_THOUSANDS = re.compile(r"(?<=\d)\\,(?=\d{3}(?!\d))")
_CTRL_WORD_END = re.compile(r"\\[A-Za-z]+$")
_TRAILING_DECOR = re.compile(r"(?:\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\%|%|\\degree)$")
_LEADING_VAR = re.compile(r"^[A-Za-z]=")
_MEMBER_OF = re.compile(r"^[A-Za-z]\\in(?![A-Za-z])")
_EMPTY_SET = re.compile(r"\\(?:emptyset|varnothing)(?![A-Za-z])|\\\{\\\}")
_TRAILING_UNIT = re.compile(r"^(.*?[\d}])\s*\\(?:text|textrm|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z .^²³/-]*\}$")
_UNICODE = {"\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u221a": "\\sqrt"}


def normalize_answer(ans: str) -> str:
    """The answer's notation made canonical (step 1 of the module docstring): a string
    compared as text, before any number or structure is read."""
    s = ans.strip()
    for char, latex in _UNICODE.items():
        s = s.replace(char, latex)
    s = s.replace("\\$", "").replace("$", "").strip()
    if s.startswith(("\\(", "\\[")) and s.endswith(("\\)", "\\]")):
        s = s[2:-2]
    s = _DISPLAY.sub("", s).strip()
    s = _unwrap_whole_box(s)
    s = _LEFT_RIGHT.sub("", s)
    s = _THIN_THOUSANDS.sub("{,}", s)
    s = _SPACING.sub(lambda m: m.group() if m.group() == "\\\\" else " ", s)
    unit = _TRAILING_UNIT.match(s.strip())
    if unit and _is_plain_number(unit.group(1)):
        s = unit.group(1)
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
    s = _MEMBER_OF.sub("", s)  # x \in [1,2] is [1,2]
    s = _EMPTY_SET.sub("\\\\{\\\\}", s)
    if s.startswith("+") and len(s) > 1 and (s[1].isdigit() or s[1] in ".\\"):
        s = s[1:]
    return s


def _is_plain_number(s: str) -> bool:
    return rational_of(_squeeze_spaces(s.strip())) is not None


def _unwrap_whole_box(s: str) -> str:
    """``\\boxed{X}`` -> ``X`` when the box is the whole string."""
    m = BOX.match(s)
    if m is None:
        return s
    i = m.end()
    while i < len(s) and s[i].isspace():
        i += 1
    if i < len(s) and s[i] == "{" and _closing(s, i) == len(s) - 1:
        return s[i + 1 : -1].strip()
    return s


def _closing(text: str, start: int) -> int:
    """Index of the bracket closing the one at ``start`` (``{``, ``(`` or ``[``), or -1."""
    depth, i, n = 0, start, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _squeeze_spaces(s: str) -> str:
    """Whitespace removed, except one space between two digits (``1 2`` is not ``12``) and
    after a control word before a letter (``\\alpha b`` is not ``\\alphab``)."""
    parts = s.split()
    if not parts:
        return ""
    out = parts[0]
    for p in parts[1:]:
        if (p[0].isdigit() and out[-1].isdigit()) or (p[0].isalpha() and _CTRL_WORD_END.search(out)):
            out += " " + p
        else:
            out += p
    return out


# ---------------------------------------------------------------- numbers

INT_DIGITS = 4000
"""Python refuses ``int(str)`` above 4300 digits: longer numbers stay text here (answers reduces
them by hand under a modulus)."""
_THOUSANDS = re.compile(r"-?\d{1,3}(?:(?:,|\{,\})\d{3})+(?:\.\d+)?")
_DECIMAL = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")
_SCI_E = re.compile(r"(-?(?:\d+\.?\d*|\.\d+))[eE]([+-]?\d{1,4})")
_SCI_TIMES = re.compile(r"(?:(-?(?:\d+\.?\d*|\.\d+))(?:\\times|\\cdot))?(-?)10\^(?:\{([+-]?\d{1,4})\}|(\d))")
_FRAC_ARG = r"(?:\{\s*(-?\d+)\s*\}|(\d))"
_LATEX_FRAC = re.compile(r"(-?)(\d+)?\\frac" + _FRAC_ARG + _FRAC_ARG)
_SLASH_FRAC = re.compile(r"(-?\d+)/(-?\d+)")


def rational_of(s: str) -> Fraction | None:
    """The exact value of ``s`` when the whole of it is a plain number: an integer, decimal,
    integer fraction (``\\frac{a}{b}``, ``\\frac ab``, ``a/b``), mixed number (``2\\frac12``) or
    scientific notation; else None."""
    if not s or len(s) > INT_DIGITS:
        return None
    if _THOUSANDS.fullmatch(s):
        s = s.replace("{,}", "").replace(",", "")
    if _DECIMAL.fullmatch(s):
        return Fraction(s)
    m = _LATEX_FRAC.fullmatch(s)
    if m:
        sign, whole, num, den = m.group(1), m.group(2), m.group(3) or m.group(4), m.group(5) or m.group(6)
        if int(den) == 0 or (whole is not None and num.startswith("-")):
            return None
        value = Fraction(int(num), int(den)) + (int(whole) if whole else 0)
        return -value if sign else value
    m = _SLASH_FRAC.fullmatch(s)
    if m:
        return Fraction(int(m.group(1)), int(m.group(2))) if int(m.group(2)) else None
    m = _SCI_E.fullmatch(s)
    if m:
        return Fraction(m.group(1)) * Fraction(10) ** int(m.group(2))
    m = _SCI_TIMES.fullmatch(s)
    if m and (m.group(1) or not m.group(2)):
        mantissa = Fraction(m.group(1)) if m.group(1) else Fraction(1)
        return mantissa * Fraction(10) ** int(m.group(3) or m.group(4))
    return None


def _number_key(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


# ---------------------------------------------------------------- structure

_CHOICE = re.compile(r"\(?([A-E])\)?")
_SET = re.compile(r"\\\{(.*)\\\}", re.S)
_MATRIX = re.compile(r"\\begin\{([pbBv]?matrix)\}(.*)\\end\{\1\}", re.S)
_UNION = re.compile(r"\\cup(?![A-Za-z])")
_WORDS = re.compile(r"[A-Za-z]{2,}(?: [A-Za-z]+)*")


def _split_top(s: str, sep: str) -> list[str]:
    """``s`` split at ``sep`` outside any brackets."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            start = i + len(sep)
            i = start
            continue
        if c == "\\":
            if s.startswith("\\{", i):
                depth += 1
            elif s.startswith("\\}", i):
                depth -= 1
            i += 2
            continue
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
        i += 1
    parts.append(s[start:])
    return parts


def _structured_key(s: str) -> str | None:
    """The key of a tuple, interval, set, union or matrix, with each element keyed; None when
    ``s`` is none of these."""
    if len(_split_top(s, "\\cup")) > 1 and _UNION.search(s):
        return "∪".join(sorted(_key(part) for part in _split_top(s, "\\cup")))
    m = _MATRIX.fullmatch(s)
    if m and m.group(1) != "vmatrix":
        rows = [row for row in _split_top(m.group(2), "\\\\") if row.strip()]
        return "[" + ", ".join("[" + ", ".join(_key(cell) for cell in _split_top(row, "&")) + "]" for row in rows) + "]"
    m = _SET.fullmatch(s)
    if m:
        items = _split_top(m.group(1), ",") if m.group(1).strip() else []
        return "{" + ", ".join(sorted({_key(item) for item in items})) + "}"
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _closing(s, 0) == len(s) - 1:
        items = _split_top(s[1:-1], ",")
        if len(items) >= 2:
            return s[0] + ", ".join(_key(item) for item in items) + s[-1]
        if s[0] == "(":
            return _key(s[1:-1])  # (5) is 5
    return None


# ---------------------------------------------------------------- expressions

_MAX_PARSE_CHARS = 200
_RISKY = re.compile(r"\\(?:sum|prod|int|iint|oint|lim|binom|choose|infty\s*!)|!|\\mod|\\pmod|\\bmod")
_MAX_EXPONENT = 64
_MAX_POWERS = 4
_SAFE_IN_EXPONENT = re.compile(r"\\(?:frac|pi)(?![A-Za-z])")
_MAX_DIGITS = 60


def _exponents(s: str) -> list[str]:
    """The exponent of every ``^`` in ``s``: a braced group (brackets matched), else one
    token (a number, a letter or a control word)."""
    found = []
    for i, c in enumerate(s):
        if c != "^":
            continue
        j = i + 1
        while j < len(s) and s[j] == " ":
            j += 1
        if j < len(s) and s[j] == "{":
            end = _closing(s, j)
            found.append(s[j + 1 : end] if end > 0 else s[j + 1 :])
        else:
            token = re.match(r"\\[A-Za-z]+|\d+|.", s[j:])
            found.append(token.group() if token else "")
    return found


def _safe_to_parse(s: str) -> bool:
    """Whether SymPy can evaluate ``s`` quickly: no long strings, long numbers, factorials,
    sums, integrals, limits, nested or large exponents (``10^{10^{10}}``, ``(x+1)^{1000}``)."""
    if len(s) > _MAX_PARSE_CHARS or _RISKY.search(s):
        return False
    if any(len(run) > _MAX_DIGITS for run in re.findall(r"\d+", s)):
        return False
    exponents = _exponents(s)
    if len(exponents) > _MAX_POWERS:  # ((2^{64})^{64})^{64} ... grows past any bound
        return False
    for exponent in exponents:
        plain = _SAFE_IN_EXPONENT.sub("", exponent)
        if "^" in plain or "\\" in plain:
            return False
        if any(int(run) > _MAX_EXPONENT for run in re.findall(r"\d+", exponent)):
            return False
    return True


@functools.lru_cache(maxsize=8192)
def _expression_key(s: str) -> str | None:
    """SymPy's canonical print of ``s`` parsed by math-verify's LaTeX parser (floats exact,
    expanded), or None when it cannot be parsed safely."""
    if not _safe_to_parse(s):
        return None
    try:
        from math_verify import parse
        from math_verify.parser import LatexExtractionConfig
        from sympy import Basic, Eq, Float, Rational, S, Symbol, expand, sstr

        quiet_math_verify()
        parsed = parse(f"${s}$", extraction_config=[LatexExtractionConfig()], parsing_timeout=None)  # type: ignore[arg-type]
        if not parsed or not isinstance(parsed[0], Basic):
            return None
        expr = parsed[0]
        if isinstance(expr, Eq) and isinstance(expr.lhs, Symbol):
            expr = expr.rhs
        expr = expr.doit()  # the parser keeps sqrt(12), 2**10 unevaluated
        if expr.has(S.ComplexInfinity, S.NaN) or expr.is_Boolean:
            return None
        floats = expr.atoms(Float)
        if floats:
            expr = expr.xreplace({f: Rational(str(f)) for f in floats})
        if expr.is_Rational:
            return _number_key(Fraction(int(expr.p), int(expr.q)))
        return sstr(expand(expr), order="lex")
    except Exception:  # noqa: BLE001 - an unreadable answer keeps its text
        return None


@functools.cache
def quiet_math_verify() -> None:
    """math-verify warns on every call made without its (main-thread-only, signal-based)
    timeout; here the screen above is the bound, so the warning is noise."""
    import logging

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)


# ---------------------------------------------------------------- the key


def _key(s: str) -> str:
    """The key of one normalised answer or element of one."""
    s = s.strip()
    while s.startswith("{") and _closing(s, 0) == len(s) - 1:
        s = s[1:-1].strip()  # a TeX group around the whole: {17} is 17
    if s.startswith("+") and len(s) > 1 and (s[1].isdigit() or s[1] in ".\\"):
        s = s[1:]
    value = rational_of(s)
    if value is not None:
        return _number_key(value)
    choice = _CHOICE.fullmatch(s)
    if choice and (s[0] == "(") == (s[-1] == ")"):
        return f"({choice.group(1)})"
    structured = _structured_key(s)
    if structured is not None:
        return structured
    if _WORDS.fullmatch(s) or (" " in s and re.search(r"\d \d", s)):
        return s  # words, or numbers side by side: no parser may read them as a product
    return _expression_key(s) or s


_MAX_STRUCTURED_CHARS = 2000


@functools.lru_cache(maxsize=8192)
def canonical_key(answer: str) -> str | None:
    """The vote key of a boxed answer's content; None when it is empty. A very long or very
    deeply nested answer keeps its normalised text (reading its structure could recurse
    without bound)."""
    s = normalize_answer(answer)
    if not s:
        return None
    if len(s) > _MAX_STRUCTURED_CHARS:
        return s
    try:
        return _key(s)
    except RecursionError:
        return s

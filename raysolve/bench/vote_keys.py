"""Cost of a vote key (``jobs/bench_vote_keys.py``): what the tool loop pays per finished sample.

Two measurements, each in a fresh cache:

- **a run's stream**: every sample's answer in a trace file, in order, keyed as the tool loop
  keys them (repeated answers hit the cache, as they do within a problem);
- **first sight of each form**: ``FORMS``, answers as MATH-style data sets write them (radicals,
  π, tuples, sets, intervals, matrices, units, choices), each keyed once with an empty cache —
  the worst case, a parse per answer.
"""

from __future__ import annotations

import time
from typing import Any

from raysolve.core import canonical
from raysolve.core.answers import vote_key
from raysolve.core.replay import load_traces
from raysolve.core.timing import latency_summary_ms

FORMS = [
    "42", "-7", "1{,}024", "0.75", r"\frac{3}{4}", r"\dfrac{7}{2}", r"2\frac{1}{3}", r"50\%", r"30^\circ", "1.5e3",
    r"\sqrt{2}", r"2\sqrt{3}", r"\frac{\sqrt{3}}{2}", r"\frac{1+\sqrt{5}}{2}", r"3\sqrt[3]{2}", r"\pi", r"\frac{\pi}{4}",
    r"2\pi", r"\frac{5\pi}{6}", r"4 - 2\sqrt{2}", r"x^2 + 2x + 1", r"(x-1)(x+1)", r"\frac{x}{x+1}", "y=3x-2",
    r"(2, -1)", r"\left(\frac{1}{2}, \frac{\sqrt{3}}{2}\right)", r"\{1, 3, 5\}", r"[0, 1)", r"(-\infty, -2] \cup [3, \infty)",
    r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"5\text{ cm}", r"\$18.90", r"\text{(C)}", r"\textbf{(E)}",
    r"\text{Monday}", r"1 2", r"10^{10}", r"2^{100}", r"\frac{9}{\sqrt{3}}", r"\sqrt{\frac{2}{3}}",
]
"""Answer forms of the kinds competition data sets hold, for the first-sight measurement."""


def _clear() -> None:
    canonical.canonical_key.cache_clear()
    canonical._expression_key.cache_clear()


def _timed(answers: list[str | None]) -> list[float]:
    out = []
    for answer in answers:
        t0 = time.perf_counter()
        if answer is not None:
            vote_key(answer)
        out.append(time.perf_counter() - t0)
    return out


def measure(traces: str) -> dict[str, Any]:
    """Latency summaries (ms) of keying a run's stream of answers and of first sights of ``FORMS``."""
    vote_key(r"\frac{\sqrt{2}}{2}")  # imports (the engine actor warms up the same way at start)
    rows = [s for t in load_traces(traces, raw_answers=True) for s in t.samples]
    _clear()
    stream = _timed([s.answer for s in rows])
    _clear()
    first = _timed(list(FORMS))
    return {"stream": {"answers": len(rows), "distinct": len({s.answer for s in rows}), **latency_summary_ms(stream, digits=4)},
            "first_sight": {"forms": len(FORMS), **latency_summary_ms(first, digits=3)},
            "first_sight_by_form_ms": {form: round(s * 1000, 3) for form, s in zip(FORMS, first)}}

"""A local stand-in for the competition's evaluation gateway.

The Kaggle AIMO server hands a notebook's ``predict`` one problem at a time, as one-row
Series ``id_`` and ``problem``, waits for a one-row frame ``id, answer``, checks it, and
only then sends the next problem; the answers are scored after the run. ``LocalGateway``
does the same with a CSV (or any file ``raysolve.io.problems`` reads), so a notebook can be
run end to end before it is submitted. It checks each prediction the way the server
would (one row, the right id, an integer in range) and scores against a gold column when
there is one. It imports no Ray: any ``predict`` callable works.
"""

from __future__ import annotations

import csv
import json
import operator
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from raysolve.core.answers import is_correct
from raysolve.io.problems import Fields, Problem, RowError, load_problems


@dataclass
class GatewayReport:
    problems: int = 0
    graded: int = 0
    correct: int = 0
    invalid: int = 0
    """Predictions the server would reject (wrong shape, wrong id, not an integer in range)."""
    skipped_rows: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    call_s: list[float] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def score(self) -> float | None:
        return self.correct / self.graded if self.graded else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "score": self.score}


class LocalGateway:
    """Feeds problems to ``predict`` one at a time, in file order (or shuffled), and scores."""

    def __init__(self, source: str | Path, *, fields: Fields = Fields(), modulus: int | None = 1000,
                 shuffle: bool = False, seed: int = 0) -> None:
        self.source = source
        self.fields = fields
        self.modulus = modulus
        self.shuffle = shuffle
        self.seed = seed

    def problems(self) -> tuple[list[Problem], list[RowError]]:
        items = list(load_problems(self.source, self.fields))
        problems = [p for p in items if isinstance(p, Problem)]
        if self.shuffle:
            random.Random(self.seed).shuffle(problems)
        return problems, [e for e in items if isinstance(e, RowError)]

    def run(self, predict: Callable[[Any, Any], Any], out_dir: str | Path | None = None) -> GatewayReport:
        """Serve every problem to ``predict``; with ``out_dir``, write ``submission.csv`` and ``gateway.json``."""
        import pandas as pd

        problems, errors = self.problems()
        report = GatewayReport(skipped_rows=[f"row {e.row}: {e.reason}" for e in errors])
        started = time.monotonic()
        for problem in problems:
            t0 = time.monotonic()
            try:
                prediction = predict(pd.Series([problem.id], name="id"), pd.Series([problem.text], name="problem"))
                answer, why = self.check(prediction, problem.id)
            except Exception as exc:  # the server would fail the submission; here it is reported
                answer, why = None, f"predict raised {type(exc).__name__}: {exc}"
            report.call_s.append(round(time.monotonic() - t0, 3))
            report.problems += 1
            report.invalid += why is not None
            correct = None
            if problem.answer is not None:
                correct = answer is not None and is_correct(str(answer), problem.answer, self.modulus)
                report.graded += 1
                report.correct += bool(correct)
            report.rows.append({"id": problem.id, "answer": answer, "gold": problem.answer,
                                "correct": correct, "invalid": why, "call_s": report.call_s[-1]})
        report.wall_s = round(time.monotonic() - started, 3)
        if out_dir is not None:
            self.write(report, Path(out_dir))
        return report

    def check(self, prediction: Any, expected_id: str) -> tuple[int | None, str | None]:
        """The answer in ``prediction`` and, if the server would reject it, why."""
        if hasattr(prediction, "columns"):  # a pandas or polars frame
            rows = prediction.to_dict("records") if hasattr(prediction, "to_dict") else prediction.to_dicts()
            if len(rows) != 1 or set(rows[0]) != {"id", "answer"}:
                return None, f"expected one row with columns id, answer; got {len(rows)} row(s) {sorted(rows[0]) if rows else []}"
            if str(rows[0]["id"]) != expected_id:
                return None, f"answered id {rows[0]['id']!r} for {expected_id!r}"
            value = rows[0]["answer"]
        else:
            value = prediction
        try:
            if isinstance(value, bool):
                raise TypeError
            value = operator.index(value)  # int or a numpy integer; not a float or a string
        except TypeError:
            return None, f"answer {value!r} is not an integer"
        if self.modulus is not None and not 0 <= value < self.modulus:
            return value, f"answer {value} is outside 0..{self.modulus - 1}"
        return value, None

    @staticmethod
    def write(report: GatewayReport, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / "submission.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "answer"])
            w.writerows([r["id"], r["answer"]] for r in report.rows)
        (out_dir / "gateway.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n")

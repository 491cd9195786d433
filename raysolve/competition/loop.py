"""Competition mode: problems answered one at a time under a hard wall-clock budget.

``Competition`` is the loop an AIMO-style run needs, with the engine left out: it asks a
``BudgetPolicy`` for a plan, calls a ``solve`` function with it, turns whatever comes back
into an integer answer, and tells the policy what the problem cost. The solve function is
injected (``raysolve.competition.aimo.SolverBackend`` runs it on the actors; tests use a scripted one
on a simulated clock), so this module imports no Ray.

Every problem is answered:

- settled by the stop policy: the vote's answer (source ``vote``);
- deadline reached: the leader of the votes so far (source ``partial``);
- no vote at all, a non-integer vote, or the solve function failing or timing out: the
  configured ``fallback_answer`` (source ``fallback``), and the run goes on;
- no time left: the fallback at once, without solving (reason ``no_time``).

Integer answers are taken modulo ``modulus``.

``CompetitionLog`` writes the per-problem log (``problems.jsonl``), the samples
(``samples.jsonl``), ``submission.csv``, and at the end ``summary.json`` and
``time-per-problem.png``. Rows are flushed per problem; reopening the directory resumes,
with the time already spent charged against the budget.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from raysolve.core.answers import apply_modulus, is_correct
from raysolve.competition.budget import BudgetPolicy, Outcome, ProblemPlan
from raysolve.io.output import read_rows, rewrite_rows
from raysolve.io.problems import Problem
from raysolve.core.records import ProblemResult

SolveFn = Callable[[Problem, ProblemPlan], ProblemResult]
"""Solves one problem under a plan; may raise (the problem then gets the fallback answer)."""


@dataclass
class Answered:
    """One row of the per-problem log."""

    id: str
    answer: int
    answer_source: str
    """``vote``, ``partial`` (deadline: the votes so far) or ``fallback``."""
    settle_reason: str
    votes: dict[str, int]
    gold: str | None
    correct: bool | None
    deadline_s: float
    samples_planned: int
    samples_launched: int
    samples_finished: int
    samples_cancelled: int
    samples_failed: int
    tokens: int
    used_s: float
    """Wall-clock time the problem took, from the plan to the answer."""
    started_s: float
    """When the problem started, in seconds since the run's start."""
    time_left_s: float
    """Budget left after the answer."""
    stop_policy: str
    error: str | None = None

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


def submission_answer(result: ProblemResult | None, modulus: int | None, fallback: int) -> tuple[int, str]:
    """The integer to submit and where it came from. The leader is used when it is an integer;
    otherwise the most voted integer; otherwise ``fallback``."""
    if result is not None:
        ranked = [result.answer] + sorted(result.votes, key=lambda a: -result.votes[a])
        for candidate in ranked:
            value = _as_int(candidate, modulus)
            if value is not None:
                return value, "partial" if result.settle_reason in ("time_limit", "cancelled") else "vote"
    return _wrap(fallback, modulus), "fallback"


def _as_int(answer: str | None, modulus: int | None) -> int | None:
    if answer is None:
        return None
    text = apply_modulus(answer, modulus) if modulus else answer
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _wrap(value: int, modulus: int | None) -> int:
    return value % modulus if modulus else value


@dataclass
class Competition:
    """Answers problems in the order given, within ``total_s`` seconds from ``started_at``."""

    policy: BudgetPolicy
    solve: SolveFn
    problems_total: int
    total_s: float
    modulus: int | None = None
    fallback_answer: int = 0
    clock: Callable[[], float] = time.monotonic
    started_at: float | None = None
    """The clock reading the budget counts from (default: now)."""
    spent_before_s: float = 0.0
    """Time an earlier, interrupted run of the same set already used."""
    log: "CompetitionLog | None" = None
    answered: list[Answered] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.started_at is None:
            self.started_at = self.clock()

    def elapsed_s(self) -> float:
        assert self.started_at is not None
        return self.spent_before_s + self.clock() - self.started_at

    def time_left_s(self) -> float:
        return self.total_s - self.elapsed_s()

    @property
    def problems_left(self) -> int:
        done = len(self.answered) + (len(self.log.previous) if self.log else 0)
        return max(1, self.problems_total - done)

    def answer(self, problem: Problem) -> Answered:
        """Plan, solve, answer and log one problem. Never raises for a failed solve."""
        started = self.clock()
        plan = self.policy.plan(self.time_left_s(), self.problems_left)
        result: ProblemResult | None = None
        error = None
        if plan.deadline_s <= 0:
            error = "no time left"
        else:
            try:
                result = self.solve(problem, plan)
            except Exception as exc:  # an engine, sandbox or actor failure costs this problem only
                error = f"{type(exc).__name__}: {exc}".strip()[:500]
        used = self.clock() - started
        value, source = submission_answer(result, self.modulus, self.fallback_answer)
        row = Answered(
            id=problem.id, answer=value, answer_source=source,
            settle_reason=result.settle_reason if result else ("no_time" if plan.deadline_s <= 0 else "error"),
            votes=dict(result.votes) if result else {},
            gold=problem.answer,
            correct=None if problem.answer is None else is_correct(str(value), problem.answer, self.modulus),
            deadline_s=round(plan.deadline_s, 3), samples_planned=plan.num_samples,
            samples_launched=result.samples_started if result else 0,
            samples_finished=result.samples_finished if result else 0,
            samples_cancelled=result.samples_cancelled if result else 0,
            samples_failed=result.samples_failed if result else 0,
            tokens=result.total_tokens if result else 0,
            used_s=round(used, 3), started_s=round(started - self.started_at + self.spent_before_s, 3),
            time_left_s=round(self.time_left_s(), 3), stop_policy=plan.stop_policy, error=error,
        )
        if result is not None:
            self.policy.observe(Outcome(
                used_s=used, samples_launched=result.samples_started, settle_reason=result.settle_reason,
                finished_latencies_s=tuple(s.end_s - s.start_s for s in result.samples
                                           if not s.cancelled and s.finish_reason != "error"),
            ))
        self.answered.append(row)
        if self.log is not None:
            self.log.write(row, result)
        return row

    def run(self, problems: list[Problem]) -> list[Answered]:
        return [self.answer(p) for p in problems]

    def summary(self) -> dict[str, Any]:
        rows = [*(self.log.previous if self.log else []), *(r.to_row() for r in self.answered)]
        return summarize(rows, total_s=self.total_s, elapsed_s=self.elapsed_s(), policy=self.policy.name)


def summarize(rows: list[dict[str, Any]], *, total_s: float, elapsed_s: float, policy: str) -> dict[str, Any]:
    """Score and time of a run from its per-problem rows."""
    graded = [r for r in rows if r["correct"] is not None]
    used = sorted(r["used_s"] for r in rows)

    def count(key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in rows:
            out[r[key]] = out.get(r[key], 0) + 1
        return out

    return {
        "policy": policy,
        "problems": len(rows),
        "graded": len(graded),
        "correct": sum(bool(r["correct"]) for r in graded),
        "score": round(sum(bool(r["correct"]) for r in graded) / len(graded), 4) if graded else None,
        "budget_s": round(total_s, 3),
        "elapsed_s": round(elapsed_s, 3),
        "within_budget": elapsed_s <= total_s,
        "used_s": {
            "total": round(sum(used), 3),
            "mean": round(sum(used) / len(used), 3) if used else None,
            "p50": used[len(used) // 2] if used else None,
            "max": used[-1] if used else None,
        },
        "samples": {k: sum(r[f"samples_{k}"] for r in rows) for k in ("planned", "launched", "finished", "cancelled")},
        "tokens": sum(r["tokens"] for r in rows),
        "settle_reasons": count("settle_reason"),
        "answer_sources": count("answer_source"),
        "errors": sum(r["error"] is not None for r in rows),
    }


class CompetitionLog:
    """The run's files; rows are flushed as each problem is answered."""

    def __init__(self, out_dir: str | Path, resume: bool = True) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        problems, samples = self.dir / "problems.jsonl", self.dir / "samples.jsonl"
        self.previous: list[dict[str, Any]] = read_rows(problems) if resume else []
        done = {r["id"] for r in self.previous}
        # Keep what is complete (a torn line or an unfinished problem's samples are dropped),
        # through a temp file, so a crash here loses nothing either.
        rewrite_rows(problems, self.previous)
        rewrite_rows(samples, [r for r in read_rows(samples) if r["problem_id"] in done] if resume else [])
        self._problems = problems.open("a", encoding="utf-8")
        self._samples = samples.open("a", encoding="utf-8")

    @property
    def done_ids(self) -> set[str]:
        return {r["id"] for r in self.previous}

    @property
    def spent_s(self) -> float:
        """Time the previous runs of this directory used on their problems."""
        return sum(r["used_s"] for r in self.previous)

    def write(self, row: Answered, result: ProblemResult | None) -> None:
        for sample in result.samples if result else []:
            self._samples.write(json.dumps(sample.to_row()) + "\n")
        self._problems.write(json.dumps(row.to_row()) + "\n")
        self._flush()

    def finish(self, summary: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """``submission.csv``, ``summary.json`` and the time-per-problem histogram."""
        self._flush()
        rows = read_rows(self.dir / "problems.jsonl")
        with (self.dir / "submission.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "answer"])
            w.writerows([r["id"], r["answer"]] for r in rows)
        (self.dir / "summary.json").write_text(json.dumps({**summary, **(extra or {})}, indent=1) + "\n")
        plot_times(rows, self.dir / "time-per-problem.png", summary)

    def close(self) -> None:
        self._problems.close()
        self._samples.close()

    def _flush(self) -> None:
        self._problems.flush()
        self._samples.flush()


def plot_times(rows: list[dict[str, Any]], path: Path, summary: dict[str, Any]) -> Path | None:
    """Histogram of time per problem, split by how the answer came about; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    used = [r["used_s"] for r in rows]
    bins = 20 if used else 1
    top = max(used + [r["deadline_s"] for r in rows] + [1e-3])
    for source in ("vote", "partial", "fallback"):
        values = [r["used_s"] for r in rows if r["answer_source"] == source]
        if values:
            ax.hist(values, bins=bins, range=(0, top), alpha=0.7, label=f"{source} ({len(values)})")
    score = summary.get("score")
    ax.set_title(f"{summary.get('policy')}: score {'n/a' if score is None else f'{score:.1%}'}, "
                 f"{summary.get('elapsed_s', 0):.0f} s of {summary.get('budget_s', 0):.0f} s", fontsize=10)
    ax.set_xlabel("seconds per problem")
    ax.set_ylabel("problems")
    ax.legend(title="answer from")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

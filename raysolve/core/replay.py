"""Replay per-sample traces under a stop policy and a scheduling mode (pure: no Ray).

The coordinator and this simulator ask the same ``StopPolicy`` objects the same
``VoteState`` questions, so what a policy saves in replay it saves in a run.

Trace format: one row per sample, in CSV, JSONL (optionally ``.gz``) or Parquet.

==================  =========================================================
``problem_id``      required
``answer``          the sample's extracted answer; empty or null: no answer
``tokens``          the sample's tokens — or ``generated_tokens`` plus
                    ``tool_output_tokens`` (the solver's ``samples.jsonl``)
``wall_s``          optional: the sample's own duration in seconds; without it
                    a sample's duration is its token count (one token per unit)
``gold``            optional gold answer; else taken from ``problems.jsonl``
                    next to the traces (its ``gold`` field), else ungraded
``cancelled``       optional: cancelled rows are dropped (not complete samples)
==================  =========================================================

A run of the solver with ``--policy full`` writes exactly this (``samples.jsonl``
with ``problems.jsonl`` beside it), so any run can be replayed. A run that stopped
early (a stop policy, a time limit) can be replayed too, but its full vote is only
the samples that finished: ``trace_warnings`` says so, with the counts.

Simulation of one problem, for one random launch order of its samples: in
``pool:k`` mode at most k samples run at once and the next starts when one
finishes; in ``wave:k`` k start together and the next k only when all are back;
in ``launch-all`` every sample starts at time 0. Samples finish at
their own durations; after each finish the policy sees the vote. When it settles,
the running samples are cancelled and count the tokens they had produced by then
(their tokens × the share of their duration elapsed). Reported per policy × mode,
against the full vote of the same samples in the same mode: accuracy, tokens,
samples started and makespan (time until the vote settles).
"""

from __future__ import annotations

import gzip
import heapq
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from raysolve.core.answers import vote_key
from raysolve.core.voting import FullVote, Settled, StopPolicy, VoteState, final_decision

__all__ = ["Mode", "Outcome", "ProblemTrace", "Sample", "load_traces", "parse_mode", "replay", "simulate",
           "trace_warnings"]


@dataclass(frozen=True)
class Sample:
    answer: str | None
    tokens: int
    duration: float


@dataclass
class ProblemTrace:
    problem_id: str
    gold: str | None
    samples: list[Sample] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    """Each vote key's answer as its first sample wrote it: what grading reads."""


@dataclass(frozen=True)
class Mode:
    """``pool:k`` (at most k samples in flight, refilled as they finish), ``wave:k`` (k launched
    together, the next k only once the whole wave is back) or ``launch-all`` — as in the coordinator."""

    kind: str
    k: int | None = None

    @property
    def name(self) -> str:
        return "launch-all" if self.kind == "launch-all" else f"{self.kind}:{self.k}"


def parse_mode(spec: str) -> Mode:
    if spec == "launch-all":
        return Mode("launch-all")
    kind, _, k_text = spec.partition(":")
    if kind in ("pool", "wave"):
        try:
            k = int(k_text)
        except ValueError:
            k = 0
        if k >= 1:
            return Mode(kind, k)
    raise ValueError(f"bad scheduling mode {spec!r}: expected 'pool:K', 'wave:K' (K >= 1) or 'launch-all'")


@dataclass(frozen=True)
class Outcome:
    answer: str | None
    reason: str
    tokens: float
    started: int
    finished: int
    makespan: float


# ---------------------------------------------------------------------------- loading


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    name = path.name
    if name.endswith((".jsonl", ".jsonl.gz", ".json")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
    elif name.endswith(".csv"):
        import csv

        with open(path, newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)
    elif name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches():
            yield from batch.to_pylist()
    else:
        raise ValueError(f"{path}: traces must be .jsonl[.gz], .csv or .parquet")


def _truthy(value: Any) -> bool:
    return value in (True, 1) or str(value).strip().lower() in ("true", "1", "yes")


def _answer(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text if text and text.lower() not in ("none", "null", "nan") else None


def _tokens(row: dict[str, Any]) -> int:
    if row.get("tokens") not in (None, ""):
        return int(float(row["tokens"]))
    return int(float(row.get("generated_tokens") or 0)) + int(float(row.get("tool_output_tokens") or 0))


def load_traces(path: str | Path, gold_path: str | Path | None = None, *, raw_answers: bool = False,
                modulus: int | None = None) -> list[ProblemTrace]:
    """Problems in first-seen order, each with its complete samples. Samples vote with the vote key
    of their answer as written (``answer_text`` where raysolve wrote one, else ``answer``), under
    ``modulus``, as the solver votes; ``raw_answers`` votes on the strings as they are instead."""
    path = Path(path)
    golds: dict[str, str] = {}
    gold_file = _gold_file(path, gold_path)
    if gold_file is not None:
        for row in _rows(gold_file):
            gold = row.get("gold", row.get("answer_gold"))
            if gold not in (None, ""):
                golds[str(row["problem_id"])] = str(gold)
    problems: dict[str, ProblemTrace] = {}
    for i, row in enumerate(_rows(path), start=1):
        if "problem_id" not in row:
            raise ValueError(f"{path}: row {i} has no problem_id")
        if _truthy(row.get("cancelled", False)):
            continue
        pid = str(row["problem_id"])
        trace = problems.get(pid)
        if trace is None:
            gold = row.get("gold")
            trace = problems[pid] = ProblemTrace(pid, str(gold) if gold not in (None, "") else golds.get(pid))
        tokens = _tokens(row)
        wall = row.get("wall_s")
        duration = float(wall) if wall not in (None, "") and float(wall) > 0 else float(max(tokens, 1))
        text = _answer(row.get("answer_text")) or _answer(row.get("answer"))
        key = text if raw_answers or text is None else vote_key(text, modulus)
        if key is not None and text is not None:
            trace.texts.setdefault(key, text)
        trace.samples.append(Sample(key, tokens, duration))
    return list(problems.values())


def _gold_file(path: Path, gold_path: str | Path | None) -> Path | None:
    """The problems file ``load_traces`` reads golds from: ``gold_path``, else ``problems.jsonl`` beside."""
    if gold_path:
        return Path(gold_path)
    beside = path.with_name("problems.jsonl")
    return beside if beside.exists() and beside != path else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


EARLY_STOP_MEANING = ("these traces come from an early-stopped run: the full vote replayed here is only what was "
                      "finished, so policies look closer to it than they are; replay a run made with --policy full")
NO_GOLD = "accuracy columns are empty: no gold answers (give --gold FILE or a problems.jsonl beside the traces)"


def trace_warnings(path: str | Path, traces: list[ProblemTrace], gold_path: str | Path | None = None) -> list[str]:
    """One-line warnings about what ``load_traces(path, gold_path)`` could not replay honestly; empty
    when nothing is wrong. ``load_traces`` drops cancelled rows (they are not complete samples), so
    traces of an early-stopped run replay as if the stopped vote were the full vote: this names the
    samples dropped (``cancelled: true``) and, where the run's ``problems.jsonl`` records
    ``samples_budget``/``samples_started``, the samples never started, and says what that means;
    and it says when no problem has a gold answer, so the accuracy columns are empty."""
    path = Path(path)
    ids = {t.problem_id for t in traces}
    cancelled: dict[str, int] = {}
    for row in _rows(path):
        if "problem_id" in row and _truthy(row.get("cancelled", False)):
            pid = str(row["problem_id"])
            cancelled[pid] = cancelled.get(pid, 0) + 1
    total = len(ids | set(cancelled))
    unstarted: dict[str, int] = {}
    run_policies: set[str] = set()
    gold_file = _gold_file(path, gold_path)
    if gold_file is not None and gold_file.exists():
        for row in _rows(gold_file):
            pid = str(row.get("problem_id"))
            if pid not in ids and pid not in cancelled:
                continue  # another run's or dataset's problem
            try:
                missing = int(row["samples_budget"]) - int(row["samples_started"])
            except (KeyError, TypeError, ValueError):
                continue
            if missing > 0:
                unstarted[pid] = missing
                if row.get("policy"):
                    run_policies.add(str(row["policy"]))
    warnings = []
    if cancelled:
        warnings.append(f"{_plural(sum(cancelled.values()), 'cancelled sample')} in {len(cancelled)} of "
                        f"{_plural(total, 'problem')} dropped (rows with cancelled: true)")
    if unstarted:
        by = f" (the run's stop policy {', '.join(sorted(run_policies))} settled first)" if run_policies else ""
        warnings.append(f"{_plural(sum(unstarted.values()), 'sample')} of the budget in {len(unstarted)} of "
                        f"{_plural(total, 'problem')} never started{by}: not in the traces")
    if cancelled or unstarted:
        warnings.append(EARLY_STOP_MEANING)
    if traces and all(t.gold is None for t in traces):
        warnings.append(NO_GOLD)
    return warnings


# ---------------------------------------------------------------------------- simulation


def simulate(samples: list[Sample], policy: StopPolicy, mode: Mode) -> Outcome:
    """One problem: ``samples`` in launch order, the budget is all of them."""
    budget = len(samples)
    width = budget if mode.kind == "launch-all" else (mode.k or 1)
    running: list[tuple[float, int, float]] = []  # (end time, index, start time)
    next_i = 0
    now = 0.0
    counts: dict[str, int] = {}
    history: list[str | None] = []
    spent = 0.0

    def launch() -> None:
        nonlocal next_i
        if mode.kind == "wave" and running:
            return
        while len(running) < width and next_i < budget:
            heapq.heappush(running, (now + samples[next_i].duration, next_i, now))
            next_i += 1

    launch()
    decision: Settled | None = None
    while running:
        now, idx, _ = heapq.heappop(running)
        sample = samples[idx]
        spent += sample.tokens
        history.append(sample.answer)
        if sample.answer is not None:
            counts[sample.answer] = counts.get(sample.answer, 0) + 1
        state = VoteState(counts, len(history), len(running), budget - next_i, now, history)
        verdict = policy.decide(state)
        if isinstance(verdict, Settled):
            decision = verdict
            break
        if state.remaining == 0:
            decision = final_decision(state)
            break
        launch()
    for _, idx, start in running:  # cancelled mid-generation
        s = samples[idx]
        spent += s.tokens * min(1.0, (now - start) / s.duration)
    assert decision is not None
    return Outcome(decision.answer, decision.reason, spent, next_i, len(history), now)


@dataclass
class _Tally:
    problems: int = 0
    runs: int = 0
    correct: float = 0.0
    full_correct: float = 0.0
    agree: float = 0.0
    tokens: float = 0.0
    full_tokens: float = 0.0
    started: float = 0.0
    makespan: float = 0.0
    full_makespan: float = 0.0
    graded: int = 0


def replay(
    traces: list[ProblemTrace],
    policies: Iterable[StopPolicy],
    modes: Iterable[Mode],
    orderings: int = 20,
    seed: int = 0,
    budget: int | None = None,
    modulus: int | None = None,
) -> list[dict[str, Any]]:
    """One row per policy × mode, averaged over ``orderings`` random launch orders per problem.

    ``budget``: samples per problem (a random subset of its traces in each ordering);
    default: all of a problem's samples. Problems with fewer samples are skipped."""
    from raysolve.core.answers import is_correct

    policies, modes = list(policies), list(modes)
    graded_cache: dict[tuple[str, str | None], bool] = {}

    def grade(trace: ProblemTrace, answer: str | None) -> bool | None:
        if trace.gold is None:
            return None
        key = (trace.problem_id, answer)
        if key not in graded_cache:
            graded_cache[key] = is_correct(trace.texts.get(answer, answer) if answer else answer, trace.gold, modulus)
        return graded_cache[key]

    tallies = {(p.name, m.name): _Tally() for p in policies for m in modes}
    full = FullVote()
    rng = random.Random(seed)
    for trace in traces:
        n = budget or len(trace.samples)
        if n == 0 or len(trace.samples) < n:
            continue
        orders = [rng.sample(trace.samples, n) for _ in range(orderings)]
        for mode in modes:
            baselines = [simulate(order, full, mode) for order in orders]
            for policy in policies:
                t = tallies[(policy.name, mode.name)]
                t.problems += 1
                for order, base in zip(orders, baselines):
                    out = simulate(order, policy, mode)
                    t.runs += 1
                    t.tokens += out.tokens
                    t.full_tokens += base.tokens
                    t.started += out.started
                    t.makespan += out.makespan
                    t.full_makespan += base.makespan
                    t.agree += out.answer == base.answer
                    ok, full_ok = grade(trace, out.answer), grade(trace, base.answer)
                    if ok is not None:
                        t.graded += 1
                        t.correct += ok
                        t.full_correct += bool(full_ok)
    rows = []
    for (policy_name, mode_name), t in tallies.items():
        if not t.runs:
            continue
        acc = 100 * t.correct / t.graded if t.graded else None
        full_acc = 100 * t.full_correct / t.graded if t.graded else None
        rows.append({
            "policy": policy_name,
            "mode": mode_name,
            "problems": t.problems,
            "orderings": orderings,
            "accuracy": None if acc is None else round(acc, 2),
            "full_vote_accuracy": None if full_acc is None else round(full_acc, 2),
            "accuracy_delta_pts": None if acc is None else round(acc - full_acc, 2),
            "agrees_with_full_vote_pct": round(100 * t.agree / t.runs, 2),
            "tokens_pct_of_full": round(100 * t.tokens / t.full_tokens, 2),
            "samples_started_mean": round(t.started / t.runs, 2),
            "makespan_pct_of_full": round(100 * t.makespan / t.full_makespan, 2) if t.full_makespan else None,
            "makespan_mean": round(t.makespan / t.runs, 3),
        })
    return rows


# ---------------------------------------------------------------------------- reporting

DEFAULT_POLICIES = (
    "full", "unbeatable", "first-k:4", "first-k:5", "runner-up", "esc:5", "stragglers:2",
    "beta:0.95", "beta:0.99:min=4", "dirichlet:0.95", "predictive:0.95", "predictive:0.99",
    "default", "unbeatable|predictive:0.99",
)
DEFAULT_MODES = ("pool:1", "pool:4", "pool:8", "wave:8", "launch-all")

_COLUMNS = [
    ("policy", "policy", "<34"), ("mode", "mode", "<10"), ("accuracy", "acc %", ">7"),
    ("accuracy_delta_pts", "Δ pts", ">7"), ("agrees_with_full_vote_pct", "= full %", ">9"),
    ("tokens_pct_of_full", "tokens %", ">9"), ("samples_started_mean", "started", ">8"),
    ("makespan_pct_of_full", "time %", ">7"), ("makespan_mean", "time", ">8"),
]


def format_table(rows: list[dict[str, Any]]) -> str:
    """The replay table as text, one line per policy × mode: tokens and time as % of the full vote
    in the same mode, and the mean time to settle in trace units (seconds with ``wall_s``)."""
    head = " ".join(f"{title:{fmt}}" for _, title, fmt in _COLUMNS)
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(" ".join(f"{'' if r[key] is None else r[key]!s:{fmt}}" for key, _, fmt in _COLUMNS))
    return "\n".join(lines)


def write_report(rows: list[dict[str, Any]], out: Path, meta: dict[str, Any]) -> None:
    """``replay.json`` (rows + how they were made), ``replay.csv`` and ``replay.png``; ``meta["warnings"]``
    (``trace_warnings``), where given, is kept in ``replay.json`` and printed on the plot."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    with open(out / "replay.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, out / "replay.png", meta.get("title", "replay"), meta.get("warnings", ()))


_MARKERS = "osD^vP*X<>ph"


def _plot(rows: list[dict[str, Any]], path: Path, title: str, notes: Iterable[str] = ()) -> None:
    """One panel per mode (shared axes, so modes compare), each policy one colour × marker pair
    named once in a legend beside the panels: 15+ policies stay legible where per-point labels
    piled up. y is accuracy where graded, else agreement with the full vote; ``notes`` (the
    trace warnings) are printed under the title so the picture carries them too."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    graded = any(r["accuracy"] is not None for r in rows)
    y_key, y_label = (("accuracy", "accuracy %") if graded else
                      ("agrees_with_full_vote_pct", "answer = full vote's, % of runs"))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    colours = plt.get_cmap("tab10").colors
    style = {p: (colours[i % len(colours)], _MARKERS[i % len(_MARKERS)]) for i, p in enumerate(policies)}
    cols = min(3, len(modes))
    nrows = -(-len(modes) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.3 * cols, 3.6 * nrows), sharex=True, sharey=True,
                             squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(modes):]:
        ax.axis("off")
    for ax, mode in zip(flat, modes):
        points = [r for r in rows if r["mode"] == mode and r[y_key] is not None]
        full = next((r["full_vote_accuracy"] if graded else 100.0 for r in points), None)
        if full is not None:
            ax.axhline(full, color="grey", lw=0.8, ls="--", zorder=1)
        ax.axvline(100, color="grey", lw=0.5, ls=":", zorder=1)
        for r in points:
            colour, marker = style[r["policy"]]
            ax.scatter(r["tokens_pct_of_full"], r[y_key], s=46, color=colour, marker=marker, alpha=0.85,
                       edgecolors="black", linewidths=0.4, zorder=3)
        ax.set_title(mode, fontsize=10)
        ax.grid(alpha=0.25)
        ax.tick_params(labelsize=8)
        ax.set_xlim(0, 108)
    for i, ax in enumerate(flat[:len(modes)]):
        if i + cols >= len(modes):  # nothing below: this panel carries the x axis
            ax.set_xlabel("tokens, % of the full vote", fontsize=9)
            ax.xaxis.set_tick_params(labelbottom=True)
        if i % cols == 0:
            ax.set_ylabel(f"{y_label}\n(dashed: full vote)", fontsize=9)
    handles = [Line2D([], [], ls="", marker=style[p][1], color=style[p][0], markeredgecolor="black",
                      markeredgewidth=0.4, markersize=7, label=p) for p in policies]
    fig.legend(handles=handles, title="stop policy", loc="upper left", bbox_to_anchor=(1.0, 0.97),
               fontsize=8, title_fontsize=9, frameon=False, ncols=1 + (len(policies) - 1) // 24)
    width = 20 + 30 * cols  # characters that fit across the panels at this font size
    heading = "\n".join(textwrap.wrap(title, width))
    warned = [line for note in notes for line in textwrap.wrap(f"warning: {note}", width)]
    heading = "\n".join([heading, *warned])
    fig.suptitle(heading, fontsize=8 if warned else 9, color="firebrick" if warned else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)

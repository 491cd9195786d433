"""Results on disk: rows streamed as problems finish, resumable, plus a run summary.

Layout of an output directory:
- ``problems.jsonl`` — one row per finished problem (``ProblemResult.to_row``);
- ``samples.jsonl`` — one row per sample (``SampleRecord.to_row``): the replay traces;
- ``errors.jsonl`` — one row per input row that was skipped, with its row number;
- ``failed.jsonl`` — one row per problem that infrastructure left without a real settle
  (``ProblemResult.failure``: every engine gone, every sample failed); such a problem is
  not done, so a resumed run solves it again;
- ``summary.json`` — rewritten as results arrive and at the end.

A problem's sample rows are written before its problem row, and both are flushed,
so after a crash the problem rows name exactly the problems that are done;
reopening the directory drops sample rows of unfinished problems and a torn last line.

With ``shard_rows`` set (the dataset job), the two JSONL files are only a journal:
every ``shard_rows`` problems they are moved into ``problems/part-NNNNN.parquet`` and
``samples/part-NNNNN.parquet`` (written to a temp name, then renamed) and emptied. A
crash between the rename and the emptying leaves rows in both places; reopening drops
journal rows whose problems are already in a shard, so nothing is lost or duplicated.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, TextIO

from raysolve.io.problems import RowError
from raysolve.core.records import ProblemResult


@dataclass
class RunSummary:
    """Totals of a run, updated per result; what ``summary.json`` holds."""

    problems: int = 0
    skipped_rows: int = 0
    graded: int = 0
    correct: int = 0
    answered: int = 0
    samples_started: int = 0
    samples_finished: int = 0
    samples_cancelled: int = 0
    samples_failed: int = 0
    samples_late: int = 0
    generated_tokens: int = 0
    tool_output_tokens: int = 0
    code_calls: int = 0
    wall_s: float = 0.0
    settle_reasons: dict[str, int] = field(default_factory=dict)
    resumed_problems: int = 0
    failed_problems: int = 0
    """Problems of this run left without a real settle (``failed.jsonl``); not in ``problems``."""
    skip_reasons: dict[str, int] = field(default_factory=dict)
    """Skipped input rows by kind of problem (numbers in the reason replaced by N)."""

    def skip(self, reason: str) -> None:
        self.skipped_rows += 1
        kind = re.sub(r"\d+", "N", reason)
        self.skip_reasons[kind] = self.skip_reasons.get(kind, 0) + 1

    def add(self, row: dict[str, Any]) -> None:
        """Count one problem row (``ProblemResult.to_row()`` or a row read back from disk)."""
        self.problems += 1
        self.answered += row["answer"] is not None
        if row["correct"] is not None:
            self.graded += 1
            self.correct += bool(row["correct"])
        for key in ("samples_started", "samples_finished", "samples_cancelled", "samples_failed",
                    "generated_tokens", "tool_output_tokens", "code_calls"):
            setattr(self, key, getattr(self, key) + int(row[key]))
        self.samples_late += int(row.get("samples_late") or 0)  # absent in rows of older runs
        reason = row["settle_reason"]
        self.settle_reasons[reason] = self.settle_reasons.get(reason, 0) + 1

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.graded if self.graded else None

    @property
    def tokens_per_s(self) -> float:
        return (self.generated_tokens + self.tool_output_tokens) / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["accuracy"] = self.accuracy
        d["total_tokens"] = self.generated_tokens + self.tool_output_tokens
        d["tokens_per_s"] = round(self.tokens_per_s, 2)
        d["problems_per_s"] = round(self.problems / self.wall_s, 4) if self.wall_s else 0.0
        return d

    def lines(self) -> list[str]:
        """Human-readable summary lines for the terminal."""
        acc = f"{self.correct}/{self.graded} = {self.accuracy:.1%}" if self.graded else "n/a (no gold answers)"
        solved = f"problems      {self.problems} solved" if self.problems else "problems      none solved in this run"
        if self.resumed_problems:
            solved += f" ({self.resumed_problems} of them in an earlier run)"
        if self.skipped_rows:
            solved += f", {self.skipped_rows} rows skipped"
        out = [solved]
        if self.problems:
            out += [
                f"accuracy      {acc}",
                f"samples       {self.samples_started} started, {self.samples_finished} finished,"
                f" {self.samples_cancelled} cancelled, {self.samples_failed} failed"
                + (f", {self.samples_late} late (finished after the vote settled)" if self.samples_late else ""),
                f"tokens        {self.generated_tokens} generated + {self.tool_output_tokens} tool output,"
                f" {self.code_calls} code calls",
                f"throughput    {self.tokens_per_s:.0f} tokens/s, {self.problems / max(self.wall_s, 1e-9):.2f}"
                f" problems/s over {self.wall_s:.1f} s",
                f"settled by    {', '.join(f'{k}: {v}' for k, v in sorted(self.settle_reasons.items()))}",
            ]
        if self.failed_problems:
            out.append(f"failed        {self.failed_problems} problems without a real settle (see failed.jsonl):"
                       " run again to solve them")
        return out


class ResultWriter:
    """Appends results to an output directory; reopening it resumes the run."""

    def __init__(self, out_dir: str | Path, resume: bool = True, shard_rows: int | None = None) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.problems_path = self.dir / "problems.jsonl"
        self.samples_path = self.dir / "samples.jsonl"
        self.errors_path = self.dir / "errors.jsonl"
        self.failed_path = self.dir / "failed.jsonl"
        self.shard_rows = shard_rows
        self.shards = ParquetShards(self.dir) if shard_rows else None
        if not resume:
            for p in (self.problems_path, self.samples_path, self.errors_path, self.failed_path):
                p.unlink(missing_ok=True)
            if self.shards is not None:
                self.shards.clear()
        self.done_ids = self._recover()
        self._errors_seen = {(str(r.get("source")), r.get("row")) for r in valid_rows(self.errors_path)}
        self._journal_rows = len(valid_rows(self.problems_path)) if self.shards is not None else 0
        self._problems: TextIO = self.problems_path.open("a", encoding="utf-8")
        self._samples: TextIO = self.samples_path.open("a", encoding="utf-8")
        self._errors: TextIO = self.errors_path.open("a", encoding="utf-8")
        self._failed: TextIO = self.failed_path.open("a", encoding="utf-8")
        self.started = time.perf_counter()

    def write(self, result: ProblemResult) -> None:
        for record in result.samples:
            self._samples.write(json.dumps(record.to_row()) + "\n")
        self._samples.flush()
        self._problems.write(json.dumps(result.to_row()) + "\n")
        self._problems.flush()
        self.done_ids.add(result.problem_id)
        self._journal_rows += 1
        if self.shard_rows and self._journal_rows >= self.shard_rows:
            self.flush_shard()

    def write_failed(self, result: ProblemResult) -> None:
        """Record a problem that infrastructure left without a real settle; it stays not done."""
        row = {"problem_id": result.problem_id, "failure": result.failure, "settle_reason": result.settle_reason,
               "samples_started": result.samples_started, "samples_failed": result.samples_failed,
               "errors": sorted({r.error for r in result.samples if r.error})[:5], "time": time.time()}
        self._failed.write(json.dumps(row) + "\n")
        self._failed.flush()

    def flush_shard(self) -> None:
        """Move the journal's rows into the next Parquet shard pair (no-op without shards)."""
        if self.shards is None or self._journal_rows == 0:
            return
        for f in (self._problems, self._samples):
            f.close()
        self.shards.write(valid_rows(self.problems_path), valid_rows(self.samples_path))
        for path in (self.problems_path, self.samples_path):
            path.write_text("")
        self._problems = self.problems_path.open("a", encoding="utf-8")
        self._samples = self.samples_path.open("a", encoding="utf-8")
        self._journal_rows = 0

    def write_error(self, error: RowError, source: str) -> None:
        """Record a skipped row once (a resumed run meets the same bad rows again)."""
        if (str(source), error.row) in self._errors_seen:
            return
        self._errors_seen.add((str(source), error.row))
        self._errors.write(json.dumps({"source": source, "row": error.row, "reason": error.reason}) + "\n")
        self._errors.flush()

    def write_summary(self, summary: RunSummary, extra: dict[str, Any] | None = None) -> Path:
        path = self.dir / "summary.json"
        path.write_text(json.dumps({**summary.to_dict(), **(extra or {})}, indent=2) + "\n")
        return path

    def close(self) -> None:
        self.flush_shard()
        for f in (self._problems, self._samples, self._errors, self._failed):
            f.close()
        if self.shards is not None:  # the journal is empty now
            for path in (self.problems_path, self.samples_path):
                path.unlink(missing_ok=True)

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recover(self) -> set[str]:
        """Ids of problems already done; drops torn lines, orphaned sample rows and
        journal rows that a shard already holds."""
        self.previous = RunSummary()
        """Totals of the problems done by earlier runs (rows are counted, not kept)."""
        in_shards: set[str] = set()
        for row in self.shards.problem_rows() if self.shards is not None else ():
            in_shards.add(str(row["problem_id"]))
            self.previous.add(row)
        kept = [r for r in valid_rows(self.problems_path) if str(r["problem_id"]) not in in_shards]
        for row in kept:
            self.previous.add(row)
        self.previous.resumed_problems = self.previous.problems
        journal = {str(row["problem_id"]) for row in kept}
        rewrite_rows(self.problems_path, kept)
        rewrite_rows(self.samples_path, [r for r in valid_rows(self.samples_path) if str(r.get("problem_id")) in journal])
        return in_shards | journal


class ParquetShards:
    """``problems/part-NNNNN.parquet`` and ``samples/part-NNNNN.parquet`` under a run dir,
    with fixed schemas so every shard reads back as one table
    (``pyarrow.parquet.read_table(run_dir / "problems")``). Votes are stored as a list
    of ``{answer, count}``."""

    def __init__(self, run_dir: Path) -> None:
        self.problems_dir = run_dir / "problems"
        self.samples_dir = run_dir / "samples"

    def clear(self) -> None:
        for folder in (self.problems_dir, self.samples_dir):
            for path in folder.glob("part-*.parquet"):
                path.unlink()

    def problem_rows(self) -> Iterator[dict[str, Any]]:
        """Every problem row of every shard, one shard in memory at a time."""
        import pyarrow.parquet as pq

        for path in sorted(self.problems_dir.glob("part-*.parquet")):
            for row in pq.read_table(path).to_pylist():
                row["votes"] = {v["answer"]: v["count"] for v in row["votes"] or []}
                yield row

    def write(self, problems: list[dict[str, Any]], samples: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for folder in (self.problems_dir, self.samples_dir):
            folder.mkdir(parents=True, exist_ok=True)
        number = len(list(self.problems_dir.glob("part-*.parquet")))
        name = f"part-{number:05d}.parquet"
        problems = [{**r, "votes": [{"answer": a, "count": c} for a, c in r["votes"].items()]} for r in problems]
        # Samples first: a shard's problem file is what marks its problems as done.
        for folder, rows, schema in ((self.samples_dir, samples, _sample_schema()), (self.problems_dir, problems, _problem_schema())):
            table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
            tmp = folder / f".{name}.tmp"
            pq.write_table(table, tmp)
            tmp.replace(folder / name)


def _problem_schema() -> Any:
    import pyarrow as pa

    i, f, t = pa.int64(), pa.float64(), pa.string()
    return pa.schema([
        ("problem_id", t), ("answer", t), ("settle_reason", t),
        ("votes", pa.list_(pa.struct([("answer", t), ("count", i)]))),
        ("gold", t), ("answer_text", t), ("correct", pa.bool_()), ("samples_budget", i), ("samples_started", i),
        ("samples_finished", i), ("samples_cancelled", i), ("samples_failed", i), ("samples_late", i),
        ("generated_tokens", i), ("tool_output_tokens", i), ("code_calls", i),
        ("settle_s", f), ("wall_s", f), ("policy", t), ("mode", t), ("total_tokens", i),
    ])


def _sample_schema() -> Any:
    import pyarrow as pa

    i, f, t = pa.int64(), pa.float64(), pa.string()
    return pa.schema([
        ("problem_id", t), ("sample_idx", i), ("seed", i), ("answer", t), ("finish_reason", t),
        ("cancelled", pa.bool_()), ("generated_tokens", i), ("tool_output_tokens", i),
        ("code_calls", i), ("code_errors", i), ("wall_s", f), ("first_token_s", f), ("tool_s", f),
        ("start_s", f), ("end_s", f),
        ("finish_order", i), ("engine", i), ("attempt", i), ("late", pa.bool_()), ("error", t), ("answer_text", t),
        ("text", t),
    ])


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """All valid JSON rows of a JSONL file (a torn last line is ignored)."""
    return valid_rows(Path(path))


def valid_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file that parse (a crashed writer's torn last line is skipped); none
    for a missing file."""
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def rewrite_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace a JSONL file with ``rows`` through a temp file and a rename, so a crash leaves
    the old file or the new one, never half of either (the file is created if missing)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)

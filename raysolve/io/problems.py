"""`Problem` records and loaders for JSONL, Parquet, CSV and Hugging Face datasets.

Loaders stream: they yield problems one at a time (Parquet and CSV through pyarrow
batches, `datasets` through its iterator), so a large set never sits in memory.
A malformed row is reported as a ``RowError`` with its row number and skipped;
it never stops the job.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from raysolve.core.records import Problem

__all__ = ["Fields", "Problem", "RowError", "count_rows", "iter_rows", "load_problems", "row_to_problem"]

MAX_PROBLEM_CHARS = 100_000


@dataclass(frozen=True)
class RowError:
    row: int
    """1-based row number (the line number for JSONL/CSV data rows)."""
    reason: str


@dataclass(frozen=True)
class Fields:
    """Which columns hold the problem text, the id and the gold answer."""

    problem: tuple[str, ...] = ("problem", "question")
    id: tuple[str, ...] = ("id", "problem_id")
    answer: tuple[str, ...] = ("answer", "expected_answer", "gold")

    @classmethod
    def of(cls, problem: str | None = None, id: str | None = None, answer: str | None = None) -> "Fields":
        base = cls()
        return cls(
            problem=(problem,) if problem else base.problem,
            id=(id,) if id else base.id,
            answer=(answer,) if answer else base.answer,
        )


def row_to_problem(row: Any, row_number: int, fields: Fields = Fields()) -> Problem | RowError:
    """Validate one raw row; a row without a usable problem text is a ``RowError``."""
    if not isinstance(row, Mapping):
        return RowError(row_number, f"expected an object/record, got {type(row).__name__}")
    text = _first(row, fields.problem)
    if text is None:
        return RowError(row_number, f"no problem text (looked for {', '.join(fields.problem)})")
    if not isinstance(text, str):
        return RowError(row_number, f"problem text must be a string, got {type(text).__name__}")
    if not text.strip():
        return RowError(row_number, "empty problem text")
    if len(text) > MAX_PROBLEM_CHARS:
        return RowError(row_number, f"problem text too long ({len(text)} > {MAX_PROBLEM_CHARS} chars)")
    pid = _first(row, fields.id)
    if pid is None:
        pid = str(row_number)
    elif not isinstance(pid, (str, int)) or isinstance(pid, bool):
        return RowError(row_number, f"id must be a string or integer, got {type(pid).__name__}")
    answer = _first(row, fields.answer)
    if answer is not None and not isinstance(answer, (str, int, float)):
        return RowError(row_number, f"answer must be a string or number, got {type(answer).__name__}")
    used = {*fields.problem, *fields.id, *fields.answer}
    meta = {k: v for k, v in row.items() if k not in used}
    return Problem(id=str(pid), text=text, answer=None if answer is None else _answer_str(answer), meta=meta)


def iter_rows(source: str | Path, split: str = "train") -> Iterator[tuple[int, Any]]:
    """(row number, raw row) pairs from a file or a `datasets` path/name; bad JSON lines
    come through as ``RowError`` rows so the caller can report them."""
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson") or (suffix == ".json" and _is_json_lines(path)):
        yield from _jsonl_rows(path)
    elif suffix == ".json":
        data = json.loads(path.read_text())
        rows = data if isinstance(data, list) else data.get("problems", [])
        yield from enumerate(rows, start=1)
    elif suffix == ".parquet":
        yield from _parquet_rows(path)
    elif suffix == ".csv":
        yield from _csv_rows(path)
    else:
        yield from _datasets_rows(str(source), split)


def count_rows(source: str | Path) -> int | None:
    """Rows in a file source, for progress and ETA (a streaming pass; Parquet reads only
    its footer); None for ``datasets`` sources and unknown files."""
    path = Path(source)
    suffix = path.suffix.lower()
    if not path.is_file():
        return None
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if suffix in (".jsonl", ".ndjson", ".csv") or (suffix == ".json" and _is_json_lines(path)):
        with path.open("rb") as f:
            lines = sum(1 for line in f if line.strip())
        return lines - 1 if suffix == ".csv" else lines
    return None


def load_problems(
    source: str | Path, fields: Fields = Fields(), split: str = "train"
) -> Iterator[Problem | RowError]:
    """Problems (or row errors) from ``source``, streamed in file order."""
    for number, row in iter_rows(source, split):
        yield row if isinstance(row, RowError) else row_to_problem(row, number, fields)


def _first(row: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    return None


def _answer_str(value: str | int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _is_json_lines(path: Path) -> bool:
    with path.open() as f:
        head = f.read(1).strip()
    return head == "{"


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, RowError(number, f"invalid JSON: {exc.msg} at column {exc.colno}")


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    # The csv module keeps every cell a string and lets one bad row fail alone.
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        for row in reader:
            number = reader.line_num
            if None in row:
                yield number, RowError(number, f"{len(row) - 1 + len(row[None])} cells, header has {len(row) - 1}")
            elif any(v is None for v in row.values()):
                yield number, RowError(number, f"fewer cells than the header's {len(row)}")
            else:
                yield number, row


def _datasets_rows(source: str, split: str) -> Iterator[tuple[int, Any]]:
    import datasets

    path = Path(source)
    if path.is_dir() and (path / "dataset_info.json").exists():
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    else:
        ds = datasets.load_dataset(source, split=split, streaming=True)
    yield from enumerate(ds, start=1)

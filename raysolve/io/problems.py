"""`Problem` records and loaders for JSONL, Parquet, CSV and Hugging Face datasets.

Loaders stream: they yield problems one at a time (Parquet and CSV through pyarrow
batches, `datasets` through its iterator), so a large set never sits in memory.
A malformed row is reported as a ``RowError`` with its row number and skipped;
it never stops the job. ``check_input`` reads the first rows before a run starts, so a
wrong path, format or field name is one clear line instead of a traceback after Ray and
the model have started.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Mapping

from raysolve.core.records import Problem

__all__ = ["Fields", "InputCheck", "Problem", "RowError", "check_input", "count_rows", "iter_rows",
           "load_problems", "row_to_problem"]

MAX_PROBLEM_CHARS = 100_000
FILE_FORMATS = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
"""File suffixes that ``iter_rows`` reads; anything else must be a directory or a hub name."""
SUPPORTED = (f"{', '.join(FILE_FORMATS)}, a directory of data files or saved with datasets' save_to_disk, "
             "or a data set name on the Hugging Face hub")
CHECK_ROWS = 1000
HUB_TIMEOUT_S = 5.0
# A data set name on the hub: "name" or "owner/name" (letters, digits, '_', '.', '-').
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


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
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        rows = data.get("problems") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise ValueError("a .json input must be a list of objects or an object with a 'problems' list")
        yield from enumerate(rows, start=1)
    elif suffix == ".parquet":
        yield from _parquet_rows(path)
    elif suffix == ".csv":
        yield from _csv_rows(path)
    elif path.is_file():
        # `datasets.load_dataset` takes directories and hub names, not single files: a .txt
        # file used to be looked up as a hub repository and fail with a FileNotFoundError.
        raise ValueError(_unsupported(path))
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
        return max(lines - 1, 0) if suffix == ".csv" else lines
    return None


@dataclass(frozen=True)
class InputCheck:
    """What ``check_input`` saw: ``error`` is the one line to print, or None when a run can start."""

    rows: int | None
    """Rows in the whole input (``count_rows``), None where unknown (datasets sources)."""
    problems_seen: int
    """Usable problems among the rows read (at most ``CHECK_ROWS``)."""
    columns: list[str]
    """Column names seen in the rows read, in first-seen order."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_input(source: str | Path, fields: Fields = Fields(), split: str = "train",
                max_rows: int = CHECK_ROWS, hub_timeout_s: float = HUB_TIMEOUT_S) -> InputCheck:
    """Read at most the first ``max_rows`` rows of ``source`` and say in one line what is wrong.

    Meant to run before Ray and the model start: a missing file, an unsupported format, an
    empty input, a wrong ``--problem-field`` or rows that are all malformed would otherwise
    surface as a traceback or an empty run minutes later. A hub name is checked with one
    request of ``hub_timeout_s`` (or against the local cache when offline) instead of the
    libraries' retries, which take about 40 s without a network."""
    name = str(source)
    path = Path(source)

    def failed(error: str, rows: int | None = None) -> InputCheck:
        return InputCheck(rows=rows, problems_seen=0, columns=[], error=error)

    if path.is_file():
        suffix = path.suffix.lower()
        if suffix not in FILE_FORMATS:
            return failed(_unsupported(path))
        empty = path.stat().st_size == 0 if suffix == ".parquet" else not _first_char(path)
        if empty:
            return failed(f"{name} is empty")
    elif path.exists() and not path.is_dir():
        return failed(f"{name} is not a regular file or a directory")
    elif not path.exists():
        if name.startswith("hf://"):
            pass  # datasets reads these itself; errors come from reading the rows below
        elif path.suffix.lower() in FILE_FORMATS or not _HUB_NAME.fullmatch(name) or ".." in name:
            return failed(f"input not found: {name}")
        elif (error := _check_hub_name(name, hub_timeout_s)) is not None:
            return failed(error)
    try:
        rows = count_rows(path)
    except Exception as exc:  # e.g. a file that is not Parquet although it is called .parquet
        return failed(f"cannot read {name}: {_one_line(exc)}")
    if rows == 0:
        return failed(f"{name} has no rows", rows)

    columns: dict[str, None] = {}
    seen = problems = 0
    has_field = False
    first_error: RowError | None = None
    try:
        for number, row in islice(iter_rows(source, split), max_rows):
            seen += 1
            if isinstance(row, Mapping):
                columns.update(dict.fromkeys(str(k) for k in row if k is not None))
                has_field = has_field or any(f in row for f in fields.problem)
            item = row if isinstance(row, RowError) else row_to_problem(row, number, fields)
            if isinstance(item, RowError):
                first_error = first_error or item
            else:
                problems += 1
    except json.JSONDecodeError as exc:
        msg = exc.msg.removesuffix(" at")
        return failed(f"invalid JSON in {name}: {msg} at line {exc.lineno} column {exc.colno}", rows)
    except Exception as exc:
        return failed(f"cannot read {name}: {_one_line(exc)}", rows)

    names = list(columns)
    error = None
    if seen == 0:
        error = f"{name} has no rows" + (f" in split '{split}'" if path.is_dir() or not path.exists() else "")
    elif problems == 0 and not has_field and names:
        scope = "no row" if seen < max_rows else f"none of the first {seen} rows"
        shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
        error = (f"{scope} has the field {' or '.join(repr(f) for f in fields.problem)}; "
                 f"the columns are: {shown}; choose one with --problem-field")
    elif problems == 0 and first_error is not None:
        scope = f"no row of {name}" if seen < max_rows else f"none of the first {seen} rows of {name}"
        error = f"{scope} is a usable problem; row {first_error.row}: {first_error.reason}"
    return InputCheck(rows=rows, problems_seen=problems, columns=names, error=error)


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


def _unsupported(path: Path) -> str:
    suffix = f"'{path.suffix}'" if path.suffix else "(no file extension)"
    return f"unsupported format {suffix} for {path} (supported: {SUPPORTED})"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _first_char(path: Path) -> str:
    """The first non-blank character of a file ('' for a blank one), past a UTF-8 BOM."""
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        while chunk := f.read(1 << 16):
            if stripped := chunk.lstrip():
                return stripped[0]
    return ""


def _is_json_lines(path: Path) -> bool:
    """Whether a .json file holds one object per line rather than one document.

    It is JSON lines when its first non-blank line is an object by itself; a first line that
    is the start of a longer document (``{`` or ``{"problems": [``) means one document."""
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        first = next((line.strip() for line in f if line.strip()), "")
        more = any(line.strip() for line in f)
    if not first.startswith("{"):
        return False
    try:
        obj = json.loads(first)
    except json.JSONDecodeError as exc:
        return exc.pos < len(first)  # a bad row, not a document that goes on past this line
    return more or not isinstance(obj.get("problems"), list)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    # utf-8-sig drops a BOM; the line is parsed without its newline so that the column of an
    # error is the one an editor shows (a row cut short used to be reported at "column 1").
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                # Some messages end in "at" ("Unterminated string starting at"): not "at at column".
                yield number, RowError(number, f"invalid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}")
            except RecursionError:
                yield number, RowError(number, "invalid JSON: nested too deeply")


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
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"no split '{split}' in {source} (splits: {', '.join(ds)}); choose one with --split")
            ds = ds[split]
    else:
        ds = datasets.load_dataset(source, split=split, streaming=True)
    yield from enumerate(ds, start=1)


def _hub_offline() -> bool:
    """Offline mode as the environment says now (the libraries read it once, at import)."""
    from huggingface_hub import constants

    flags = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    return constants.HF_HUB_OFFLINE or any(os.environ.get(f, "").upper() in ("1", "ON", "YES", "TRUE")
                                           for f in flags)


def _datasets_cached(name: str) -> bool:
    """Whether `datasets` has a cached copy of hub data set ``name`` (its own lookup rule offline)."""
    from datasets import config
    from datasets.naming import camelcase_to_snakecase

    parts = name.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = Path(config.HF_DATASETS_CACHE).expanduser() / "___".join(parts)
    return root.is_dir() and any(p.is_dir() for p in root.glob("*/*/*"))


def _check_hub_name(name: str, timeout_s: float) -> str | None:
    """One line on why hub data set ``name`` cannot be read, or None to go on and read it.

    Offline, only the local cache counts. Online, one metadata request with a short timeout
    replaces the retries of `datasets` (about 40 s when there is no network)."""
    try:
        from datasets import config
        from huggingface_hub import HfApi, constants
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, HFValidationError, RepositoryNotFoundError
    except ImportError:
        return f"input not found: {name} (reading a hub data set needs the 'datasets' package)"
    cached = _datasets_cached(name)
    if _hub_offline():
        if cached:
            return None
        return (f"input not found: {name} is neither a local path nor a data set cached in "
                f"{config.HF_DATASETS_CACHE}, and the Hugging Face hub is offline (HF_HUB_OFFLINE is set)")
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    try:
        HfApi(endpoint=endpoint).dataset_info(name, timeout=timeout_s)
    except HFValidationError:
        return f"input not found: {name}"
    except GatedRepoError:
        return (f"{name} is a gated data set on the Hugging Face hub: ask for access on its page "
                "and log in (hf auth login)")
    except RepositoryNotFoundError:
        return (f"input not found: {name} is neither a local path nor a data set on the Hugging Face hub "
                "that you can read (a private one needs hf auth login)")
    except HfHubHTTPError as exc:
        return f"the Hugging Face hub could not serve {name}: {_one_line(exc)}"
    except Exception as exc:  # no network, DNS failure, timeout, offline mode set at import
        hint = "; a cached copy exists: set HF_HUB_OFFLINE=1 to use it" if cached else ""
        return (f"cannot reach the Hugging Face hub ({endpoint}) for {name} within {timeout_s:g} s "
                f"({_one_line(exc)}){hint}")
    return None

"""Problem loaders: every format, configurable fields, malformed rows reported and skipped."""

import json
import socket

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysolve.io.problems import Fields, InputCheck, Problem, RowError, check_input, load_problems, row_to_problem


def _split(items):
    return [p for p in items if isinstance(p, Problem)], [e for e in items if isinstance(e, RowError)]


def test_jsonl_with_bad_lines_reports_line_numbers(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"id": "a", "problem": "1+1?", "answer": 2}\n'
        "{not json\n"
        "\n"
        '{"id": "c", "problem": ""}\n'
        '{"id": "d", "question": "2+2?"}\n'
        '{"id": "e", "problem": 5}\n'
        '["a list"]\n'
    )
    good, bad = _split(list(load_problems(path)))
    assert [p.id for p in good] == ["a", "d"]
    assert good[0].answer == "2" and good[1].text == "2+2?"
    assert [(e.row, e.reason.split(":")[0]) for e in bad] == [
        (2, "invalid JSON"), (4, "empty problem text"), (6, "problem text must be a string, got int"),
        (7, "expected an object/record, got list"),
    ]


def test_configurable_fields_and_row_number_ids():
    row = {"Q": "What is 3*3?", "gold": "9", "source": "x"}
    p = row_to_problem(row, 7, Fields.of(problem="Q", answer="gold"))
    assert p == Problem(id="7", text="What is 3*3?", answer="9", meta={"source": "x"})
    assert isinstance(row_to_problem(row, 1), RowError)  # default fields don't include "Q"


def test_too_long_problem_is_an_error():
    err = row_to_problem({"problem": "x" * 200_001}, 3)
    assert isinstance(err, RowError) and "too long" in err.reason


def test_parquet_streams_in_batches(tmp_path):
    path = tmp_path / "p.parquet"
    n = 2500
    table = pa.table({"problem_id": [f"q{i}" for i in range(n)], "question": [f"{i}+1?" for i in range(n)],
                      "expected_answer": [str(i + 1) for i in range(n)]})
    pq.write_table(table, path, row_group_size=1000)
    problems = list(load_problems(path))
    assert len(problems) == n
    assert problems[-1] == Problem(id=f"q{n-1}", text=f"{n-1}+1?", answer=str(n))


def test_csv_keeps_strings_and_reports_ragged_rows(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('id,problem,answer\n1,"Sum 1, 2 and 3",006\n2,too,many,cells\n3,ok?,7\n')
    good, bad = _split(list(load_problems(path)))
    assert [(p.id, p.text, p.answer) for p in good] == [("1", "Sum 1, 2 and 3", "006"), ("3", "ok?", "7")]
    assert [e.row for e in bad] == [3]


def test_datasets_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"problem": ["a?", "b?"], "answer": ["1", "2"]})
    ds.save_to_disk(str(tmp_path / "ds"))
    problems = list(load_problems(tmp_path / "ds"))
    assert [(p.id, p.text) for p in problems] == [("1", "a?"), ("2", "b?")]


def test_json_array(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"id": 1, "problem": "x?"}]))
    assert list(load_problems(path)) == [Problem(id="1", text="x?")]


def _json_column(line):
    """The column Python's json gives for ``line`` as an editor shows it (no newline)."""
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads(line)
    return info.value.colno


def test_invalid_json_column_is_the_one_the_user_sees(tmp_path):
    lines = ['{"id": "a", "problem": "x"', '{"problem": "y",}', '{"a": "unterminated', '{not json']
    path = tmp_path / "p.jsonl"
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())  # a BOM and CRLF line ends
    errors = list(load_problems(path))
    assert [e.reason for e in errors] == [
        f"invalid JSON: Expecting ',' delimiter at column {_json_column(lines[0])}",
        f"invalid JSON: Expecting property name enclosed in double quotes at column {_json_column(lines[1])}",
        f"invalid JSON: Unterminated string starting at column {_json_column(lines[2])}",
        f"invalid JSON: Expecting property name enclosed in double quotes at column {_json_column(lines[3])}",
    ]
    assert [e.row for e in errors] == [1, 2, 3, 4]
    assert errors[0].reason.endswith("at column 27")  # past the end of the line, not "column 1" of the next


def test_json_document_or_lines(tmp_path):
    """A .json file is one document (a list, or an object with a 'problems' list, even pretty-printed
    or after blank lines) or JSON lines; a broken document names its line and column."""
    pretty = tmp_path / "pretty.json"
    pretty.write_text('\n {\n  "problems": [{"id": 1, "problem": "x?"}]\n}\n')
    one_line = tmp_path / "one.json"
    one_line.write_text('{"problems": [{"id": 1, "problem": "x?"}]}')
    lines = tmp_path / "lines.json"
    lines.write_text('{"id": 1, "problem": "x?"}\n{"id": 2, "problem": "y?"}\n')
    assert list(load_problems(pretty)) == list(load_problems(one_line)) == [Problem(id="1", text="x?")]
    assert [p.id for p in load_problems(lines)] == ["1", "2"]
    broken = tmp_path / "broken.json"
    broken.write_text('[{"problem": "a"},\n {"problem": }]')
    assert check_input(broken).error == f"invalid JSON in {broken}: Expecting value at line 2 column 14"
    scalar = tmp_path / "scalar.json"
    scalar.write_text('"just a string"')
    assert "must be a list of objects or an object with a 'problems' list" in check_input(scalar).error


def test_check_input_accepts_a_good_file(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": i, "problem": f"{i}+1?", "answer": i + 1}) + "\n" for i in range(5)))
    check = check_input(path, Fields())
    assert check == InputCheck(rows=5, problems_seen=5, columns=["id", "problem", "answer"], error=None)
    assert check.ok
    assert check_input(path, max_rows=2).problems_seen == 2  # reads at most max_rows rows


def test_check_input_missing_path(tmp_path):
    for source in (tmp_path / "nope.jsonl", str(tmp_path / "nope"), "../nope/x/y"):
        assert check_input(source).error == f"input not found: {source}"


def test_unsupported_format_names_the_supported_ones(tmp_path):
    """An existing .txt file used to go to `datasets.load_dataset`, which takes only directories
    and hub names, so it was looked up on the hub and failed with FileNotFoundError."""
    path = tmp_path / "problems.txt"
    path.write_text("What is 1+1?\n")
    error = check_input(path).error
    assert error.startswith(f"unsupported format '.txt' for {path} "
                            "(supported: .jsonl, .ndjson, .json, .csv, .parquet,")
    assert "hub" in error
    with pytest.raises(ValueError, match="unsupported format '.txt'"):
        list(load_problems(path))  # no hub lookup, no network
    bare = tmp_path / "problems"
    bare.write_text("x")
    assert check_input(bare).error.startswith("unsupported format (no file extension)")


def test_empty_inputs(tmp_path):
    for name, text in [("e.jsonl", ""), ("blank.jsonl", "\n  \n"), ("e.json", " \n"), ("e.csv", "")]:
        path = tmp_path / name
        path.write_text(text)
        assert check_input(path).error == f"{path} is empty", name
    (tmp_path / "e.parquet").write_bytes(b"")
    assert check_input(tmp_path / "e.parquet").error == f"{tmp_path / 'e.parquet'} is empty"
    header_only = tmp_path / "h.csv"
    header_only.write_text("id,problem,answer\n")
    assert check_input(header_only) == InputCheck(rows=0, problems_seen=0, columns=[],
                                                  error=f"{header_only} has no rows")
    no_rows = tmp_path / "n.parquet"
    pq.write_table(pa.table({"problem": pa.array([], pa.string())}), no_rows)
    assert check_input(no_rows).error == f"{no_rows} has no rows"
    empty_list = tmp_path / "l.json"
    empty_list.write_text("[]")
    assert check_input(empty_list).error == f"{empty_list} has no rows"


def test_wrong_problem_field_names_the_columns(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,problem,answer\n1,x?,2\n")
    check = check_input(path, Fields.of(problem="nosuch"))
    assert check.error == ("no row has the field 'nosuch'; the columns are: id, problem, answer; "
                           "choose one with --problem-field")
    assert check.columns == ["id", "problem", "answer"] and check.rows == 1
    wide = tmp_path / "p.jsonl"
    wide.write_text("".join(json.dumps({"Q": str(i), "gold": i}) + "\n" for i in range(5)))
    assert check_input(wide, max_rows=3).error == (
        "none of the first 3 rows has the field 'problem' or 'question'; the columns are: Q, gold; "
        "choose one with --problem-field")
    assert check_input(wide, Fields.of(problem="Q")).ok


def test_all_malformed_rows_report_the_first_reason(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 1, "problem": "x"\n{"id": 2, "problem": ""}\n')
    assert check_input(path).error == (
        f"no row of {path} is a usable problem; row 1: invalid JSON: Expecting ',' delimiter at column 25")
    lists = tmp_path / "l.jsonl"
    lists.write_text("[1]\n" * 3)
    assert check_input(lists, max_rows=2).error == (
        f"none of the first 2 rows of {lists} is a usable problem; row 1: expected an object/record, got list")
    # Some malformed rows among good ones are skipped later, not an error now.
    mixed = tmp_path / "m.jsonl"
    mixed.write_text('{not json\n{"problem": "ok?"}\n')
    assert check_input(mixed) == InputCheck(rows=2, problems_seen=1, columns=["problem"], error=None)


def test_corrupt_parquet_is_one_line(tmp_path):
    path = tmp_path / "p.parquet"
    path.write_text("not parquet")
    error = check_input(path).error
    assert error.startswith(f"cannot read {path}: ArrowInvalid: ") and "\n" not in error


def test_saved_dataset_dict_and_a_missing_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"test": datasets.Dataset.from_dict({"problem": ["a?"], "answer": ["1"]})})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert [p.text for p in load_problems(tmp_path / "dd", split="test")] == ["a?"]
    assert check_input(tmp_path / "dd", split="test").problems_seen == 1
    assert check_input(tmp_path / "dd").error == (
        f"cannot read {tmp_path / 'dd'}: ValueError: no split 'train' in {tmp_path / 'dd'} (splits: test); "
        "choose one with --split")


def test_hub_name_offline_fails_fast_without_a_cached_copy(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # were anything to reach out, it would go nowhere
    error = check_input("raysolve-tests/not-cached").error
    assert error == (f"input not found: raysolve-tests/not-cached is neither a local path nor a data set cached in "
                     f"{tmp_path / 'cache'}, and the Hugging Face hub is offline (HF_HUB_OFFLINE is set)")


def test_hub_name_unreachable_is_one_line_not_40_s_of_retries(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as s:  # a local port nobody listens on: connection refused, no network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    error = check_input("raysolve-tests/unreachable", hub_timeout_s=2).error
    assert error.startswith(f"cannot reach the Hugging Face hub (http://127.0.0.1:{port}) "
                            "for raysolve-tests/unreachable within 2 s (ConnectError")

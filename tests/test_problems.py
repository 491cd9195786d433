"""Problem loaders: every format, configurable fields, malformed rows reported and skipped."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysolve.io.problems import Fields, Problem, RowError, load_problems, row_to_problem


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

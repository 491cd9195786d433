"""Result files: streamed rows, resume after a crash, summary totals."""

import json

from raysolve.output import ResultWriter, RunSummary, read_rows
from raysolve.problems import RowError
from raysolve.records import ProblemResult, SampleRecord


def _result(pid, correct=True, tokens=10):
    samples = [SampleRecord(pid, i, seed=i, answer="1", finish_reason="eos", cancelled=False,
                            generated_tokens=tokens, tool_output_tokens=2, code_calls=1, code_errors=0,
                            wall_s=0.1) for i in range(2)]
    return ProblemResult(pid, "1", "unbeatable", {"1": 2}, gold="1", correct=correct, samples_started=2,
                         samples_finished=2, generated_tokens=2 * tokens, tool_output_tokens=4, code_calls=2,
                         samples=samples)


def test_rows_stream_and_resume_drops_torn_and_orphaned_rows(tmp_path):
    with ResultWriter(tmp_path) as w:
        w.write(_result("a"))
        w.write_error(RowError(3, "empty problem text"), "in.jsonl")
    # a crash mid-way: samples of "b" written, its problem row torn
    with (tmp_path / "samples.jsonl").open("a") as f:
        f.write(json.dumps(_result("b").samples[0].to_row()) + "\n")
    with (tmp_path / "problems.jsonl").open("a") as f:
        f.write('{"problem_id": "b", "answ')
    w2 = ResultWriter(tmp_path)
    assert w2.done_ids == {"a"}
    assert [r["problem_id"] for r in read_rows(tmp_path / "samples.jsonl")] == ["a", "a"]
    w2.write(_result("b"))
    w2.close()
    assert [r["problem_id"] for r in read_rows(tmp_path / "problems.jsonl")] == ["a", "b"]
    assert read_rows(tmp_path / "errors.jsonl") == [{"source": "in.jsonl", "row": 3, "reason": "empty problem text"}]
    assert ResultWriter(tmp_path, resume=False).done_ids == set()


def test_summary_totals():
    s = RunSummary(wall_s=2.0)
    s.add(_result("a").to_row())
    s.add(_result("b", correct=False, tokens=20).to_row())
    d = s.to_dict()
    assert (d["problems"], d["graded"], d["correct"], d["accuracy"]) == (2, 2, 1, 0.5)
    assert d["total_tokens"] == 20 + 40 + 8 and d["tokens_per_s"] == 34.0
    assert d["settle_reasons"] == {"unbeatable": 2}

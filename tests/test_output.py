"""Result files: streamed rows, resume after a crash, summary totals."""

import json

from raysolve.io.output import ResultWriter, RunSummary, read_rows
from raysolve.io.problems import RowError
from raysolve.core.records import ProblemResult, SampleRecord


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


def test_parquet_shards_roll_and_resume_without_loss_or_duplicates(tmp_path):
    import pyarrow.parquet as pq

    w = ResultWriter(tmp_path, shard_rows=2)
    for pid in "abc":
        w.write(_result(pid))
    # "a", "b" are in shard 0; "c" is in the journal. A crash now, plus a crash that
    # happened between a shard's rename and emptying the journal: "a" also in the journal.
    with (tmp_path / "samples.jsonl").open("a") as f:
        f.write(json.dumps(_result("a").samples[0].to_row()) + "\n")
    with (tmp_path / "problems.jsonl").open("a") as f:
        f.write(json.dumps(_result("a").to_row()) + "\n")
    w2 = ResultWriter(tmp_path, shard_rows=2)
    assert w2.done_ids == {"a", "b", "c"} and w2.previous.problems == w2.previous.resumed_problems == 3
    w2.write(_result("d"))
    w2.close()
    problems = pq.read_table(tmp_path / "problems").to_pylist()
    assert sorted(r["problem_id"] for r in problems) == ["a", "b", "c", "d"]
    assert problems[0]["votes"] == [{"answer": "1", "count": 2}]
    samples = pq.read_table(tmp_path / "samples").to_pylist()
    assert sorted((r["problem_id"], r["sample_idx"]) for r in samples) == [(p, i) for p in "abcd" for i in range(2)]
    assert not (tmp_path / "problems.jsonl").exists()  # the journal is gone after a clean close
    assert sorted(p.name for p in (tmp_path / "problems").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]


def test_skip_reasons_are_grouped():
    s = RunSummary()
    s.skip("problem text too long (200001 > 100000 chars)")
    s.skip("problem text too long (300000 > 100000 chars)")
    s.skip("empty problem text")
    assert s.skipped_rows == 3
    assert s.skip_reasons == {"problem text too long (N > N chars)": 2, "empty problem text": 1}

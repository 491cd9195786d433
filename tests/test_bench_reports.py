"""What the ``jobs/bench_*`` and ``jobs/eval_tiny.py`` scripts call in ``raysolve.bench``, on CPU at
tiny sizes or on canned results: the Serve load client, the engine comparison's table, the budget
runs' rows, the policy decision states, the engine throughput levels, the tiny model's analysis
and the result file names. No timing assertions."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from raysolve.bench import budgets, engine_compare, engine_throughput, policies, serve_load, tiny_eval
from raysolve.bench.files import result_path, write_results
from raysolve.core.timing import percentile
from raysolve.engines.testing.scripted import ScriptedEngine, ScriptedEngineConfig

# ---------------------------------------------------------------------------- serve load


def test_load_level_counts_codes_and_correct_answers():
    httpx = pytest.importorskip("httpx")
    seen = []

    def handler(request):
        body = json.loads(request.content)
        seen.append(body["problem"])
        if body["problem"] == "boom":
            return httpx.Response(503, json={"error": "overloaded"})
        return httpx.Response(200, json={"answer": "4"})

    problems = [{"problem": "2 + 2", "answer": 4}, {"problem": "3 + 3", "answer": "6"}, {"problem": "boom"}]
    row = asyncio.run(serve_load.load_level("http://test/v1/solve", problems, 2, 7, httpx.MockTransport(handler)))
    assert len(seen) == 7 and seen.count("2 + 2") == 3
    assert row["clients"] == 2 and row["requests"] == 7
    assert row["status_codes"] == {200: 5, 503: 2} and row["correct"] == 3
    assert row["requests_per_s"] > 0 and 0 <= row["p50_s"] <= row["p95_s"]
    assert list({k: row[k] for k in serve_load.CSV_FIELDS}) == serve_load.CSV_FIELDS


def test_level_summary_uses_the_core_percentile():
    lat = [0.5, 0.1, 0.3, 0.2, 0.4]
    row = serve_load.level_summary(lat, 1, 5, {200: 5}, 4, 2.0)
    assert row["p50_s"] == round(percentile(lat, 0.5), 3) == 0.3 and row["p95_s"] == 0.5
    assert row["requests_per_s"] == 2.5 and row["wall_s"] == 2.0
    assert 0 < serve_load.free_port() < 65536


# ---------------------------------------------------------------------------- engine comparison


def sample(tokens, wall, tool=0.0, ttft=0.05, code_calls=0, finish="eos"):
    return SimpleNamespace(generated_tokens=tokens, wall_s=wall, tool_s=tool, first_token_s=ttft,
                           code_calls=code_calls, finish_reason=finish)


def test_engine_comparison_row():
    single = [(SimpleNamespace(samples=[sample(100, 1.0), sample(50, 1.5, tool=0.5, code_calls=1)], correct=True,
                               generated_tokens=150), 1.5),
              (SimpleNamespace(samples=[sample(0, 0.1, ttft=None, finish="error")], correct=False,
                               generated_tokens=0), 0.5)]
    batch = [SimpleNamespace(correct=True, generated_tokens=120), SimpleNamespace(correct=None, generated_tokens=30)]
    row = engine_compare.summarize(single, 2.0, batch, 0.5, samples=2)
    assert row["problems"] == 2 and row["samples"] == 2
    assert row["per_problem_s"] == 1.0 and row["per_problem_p95_s"] == 1.5
    assert row["ttft_p50_ms"] == 50.0 and row["ttft_p95_ms"] == 50.0
    assert row["per_sample_tok_s"] == 75.0  # 100/1.0 and 50/(1.5-0.5); the errored sample made none
    assert row["one_at_a_time_tok_s"] == 75.0 and row["batch_tok_s"] == 300.0 and row["generation_s"] == 0.5
    assert row["accuracy"] == 0.5 and row["batch_accuracy"] == 1.0
    assert (row["generated_tokens"], row["code_calls"], row["sample_errors"]) == (150, 1, 1)


# ---------------------------------------------------------------------------- budget runs


def test_budget_conditions_and_rows():
    found = budgets.conditions(120.0, 60, 16)
    assert list(found) == ["adaptive", "adaptive+stragglers", "fixed", "all samples"]
    summary = {"score": 0.5, "correct": 30, "problems": 60, "elapsed_s": 101.26, "within_budget": True,
               "answer_sources": {"vote": 50, "fallback": 10}, "samples": {"launched": 900, "finished": 800},
               "tokens": 12345, "policy": {"name": "fixed"}}
    row = budgets.row("fixed", 2.0, 120.0, summary, 103.04)
    assert row["budget_s"] == 120.0 and row["time_used_s"] == 101.3 and row["wall_s"] == 103.0
    assert (row["votes"], row["partial"], row["fallback"]) == (50, 0, 10)
    assert row["within_budget"] is True
    free = budgets.row("all samples", None, 1e9, summary, 1.0)
    assert free["budget_s"] is None and free["within_budget"] is None
    assert budgets.unbounded(60, 16) is not None


# ---------------------------------------------------------------------------- policy decisions


def test_policy_states_cover_every_prefix(tmp_path):
    rows = [{"problem_id": "p1", "answer": a, "generated_tokens": 10} for a in ("1", "1", "2", None)]
    rows += [{"problem_id": "p2", "answer": "5", "generated_tokens": 10}] * 2
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = policies.states(str(path), orders=2, seed=0)
    assert len(pool) == 2 * (4 + 2)
    assert policies.states(str(path), orders=2, seed=0) == pool  # the seed fixes the orders
    last = [s for s in pool if s.finished == 4]
    assert all(s.counts == {"1": 2, "2": 1} and s.remaining == 0 for s in last)
    from raysolve.core.voting import parse_policy

    cold, warm = policies.decision_us(parse_policy("unbeatable"), pool, warm_passes=2)
    assert cold >= 0 and warm >= 0
    for spec in policies.SPECS:
        parse_policy(spec)


# ---------------------------------------------------------------------------- engine throughput levels


def test_concurrency_level_runs_twice_the_concurrency():
    engine = ScriptedEngine(ScriptedEngineConfig(script=lambda text, r: "y" * 30, tokens_per_s=1e6))
    row = asyncio.run(engine_throughput.concurrency_level(engine, [[1, 2, 3], [4, 5]], 3, 10))
    assert row["concurrency"] == 3 and row["requests"] == 6
    assert row["tokens"] == 60  # max_tokens ends each request; no code-end stop
    assert engine.counters["requests_started"] == 6


# ---------------------------------------------------------------------------- the tiny model's analysis


def test_tiny_eval_analysis(tmp_path):
    heldout = tmp_path / "heldout.jsonl"
    tiny_eval.write_heldout(heldout, seed=3, per_family=1)
    rows = [json.loads(line) for line in heldout.read_text().splitlines()]
    assert len(rows) >= 2 and all({"id", "problem", "answer", "family"} <= set(r) for r in rows)
    a, b = rows[0], rows[1]
    run = tmp_path / "run"
    run.mkdir()
    (run / "problems.jsonl").write_text(json.dumps({"problem_id": a["id"], "correct": True}) + "\n"
                                        + json.dumps({"problem_id": b["id"], "correct": False}) + "\n")
    samples = [(a["id"], a["answer"], 1), (a["id"], a["answer"], 0), (a["id"], None, 0), (b["id"], "-1", 2)]
    (run / "samples.jsonl").write_text("".join(json.dumps({"problem_id": p, "answer": ans, "code_calls": c}) + "\n"
                                               for p, ans, c in samples))
    (run / "summary.json").write_text(json.dumps({"this_run": {"tokens_per_s": 12.5, "wall_s": 8.0},
                                                  "generated_tokens": 100, "tool_output_tokens": 20}))
    report = tiny_eval.analyse(heldout, run)
    assert report["problems"] == 2 and report["samples"] == 4
    assert report["pass_at_1"] == 0.5 and report["maj_at_n"] == 0.5
    assert report["distinct_answers_per_problem"] == 1.5 and report["share_samples_with_code_call"] == 0.5
    assert report["families"][a["family"]] == {"problems": 1, "maj_at_n": 1.0, "pass_at_1": 2 / 3}
    assert (report["tokens_per_s"], report["wall_s"]) == (12.5, 8.0)


# ---------------------------------------------------------------------------- result files


def test_result_names_keep_dots(tmp_path):
    out = tmp_path / "sub" / "serve-load-h100-1.5b"
    assert result_path(out, "json").name == "serve-load-h100-1.5b.json"
    write_results(out, {"levels": [1]}, [{"a": 1, "b": 2}, {"b": 3, "c": 4}])
    assert json.loads((tmp_path / "sub" / "serve-load-h100-1.5b.json").read_text()) == {"levels": [1]}
    assert (tmp_path / "sub" / "serve-load-h100-1.5b.csv").read_text().splitlines()[0] == "a,b,c"

"""End to end: the `raysolve solve` command with the hf backend on the shipped tiny model.

A real local Ray instance is started by the command itself, as a user would run it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _solve(*args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "raysolve.cli", "solve", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_solve_command_end_to_end_with_hf_tiny_model_and_resume(tmp_path):
    problems = tmp_path / "problems.jsonl"
    lines = (ROOT / "examples" / "problems.jsonl").read_text().splitlines()[:3]
    ids = [json.loads(line)["id"] for line in lines]
    problems.write_text("\n".join(lines + ['{"id": "bad", "problem": ""}', "not json"]) + "\n")
    out = tmp_path / "out"
    flags = ["--samples", "3", "--pool", "2", "--max-tokens", "400", "--policy", "full"]
    proc = _solve(str(problems), "--out", str(out), "--limit", "2", *flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "problems      2 solved" in proc.stdout and "accuracy      " in proc.stdout

    rows = [json.loads(x) for x in (out / "problems.jsonl").read_text().splitlines()]
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted(r["problem_id"] for r in rows) == sorted(ids[:2])
    for r in rows:
        assert r["samples_started"] == r["samples_finished"] == 3 and r["settle_reason"] == "budget"
        assert r["gold"] is not None and r["correct"] in (True, False)
        assert 0 < r["generated_tokens"] <= 3 * 400 and r["code_calls"] >= 3  # the model calls tools
    assert len(samples) == 6
    for s in samples:
        assert s["finish_reason"] in ("eos", "length") and not s["cancelled"]
        assert 0 < s["generated_tokens"] and s["generated_tokens"] + s["tool_output_tokens"] <= 400 + 200
    assert len({(s["problem_id"], s["seed"]) for s in samples}) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 2 and summary["graded"] == 2 and summary["this_run"]["total_tokens"] > 0
    assert summary["correct"] >= 1  # the trained tiny model solves problems of its own kind

    # rerun: the two finished problems are skipped, the third one is solved
    proc = _solve(str(problems), "--out", str(out), *flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "problems      1 solved" in proc.stdout and "all runs      3 problems" in proc.stdout
    assert "skipped row 4: empty problem text" in proc.stderr and "skipped row 5: invalid JSON" in proc.stderr
    assert [e["row"] for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())] == [4, 5]
    rows = [json.loads(x) for x in (out / "problems.jsonl").read_text().splitlines()]
    assert sorted(r["problem_id"] for r in rows) == sorted(ids)


def test_bad_configuration_is_a_clear_error(tmp_path):
    proc = _solve(str(ROOT / "examples" / "problems.jsonl"), "--policy", "beta:2", cwd=tmp_path)
    assert proc.returncode == 2 and "bad configuration" in proc.stderr and "beta" in proc.stderr


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "engines").glob("*.yaml")))
def test_every_engine_recipe_is_a_valid_config(recipe):
    from raysolve.runtime.config import SolverConfig

    from raysolve.engines import BACKENDS

    cfg = SolverConfig.load(ROOT / "engines" / recipe)  # a build: section is not part of the run config
    assert cfg.engine.backend in ("hf", "vllm", "trtllm")
    module, _, config_name = BACKENDS[cfg.engine.backend]
    getattr(__import__(module, fromlist=[config_name]), config_name)(**cfg.engine.options)  # options are valid


def test_a_benchmark_engine_spec_is_a_config_file_with_dotted_overrides():
    from raysolve.runtime.config import SolverConfig

    name, cfg, meta = SolverConfig.from_spec(
        f"tp2={ROOT / 'engines' / 'vllm-1gpu.yaml'},engine.num_gpus=2,engine.options.dtype=float16,budget.max_tokens=512")
    assert name == "tp2" and cfg.engine.num_gpus == 2 and cfg.engine.options["dtype"] == "float16"
    assert cfg.budget.max_tokens == 512 and cfg.engine.options["max_num_seqs"] == 256  # the rest from the file
    assert meta["overrides"] == {"engine.num_gpus": 2, "engine.options.dtype": "float16", "budget.max_tokens": 512}
    with pytest.raises(ValueError, match="dotted.key=value"):
        SolverConfig.from_spec(f"x={ROOT / 'engines' / 'vllm-1gpu.yaml'},engine.num_gpus")


def test_gpu_flags_build_the_placement_config():
    from raysolve.cli import _parser, build_config

    args = _parser().parse_args(["solve", "x.jsonl", "--config", str(ROOT / "engines" / "vllm-tp2.yaml"),
                                 "--engines", "auto", "--gpus-per-engine", "2", "--model", "/m"])
    cfg = build_config(args)
    assert cfg.engine.backend == "vllm" and cfg.engine.num_actors == "auto" and cfg.engine.num_gpus == 2
    assert cfg.engine.options["model"] == "/m" and cfg.engine.env_vars["NCCL_NVLS_ENABLE"] == "0"
    with pytest.raises(SystemExit):
        _parser().parse_args(["solve", "x.jsonl", "--engines", "many"])

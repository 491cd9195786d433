"""Engine recipes and ``raysolve engine build``: the plans, the checks, the calibration set.

The GPU steps (ModelOpt, TensorRT-LLM) cannot run here; the tests check their exact command
lines and the input checks that run before them. The calibration step and a recipe without
quantization run for real.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from raysolve.engines.recipes import BuildRecipe, check, load_recipe, plan, prepare_calibration

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "engines").glob("*.yaml") if "build" in yaml.safe_load(p.read_text()))


def lines(recipe: BuildRecipe) -> dict[str, str]:
    return {step.name: step.line() for step in plan(recipe)}


def test_the_shipped_recipes_plan_the_seed_workflow():
    names = {p.name: load_recipe(p)[0] for p in RECIPES}
    assert set(names) == {"trtllm-fp8-tp2.yaml", "trtllm-fp8-redrafter-tp2.yaml", "trtllm-eagle3-tp2-ray.yaml"}

    fp8 = lines(names["trtllm-fp8-tp2.yaml"])
    assert list(fp8) == ["calibrate", "quantize", "record"]
    assert "--dataset nvidia/OpenMathReasoning --split tir --samples 4096" in fp8["calibrate"]
    assert "raysolve.engines.quantize modelopt" in fp8["quantize"] and "--kv-cache fp8" in fp8["quantize"]

    redrafter = lines(names["trtllm-fp8-redrafter-tp2.yaml"])
    assert list(redrafter) == ["calibrate", "checkpoint", "redrafter", "engine", "record"]
    assert "quantization/quantize.py" in redrafter["checkpoint"] and "--qformat fp8" in redrafter["checkpoint"]
    assert "--calib_dataset engines/built/omn14b-fp8-redrafter-tp2.work/calibration.parquet" in redrafter["checkpoint"]
    assert "redrafter/convert_checkpoint.py" in redrafter["redrafter"]
    assert "--redrafter_no_greedy_search" in redrafter["redrafter"]  # sampled votes must differ
    assert "--redrafter_num_beams 1 --redrafter_draft_len_per_beam 3" in redrafter["redrafter"]
    assert redrafter["engine"].startswith("trtllm-build --checkpoint_dir engines/built/omn14b-fp8-redrafter-tp2.work/")
    for flag in ("--speculative_decoding_mode explicit_draft_tokens", "--gemm_plugin fp8",
                 "--kv_cache_type paged", "--max_beam_width 1", "--max_batch_size 64"):
        assert flag in redrafter["engine"]

    assert list(lines(names["trtllm-eagle3-tp2-ray.yaml"])) == ["calibrate", "quantize", "record"]


def test_a_trt_engine_recipe_without_a_drafter_quantizes_while_building():
    recipe = BuildRecipe(base_model="/m", output="/out", path="engine", tp=2)
    build = lines(recipe)["build"]
    assert "raysolve.engines.quantize trt-engine" in build and "--tp 2" in build and "--calib " in build


def test_recipe_mistakes_are_caught_when_loading(tmp_path):
    with pytest.raises(ValueError, match="build.path to 'engine'"):
        BuildRecipe(base_model="/m", output="/o", speculative={"kind": "redrafter", "drafter": "/d"})
    with pytest.raises(ValueError, match="FP8 KV cache"):
        BuildRecipe(base_model="/m", output="/o", quantization="none", kv_cache="fp8")
    with pytest.raises(ValueError, match="extra"):
        BuildRecipe(base_model="/m", output="/o", quantisation="fp8")
    run_config = ROOT / "engines" / "vllm-tp2.yaml"
    with pytest.raises(ValueError, match="no 'build:' section"):
        load_recipe(run_config)


def test_inputs_are_checked_before_any_gpu_time(tmp_path, monkeypatch):
    base, drafter, examples, bindir = (tmp_path / n for n in ("base", "drafter", "examples", "bin"))
    for d in (base, drafter):
        d.mkdir()
        (d / "config.json").write_text("{}")
    for script in ("quantization/quantize.py", "redrafter/convert_checkpoint.py"):
        (examples / script).parent.mkdir(parents=True, exist_ok=True)
        (examples / script).write_text("")
    bindir.mkdir()
    tool = bindir / "trtllm-build"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fake_trtllm"))  # tensorrt_llm importable

    recipe = BuildRecipe(base_model=str(base), output=str(tmp_path / "out"), path="engine", tp=2,
                         trtllm_examples=str(examples),
                         speculative={"kind": "redrafter", "drafter": str(drafter)})
    problems = check(recipe, plan(recipe), gpus=2)
    assert problems == ["step checkpoint: Python package 'modelopt' is not installed"]
    problems = check(recipe, plan(recipe), gpus=0)
    assert "the build needs 1 GPU(s) visible; 0 visible" in problems
    (tmp_path / "out").mkdir()
    assert any("exists already" in p for p in check(recipe, plan(recipe), gpus=2))


def test_calibration_set_is_rendered_through_the_prompt_template(tmp_path):
    from transformers import AutoTokenizer

    from raysolve.tiny import MODEL_DIR

    source = tmp_path / "omr.jsonl"
    rows = [{"problem": f"What is {i} + {i}?", "generated_solution": f"It is \\boxed{{{2 * i}}}." + " x" * 50 * i}
            for i in range(12)]
    rows.insert(3, {"problem": "no solution", "generated_solution": None})
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    out = tmp_path / "calib.parquet"
    n = prepare_calibration(str(source), "train", 8, out, tokenizer, max_seq_len=200)
    texts = pq.read_table(out).column("text").to_pylist()
    assert n == len(texts) == 8
    for text in texts:
        assert "<|im_start|>user" in text and "<|im_start|>assistant" in text  # the model's chat template
        assert "Python code execution" in text  # the project's prompt, as the solver sends it
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 201
    assert not any("no solution" in t for t in texts)


def test_build_command_runs_a_recipe_end_to_end(tmp_path):
    from raysolve.tiny import MODEL_DIR

    recipe = tmp_path / "tiny.yaml"
    out = tmp_path / "built" / "tiny"
    recipe.write_text(yaml.safe_dump({
        "build": {"base_model": str(MODEL_DIR), "output": str(out), "path": "pytorch", "tp": 1,
                  "quantization": "none", "kv_cache": "auto"},
        "engine": {"backend": "trtllm", "options": {"model": str(out)}},
    }))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    dry = subprocess.run([sys.executable, "-m", "raysolve.cli", "engine", "build", str(recipe), "--dry-run"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert dry.returncode == 0 and "[1/2] quantize:" in dry.stdout and "nothing run" in dry.stdout
    assert not out.exists()
    proc = subprocess.run([sys.executable, "-m", "raysolve.cli", "engine", "build", str(recipe)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[2/2] record:" in proc.stdout and (out / "config.json").is_file()
    record = json.loads((out / "raysolve-engine.json").read_text())
    assert record["recipe"]["build"]["base_model"] == str(MODEL_DIR) and len(record["steps"]) == 2
    again = subprocess.run([sys.executable, "-m", "raysolve.cli", "engine", "build", str(recipe)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 2 and "exists already" in again.stderr

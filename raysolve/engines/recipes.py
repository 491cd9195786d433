"""Engine recipes: how to build a TensorRT-LLM engine, and the run config that uses it, in one YAML.

A recipe is a solver config (``engine:``, ``budget:``, ... as for ``raysolve solve
--config``) with a ``build:`` section, which ``SolverConfig.load`` ignores and
``raysolve engine build RECIPE`` follows. ``plan(recipe)`` turns the section into the
seed workflow's steps, each an exact command line:

1. ``calibrate``: OpenMathReasoning's ``tir`` split, streamed through ``datasets`` and
   rendered with the model's chat template and the project's prompt, saved as parquet
   (``prepare_calibration``, run in-process);
2. quantize and build, by ``build.path``:
   - ``pytorch``: ModelOpt FP8 (``mtq.quantize`` + ``export_hf_checkpoint``) into a
     checkpoint the PyTorch backend loads (``python -m raysolve.engines.quantize modelopt``);
   - ``engine``: a TRT engine quantized while building (``QuantConfig``/``CalibConfig``,
     ``llm.save``: ``python -m raysolve.engines.quantize trt-engine``);
   - ``engine`` with ``speculative.kind: redrafter``: TensorRT-LLM's
     ``quantization/quantize.py`` (FP8 checkpoint), ``redrafter/convert_checkpoint.py``
     with ``--redrafter_no_greedy_search`` (sampled votes must differ), then
     ``trtllm-build --speculative_decoding_mode explicit_draft_tokens``;
3. ``record``: ``raysolve-engine.json`` in the output (the recipe, the steps, versions).

``check(recipe)`` lists what is missing before any GPU time is spent: model and drafter
dirs, the calibration source, TensorRT-LLM's example scripts and ``trtllm-build``, the
Python packages a step imports, and enough visible GPUs for the tensor-parallel size.
EAGLE-3 and draft-target decoding need no build step: they are runtime settings of the
``trtllm`` backend (``engine.options.speculative``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Calibration(_Strict):
    dataset: str = "nvidia/OpenMathReasoning"
    """A hub name, or a local .jsonl/.parquet file with the same columns."""
    split: str = "tir"
    samples: int = Field(4096, ge=1)
    max_seq_len: int = Field(4096, ge=16)
    seed: int = 0
    problem_field: str = "problem"
    solution_field: str = "generated_solution"


class Speculative(_Strict):
    kind: Literal["redrafter"]
    """Built into the engine. (EAGLE-3 / draft-target: runtime settings, no build step.)"""
    drafter: str
    num_beams: int = Field(1, ge=1)
    draft_len_per_beam: int = Field(3, ge=1)
    greedy: bool = False
    """False (the default): ``--redrafter_no_greedy_search``, so sampled votes differ."""


class BuildRecipe(_Strict):
    base_model: str
    """The Hugging Face checkpoint to quantize (e.g. OpenMath-Nemotron-14B-Kaggle)."""
    output: str
    """The built checkpoint or engine dir (the run config's ``engine.options.model``)."""
    path: Literal["pytorch", "engine"] = "pytorch"
    tp: int = Field(2, ge=1)
    dtype: Literal["bfloat16", "float16"] = "bfloat16"
    quantization: Literal["fp8", "none"] = "fp8"
    kv_cache: Literal["fp8", "auto"] = "fp8"
    calibration: Calibration = Field(default_factory=Calibration)
    speculative: Speculative | None = None
    max_batch_size: int = Field(64, ge=1)
    max_seq_len: int = Field(32768, ge=16)
    max_num_tokens: int = Field(8192, ge=16)
    work_dir: str | None = None
    """Intermediate checkpoints and the calibration set; default: ``<output>.work``."""
    trtllm_examples: str = "${TRTLLM_EXAMPLES}"
    """TensorRT-LLM's ``examples/`` dir (``quantization/quantize.py``, ``redrafter/convert_checkpoint.py``)."""

    @model_validator(mode="after")
    def _consistent(self) -> "BuildRecipe":
        if self.speculative is not None and self.path != "engine":
            raise ValueError("speculative.kind 'redrafter' builds a TRT engine: set build.path to 'engine'")
        if self.quantization == "none" and self.kv_cache == "fp8":
            raise ValueError("an FP8 KV cache needs quantization 'fp8' (calibration)")
        return self

    @property
    def work(self) -> Path:
        return Path(self.work_dir or f"{self.output}.work")

    @property
    def calib_path(self) -> Path:
        return self.work / "calibration.parquet"


@dataclass
class Step:
    name: str
    argv: list[str]
    needs: list[str]
    """Python modules (``py:name``), executables (``bin:name``) and files (``file:path``) it uses."""
    gpus: int = 0
    """GPUs the step needs visible."""

    def line(self) -> str:
        return " ".join(_quote(a) for a in self.argv)


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./=:,${}" for c in arg) else json.dumps(arg)


def load_recipe(path: str | Path) -> tuple[BuildRecipe, dict[str, Any]]:
    """The ``build:`` section and the whole file (the run config around it)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if "build" not in data:
        raise ValueError(f"{path} has no 'build:' section: it is a run config, not an engine recipe")
    return BuildRecipe.model_validate(data["build"]), data


def _expand(text: str) -> str:
    return os.path.expandvars(os.path.expanduser(text))


def plan(recipe: BuildRecipe, recipe_path: str = "RECIPE") -> list[Step]:
    """The steps, as exact command lines (``python`` is this interpreter)."""
    py = sys.executable
    r = recipe
    calib = r.calibration
    steps: list[Step] = []
    if r.quantization == "fp8":
        steps.append(Step("calibrate", [
            py, "-m", "raysolve.engines.recipes", "calibrate", "--dataset", calib.dataset, "--split", calib.split,
            "--samples", str(calib.samples), "--max-seq-len", str(calib.max_seq_len), "--seed", str(calib.seed),
            "--tokenizer", r.base_model, "--problem-field", calib.problem_field,
            "--solution-field", calib.solution_field, "--out", str(r.calib_path),
        ], ["py:datasets", "py:transformers"]))
    kv = ["--kv-cache", r.kv_cache]
    if r.path == "pytorch":
        steps.append(Step("quantize", [
            py, "-m", "raysolve.engines.quantize", "modelopt", "--model", r.base_model, "--dtype", r.dtype,
            "--calib", str(r.calib_path), "--out", r.output, *kv,
        ] if r.quantization == "fp8" else [py, "-c", f"import shutil; shutil.copytree({r.base_model!r}, {r.output!r})"],
            ["py:modelopt", "py:torch", "py:transformers"] if r.quantization == "fp8" else [],
            gpus=1 if r.quantization == "fp8" else 0))
    elif r.speculative is None:
        steps.append(Step("build", [
            py, "-m", "raysolve.engines.quantize", "trt-engine", "--model", r.base_model, "--dtype", r.dtype,
            "--tp", str(r.tp), "--out", r.output, "--max-batch-size", str(r.max_batch_size),
            "--max-seq-len", str(r.max_seq_len), "--max-num-tokens", str(r.max_num_tokens),
            *(["--calib", str(r.calib_path), "--calib-samples", str(calib.samples),
               "--calib-max-seq-len", str(calib.max_seq_len), *kv] if r.quantization == "fp8" else []),
        ], ["py:tensorrt_llm"], gpus=r.tp))
    else:
        ex = r.trtllm_examples
        spec = r.speculative
        base_ckpt = r.work / "base-checkpoint"
        spec_ckpt = r.work / "redrafter-checkpoint"
        steps.append(Step("checkpoint", [
            py, f"{ex}/quantization/quantize.py", "--model_dir", r.base_model, "--dtype", r.dtype,
            "--output_dir", str(base_ckpt), "--tp_size", str(r.tp),
            *(["--qformat", "fp8", "--kv_cache_dtype", "fp8" if r.kv_cache == "fp8" else "auto",
               "--calib_dataset", str(r.calib_path), "--calib_size", str(calib.samples),
               "--calib_max_seq_length", str(calib.max_seq_len)] if r.quantization == "fp8" else ["--qformat", "full_prec"]),
        ], ["py:tensorrt_llm", "py:modelopt", f"file:{ex}/quantization/quantize.py"], gpus=1))
        steps.append(Step("redrafter", [
            py, f"{ex}/redrafter/convert_checkpoint.py", "--base_model_checkpoint_dir", str(base_ckpt),
            "--drafter_model_dir", spec.drafter, "--output_dir", str(spec_ckpt), "--dtype", r.dtype,
            "--tp_size", str(r.tp), "--redrafter_num_beams", str(spec.num_beams),
            "--redrafter_draft_len_per_beam", str(spec.draft_len_per_beam),
            *([] if spec.greedy else ["--redrafter_no_greedy_search"]),
        ], ["py:tensorrt_llm", f"file:{ex}/redrafter/convert_checkpoint.py"]))
        steps.append(Step("engine", [
            "trtllm-build", "--checkpoint_dir", str(spec_ckpt), "--output_dir", r.output,
            "--speculative_decoding_mode", "explicit_draft_tokens",
            "--gemm_plugin", "fp8" if r.quantization == "fp8" else r.dtype,
            "--kv_cache_type", "paged", "--max_beam_width", "1", "--max_batch_size", str(r.max_batch_size),
            "--max_seq_len", str(r.max_seq_len), "--max_num_tokens", str(r.max_num_tokens),
        ], ["bin:trtllm-build"], gpus=1))
    steps.append(Step("record", [py, "-m", "raysolve.engines.recipes", "record", recipe_path], []))
    return steps


def check(recipe: BuildRecipe, steps: list[Step], gpus: int | None = None) -> list[str]:
    """What would make the build fail, found before any step runs (empty: ready)."""
    problems = []
    for what, path in [("base model", recipe.base_model)] + (
            [("drafter", recipe.speculative.drafter)] if recipe.speculative else []):
        if not (Path(_expand(path)) / "config.json").is_file():
            problems.append(f"{what} {path}: no config.json there (a Hugging Face checkpoint dir is needed)")
    if recipe.quantization == "fp8":
        source = Path(_expand(recipe.calibration.dataset))
        looks_local = source.suffix in (".jsonl", ".json", ".parquet") or source.is_absolute()
        if looks_local and not source.is_file():
            problems.append(f"calibration dataset {recipe.calibration.dataset}: file not found")
    if Path(_expand(recipe.output)).exists():
        problems.append(f"output {recipe.output} exists already (remove it or change build.output)")
    for step in steps:
        for need in step.needs:
            kind, name = need.split(":", 1)
            if kind == "py" and importlib.util.find_spec(name) is None:
                problems.append(f"step {step.name}: Python package {name!r} is not installed")
            elif kind == "bin" and shutil.which(name) is None:
                problems.append(f"step {step.name}: {name} is not on PATH")
            elif kind == "file" and not Path(_expand(name)).is_file():
                problems.append(f"step {step.name}: {name} not found (set build.trtllm_examples or $TRTLLM_EXAMPLES)")
    need = max((step.gpus for step in steps), default=0)
    if need:
        gpus = _visible_gpus() if gpus is None else gpus
        if gpus < need:
            problems.append(f"the build needs {need} GPU(s) visible; {gpus} visible")
    return list(dict.fromkeys(problems))


def _visible_gpus() -> int:
    from raysolve.engines.common import visible_gpu_count

    try:
        return visible_gpu_count()
    except Exception:  # no torch, no driver
        return 0


def run(recipe_path: str | Path, dry_run: bool = False, gpus: int | None = None) -> int:
    """``raysolve engine build``: print the plan and the checks; unless ``dry_run``, run each
    step in order (printing it first), stopping at the first failure."""
    import subprocess

    recipe, _ = load_recipe(recipe_path)
    steps = plan(recipe, str(recipe_path))
    print(f"raysolve engine build {recipe_path}: {len(steps)} steps, output {recipe.output}")
    for i, step in enumerate(steps, 1):
        print(f"  [{i}/{len(steps)}] {step.name}: {step.line()}")
    problems = check(recipe, steps, gpus)
    if problems:
        print("not ready:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        return 2
    if dry_run:
        print("inputs checked; --dry-run: nothing run")
        return 0
    recipe.work.mkdir(parents=True, exist_ok=True)
    for i, step in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {step.name}: {step.line()}", flush=True)
        argv = [_expand(a) for a in step.argv]
        if subprocess.run(argv).returncode != 0:
            print(f"raysolve engine build: step {step.name} failed; later steps not run", file=sys.stderr)
            return 1
    print(f"built {recipe.output}; run it with: raysolve solve PROBLEMS --config {recipe_path}")
    return 0


# ---------------------------------------------------------------- steps run in-process


def render_calibration_row(problem: str, solution: str, tokenizer: Any, max_code_calls: int = 6) -> str:
    """One calibration text: the chat-templated prompt as the solver sends it, plus the solution."""
    from raysolve.core.prompting import PromptFormat

    messages = PromptFormat().messages(problem, max_code_calls)
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt + solution


def prepare_calibration(dataset: str, split: str, samples: int, out: str | Path, tokenizer: Any, *,
                        max_seq_len: int = 4096, seed: int = 0, problem_field: str = "problem",
                        solution_field: str = "generated_solution") -> int:
    """Stream ``dataset`` (a hub name or a local .jsonl/.parquet), render ``samples`` rows through
    the prompt template, cut each to ``max_seq_len`` tokens, and write them to ``out`` (parquet,
    column ``text``). Rows without both fields are skipped. Returns the rows written."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    local = Path(dataset)
    if local.suffix in (".jsonl", ".json", ".parquet"):
        builder = "parquet" if local.suffix == ".parquet" else "json"
        stream = datasets.load_dataset(builder, data_files=str(local), split="train", streaming=True)
    else:
        stream = datasets.load_dataset(dataset, split=split, streaming=True)
    stream = stream.shuffle(seed=seed, buffer_size=max(1000, samples))
    texts: list[str] = []
    for row in stream:
        problem, solution = row.get(problem_field), row.get(solution_field)
        if not problem or not solution:
            continue
        text = render_calibration_row(problem, solution, tokenizer)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > max_seq_len:
            text = tokenizer.decode(ids[:max_seq_len])
        texts.append(text)
        if len(texts) >= samples:
            break
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": texts}), out)
    return len(texts)


def record(recipe_path: str | Path) -> Path:
    """``raysolve-engine.json`` in the output: the recipe, the steps and the library versions."""
    from importlib.metadata import PackageNotFoundError, version

    recipe, data = load_recipe(recipe_path)
    versions = {}
    for package in ("tensorrt_llm", "nvidia-modelopt", "torch", "transformers"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    path = Path(_expand(recipe.output)) / "raysolve-engine.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"recipe": data, "steps": [s.line() for s in plan(recipe, str(recipe_path))],
                                "versions": versions}, indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """The in-process steps: ``calibrate`` and ``record``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m raysolve.engines.recipes")
    sub = p.add_subparsers(dest="step", required=True)
    c = sub.add_parser("calibrate")
    for flag in ("--dataset", "--split", "--tokenizer", "--out", "--problem-field", "--solution-field"):
        c.add_argument(flag, required=flag in ("--dataset", "--tokenizer", "--out"))
    c.add_argument("--samples", type=int, default=4096)
    c.add_argument("--max-seq-len", type=int, default=4096)
    c.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("record")
    r.add_argument("recipe")
    args = p.parse_args(argv)
    if args.step == "record":
        print(f"wrote {record(args.recipe)}")
        return 0
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    n = prepare_calibration(args.dataset, args.split or "train", args.samples, args.out, tokenizer,
                            max_seq_len=args.max_seq_len, seed=args.seed,
                            problem_field=args.problem_field or "problem",
                            solution_field=args.solution_field or "generated_solution")
    print(f"wrote {n} calibration rows to {args.out}")
    return 0 if n else 1


if __name__ == "__main__":
    raise SystemExit(main())

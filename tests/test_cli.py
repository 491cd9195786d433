"""End to end: the `raysolve solve` command, on the shipped tiny model (hf backend, its own local
Ray instance, as a user's first command) and on the scripted TEST engine (resume and bad rows,
joining a running Ray instance with ``--address``, as on a cluster).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from raysolve.engines.testing.scripted import directive_problem

ROOT = Path(__file__).resolve().parents[1]


def _solve(*args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "raysolve.cli", "solve", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_solve_command_end_to_end_with_hf_tiny_model(tmp_path):
    problems = tmp_path / "problems.jsonl"
    line = next(x for x in (ROOT / "examples" / "problems.jsonl").read_text().splitlines() if '"gcd_lcm"' in x)
    problems.write_text(line + "\n")
    out = tmp_path / "out"
    proc = _solve(str(problems), "--out", str(out), "--samples", "3", "--pool", "3", "--max-tokens", "400",
                  "--policy", "full", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "problems      1 solved" in proc.stdout and "accuracy      " in proc.stdout

    [row] = [json.loads(x) for x in (out / "problems.jsonl").read_text().splitlines()]
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert row["problem_id"] == "gcd_lcm" and row["gold"] == "399" and row["correct"] in (True, False)
    assert row["samples_started"] == row["samples_finished"] == 3 and row["settle_reason"] == "budget"
    assert 0 < row["generated_tokens"] <= 3 * 400 and row["code_calls"] >= 3  # the model calls tools
    assert len(samples) == 3 and len({s["seed"] for s in samples}) == 3
    for s in samples:
        assert s["finish_reason"] in ("eos", "length") and not s["cancelled"]
        assert 0 < s["generated_tokens"] and s["generated_tokens"] + s["tool_output_tokens"] <= 400 + 200
    assert "399" in [s["answer"] for s in samples]  # the trained tiny model solves problems of its own kind
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 1 and summary["graded"] == 1 and summary["this_run"]["total_tokens"] > 0


def test_a_stopped_run_says_so_and_the_same_command_resumes(ray_local, tmp_path):
    # Stop (SIGTERM, as `ray job stop` sends), resume and row errors on the scripted TEST engine
    # (each problem answers its gold answer), joining the suite's Ray instance with --address as
    # on a cluster; the hf test above starts its own Ray as a user's first command does.
    import signal
    import time

    import yaml

    problems = tmp_path / "problems.jsonl"
    lengths = [20, 20, 400_000]  # p2 cannot finish before the stop: 100 s at 4,000 tokens/s
    rows = [{"id": f"p{i}", "problem": directive_problem([str(i)], [n], code=False), "answer": str(i)}
            for i, n in enumerate(lengths)]
    lines = [json.dumps(r) for r in rows]
    problems.write_text("\n".join(lines[:2] + ['{"id": "bad", "problem": ""}', "not json", lines[2]]) + "\n")

    def config(name: str, tokens_per_s: float) -> str:
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"engine": {"backend": "scripted", "num_cpus": 0.5, "options": {
            "tokens_per_s": tokens_per_s, "tokens_per_delta": max(8, int(tokens_per_s // 1000))}},
            "budget": {"max_tokens": 500_000}}))
        return str(path)

    out = tmp_path / "out"
    flags = [str(problems), "--out", str(out), "--address", ray_local.get_runtime_context().gcs_address,
             "--samples", "3", "--log-every", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([sys.executable, "-m", "raysolve.cli", "solve", *flags, "--config", config("slow.yaml", 4000)],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / "problems.jsonl"
    deadline = time.monotonic() + 300  # only a hang ends the wait this way
    while not (journal.exists() and len(journal.read_text().splitlines()) >= 2):  # an event: p0, p1 on disk
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)
    first.send_signal(signal.SIGTERM)
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 143 and "raysolve: stopped; 2 problems are in" in stderr, stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["problems"] == 2

    # rerun: the finished problems are skipped, the stopped one is solved, the bad rows reported
    proc = _solve(*flags, "--config", config("fast.yaml", 10_000_000), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "problems      1 solved" in proc.stdout and "all runs      3 problems" in proc.stdout
    assert "skipped row 3: empty problem text" in proc.stderr and "skipped row 4: invalid JSON" in proc.stderr
    assert [e["row"] for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())] == [3, 4]
    done = [json.loads(x)["problem_id"] for x in journal.read_text().splitlines()]
    assert sorted(done[:2]) == ["p0", "p1"] and sorted(done) == ["p0", "p1", "p2"]  # each once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["problems"] == 3 and summary["correct"] == 3

    # once more: nothing is left, and nothing starts (no Ray, no engine)
    proc = _solve(*flags, "--config", config("fast.yaml", 10_000_000), cwd=tmp_path)
    assert proc.returncode == 0 and "nothing left to solve: 3 problems are done" in proc.stdout, proc.stdout
    assert "started in" not in proc.stdout


def test_bad_configuration_is_a_clear_error(tmp_path):
    proc = _solve(str(ROOT / "examples" / "problems.jsonl"), "--policy", "beta:2", cwd=tmp_path)
    assert proc.returncode == 2 and "bad configuration: --policy: bad stop policy 'beta:2'" in proc.stderr
    assert "SchedulingConfig" not in proc.stderr and "errors.pydantic.dev" not in proc.stderr
    proc = _solve(str(ROOT / "examples" / "problems.jsonl"), "--samples", "0", cwd=tmp_path)
    assert proc.returncode == 2 and "--samples: Input should be greater than or equal to 1" in proc.stderr


def test_help_shows_what_each_flag_does_and_its_default(capsys):
    from raysolve.cli import main

    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    options = " ".join(capsys.readouterr().out.split()).split("options:", 1)[1]  # after the usage lines
    for flag, default in [("--samples", "8"), ("--pool", "4"), ("--mode", "pool"), ("--policy", "default"),
                          ("--max-tokens", "1024"), ("--temperature", "0.7"), ("--seed", "0"), ("--log-every", "10.0")]:
        described = options.split(f"{flag} ", 1)[1][:300]
        assert f"(default: {default})" in described, (flag, described)


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


def test_problems_left_without_an_engine_are_not_done_and_a_rerun_solves_them(ray_local, tmp_path):
    # The first problem's first sample makes its engine report itself dead; with no restarts
    # allowed and a 2 s recovery limit the engine is given up, so the rest of the run ends with
    # "no engine left". Those problems go to failed.jsonl (exit 1), not to the results; the rerun
    # (the fault fires once) solves exactly them.
    import yaml

    from raysolve.engines.testing.scripted import fault_once_problem

    rows = [{"id": "p0", "problem": fault_once_problem("dead", str(tmp_path / "broke"), ["0"], [20]), "answer": "0"}]
    rows += [{"id": f"p{i}", "problem": directive_problem([str(i)], [20], code=False), "answer": str(i)}
             for i in range(1, 4)]
    problems = tmp_path / "problems.jsonl"
    problems.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = tmp_path / "scripted.yaml"
    config.write_text(yaml.safe_dump({
        "engine": {"backend": "scripted", "num_cpus": 0.5, "max_restarts": 0, "options": {"tokens_per_s": 4000}},
        "scheduling": {"engine_recovery_s": 2.0, "num_samples": 2, "pool_size": 2}}))
    out = tmp_path / "out"
    flags = ["--out", str(out), "--config", str(config), "--address", ray_local.get_runtime_context().gcs_address]
    proc = _solve(str(problems), *flags, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    failed = [json.loads(x) for x in (out / "failed.jsonl").read_text().splitlines()]
    assert failed and all(f["failure"] == "no engine left" for f in failed)
    done = [json.loads(x)["problem_id"] for x in (out / "problems.jsonl").read_text().splitlines()]
    assert not set(done) & {f["problem_id"] for f in failed}
    assert "run again to solve them" in proc.stdout
    assert json.loads((out / "summary.json").read_text())["failed_problems"] == len(failed)

    config.write_text(yaml.safe_dump({"engine": {"backend": "scripted", "num_cpus": 0.5,
                                                 "options": {"tokens_per_s": 4000}},
                                      "scheduling": {"num_samples": 2, "pool_size": 2}}))
    proc = _solve(str(problems), *flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    done = [json.loads(x)["problem_id"] for x in (out / "problems.jsonl").read_text().splitlines()]
    assert sorted(done) == ["p0", "p1", "p2", "p3"]  # each exactly once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 4 and summary["correct"] == 4 and summary["failed_problems"] == 0

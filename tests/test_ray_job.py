"""`ray job submit` of jobs/solve_dataset.py against a real Ray head (`ray start --head`
on loopback): a job stopped midway and resubmitted must finish without duplicating or
losing problems, with its outputs, errors file and summary complete.

The jobs run the scripted TEST engine (``--config``): the model is not what these tests
are about, and its sample lengths, taken from the problem texts, make the stop point
deterministic. The stopped job's quick problems finish at once and its slow ones could not
finish within minutes; the test stops it once exactly the quick ones are on disk (an
observed event, not a delay). The resubmitted job runs the engine fast, so the slow ones
finish too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from raysolve.engines.testing.scripted import directive_problem

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXCLUDES = json.dumps({"excludes": [".git", ".hypothesis", ".gpu*", ".sbxsite", ".venv", "runs", "build", ".pytest_cache", "results"]})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A real single-node Ray cluster on loopback, stopped (with everything it started) afterwards."""
    port, dashboard = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    # The README's token setup, as written: token mode, `ray get-auth-token --generate` (into a home
    # of its own, so the user's ~/.ray is untouched); the head and every `ray job` command read it.
    env.update(RAY_AUTH_MODE="token", HOME=str(tmp_path_factory.mktemp("home")))
    made = subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0 and (Path(env["HOME"]) / ".ray" / "auth_token").exists(), made.stderr[-2000:]
    log = open(tmp_path_factory.mktemp("ray") / "head.log", "w")
    # Its own temp dir: the address file there, so other tests' ray.init() never joins this cluster.
    temp_dir = tempfile.mkdtemp(prefix="rs-head-", dir="/tmp")
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--temp-dir={temp_dir}",
         "--node-ip-address=127.0.0.1", f"--port={port}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--num-cpus=4", "--num-gpus=0",
         "--include-dashboard=true", "--disable-usage-stats",
         # Ports of its own: the suite's local Ray instance holds the default agent ports.
         *(f"--{flag}={_free_port()}" for flag in (
             "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
             "runtime-env-agent-port", "ray-client-server-port", "node-manager-port", "object-manager-port"))],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{address}/api/version", timeout=2).status_code < 500:  # 401 without a token: up
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, open(log.name).read()[-2000:]
        time.sleep(0.2)
    else:
        pytest.fail("the Ray head did not come up")
    yield address, env
    proc.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
    try:
        proc.wait(30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _ray(head, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    address, env = head
    proc = subprocess.run([str(BIN / "ray"), "job", *args[:1], "--address", address, *args[1:]],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _submit(head, *job_args: str, wait: bool = True, submission_id: str | None = None) -> subprocess.CompletedProcess:
    flags = ["--working-dir", ".", "--runtime-env-json", EXCLUDES]
    if not wait:
        flags.append("--no-wait")
    if submission_id:
        flags += ["--submission-id", submission_id]
    deadline = time.monotonic() + 120
    while True:  # the dashboard answers before the node's job agent has registered
        proc = _ray(head, "submit", *flags, "--", sys.executable, "jobs/solve_dataset.py", *job_args, check=False)
        if proc.returncode == 0 or "No available agent" not in proc.stdout + proc.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


SLOW_TOKENS = 40_000
"""Filler of a slow problem's samples: 200 s at the stopped job's 200 tokens/s."""


def _config(path: Path, tokens_per_s: float) -> Path:
    """A SolverConfig YAML for the scripted TEST engine at ``tokens_per_s``."""
    engine = {"backend": "scripted", "num_cpus": 0.5,
              "options": {"tokens_per_s": tokens_per_s, "tokens_per_delta": max(8, int(tokens_per_s // 1000))}}
    path.write_text(yaml.safe_dump({"engine": engine, "budget": {"max_tokens": 2 * SLOW_TOKENS}}))
    return path


def _dataset(path: Path, quick: int, slow: int = 0, bad: bool = False) -> list[str]:
    """``quick`` problems whose samples answer after 20 tokens, then ``slow`` ones whose samples
    need ``SLOW_TOKENS``; with ``bad``, three malformed rows after the second. Returns the ids."""
    rows = [{"id": f"q{i}", "problem": directive_problem([str(i)], [20], code=False), "answer": str(i)}
            for i in range(quick)]
    rows += [{"id": f"s{i}", "problem": directive_problem([str(i)], [SLOW_TOKENS], code=False), "answer": str(i)}
             for i in range(slow)]
    lines = []
    for i, row in enumerate(rows):
        lines.append(json.dumps(row))
        if bad and i == 1:
            lines += ['{"id": "empty", "problem": "  "}', '{"id": 7, "problem": ["not", "text"]}', "{broken json"]
    path.write_text("\n".join(lines) + "\n")
    return [r["id"] for r in rows]


def _problem_ids(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    ids = [r["problem_id"] for r in pq.read_table(out / "problems").to_pylist()] if (out / "problems").exists() else []
    journal = out / "problems.jsonl"
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                ids.append(json.loads(line)["problem_id"])
            except (ValueError, KeyError):
                pass
    return ids


def test_stopped_job_resumes_without_duplicates_or_losses(head, tmp_path) -> None:
    data, out = tmp_path / "problems.jsonl", tmp_path / "out"
    quick, slow = 4, 5
    every = _dataset(data, quick, slow, bad=True)
    count = len(every)
    args = [str(data), "--out", str(out), "--samples", "4", "--policy", "full", "--pool", "2", "--shard-rows", "3",
            "--log-every", "1"]
    job_id = f"raysolve-stop-{os.getpid()}"
    _submit(head, *args, "--config", str(_config(tmp_path / "slow.yaml", tokens_per_s=200)),
            wait=False, submission_id=job_id)
    deadline = time.monotonic() + 300  # only a hang ends the wait this way
    polls = 0
    while len(_problem_ids(out)) < quick:  # the quick problems are done; the slow ones cannot be
        assert time.monotonic() < deadline, "the first job did not finish its quick problems"
        polls += 1
        if polls % 50 == 0:  # now and then: a failed job fails the test at once (the CLI is not cheap)
            status = _ray(head, "status", job_id, check=False)
            assert "FAILED" not in status.stdout + status.stderr, status.stdout[-2000:]
        time.sleep(0.1)
    _ray(head, "stop", job_id, timeout=120)  # waits until it stopped
    done_before = _problem_ids(out)
    assert sorted(done_before) == [f"q{i}" for i in range(quick)], done_before  # stopped midway, nothing twice

    job = _submit(head, *args, "--config", str(_config(tmp_path / "fast.yaml", tokens_per_s=10_000_000)))
    assert f"{len(done_before)} problems done earlier" in job.stdout
    assert f"progress: {count}/{count} problems (100.0%)" in job.stdout and "ETA" in job.stdout
    ids = _problem_ids(out)
    assert sorted(ids) == sorted(every)  # each exactly once
    import pyarrow.parquet as pq

    samples = pq.read_table(out / "samples").to_pylist()
    keys = [(s["problem_id"], s["sample_idx"]) for s in samples]
    assert len(keys) == len(set(keys)) and {p for p, _ in keys} == set(ids)
    parts = [pq.read_metadata(part).num_rows for part in sorted((out / "problems").glob("part-*.parquet"))]
    assert sum(parts) == count and max(parts) <= 3, parts  # written in shards of --shard-rows
    # Rows that cannot be problems are reported once with their line, though both jobs read them.
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["row"], e["reason"].split(" (")[0]) for e in errors] == [
        (3, "empty problem text"), (4, "problem text must be a string, got list"),
        (5, "invalid JSON: Expecting property name enclosed in double quotes at column 2"),
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["problems"] == count and summary["skipped_rows"] == 3
    assert summary["resumed_problems"] == len(done_before)
    assert summary["correct"] == count  # each scripted problem answers its own gold answer

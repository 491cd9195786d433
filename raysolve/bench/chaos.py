"""Chaos run: a dataset through ``raysolve solve`` on real Ray while engines die, report
themselves dead and hang, engine and sandbox actor processes are SIGKILLed, and the driver
is stopped and started again — then a check that no answer was lost or duplicated.

The engines are the scripted TEST engine (each problem's samples answer its gold answer, some
after a code call), so every problem has one right answer and a lost or duplicated one shows.
Faults land at problem counts drawn from the seed (the n-th result on disk), not at wall-clock
times, so a slow host gets the same faults at the same points of the run:

- ``dead``/``hang`` problems (``fault_once_problem``) break the engine that runs them: it
  reports ``engine_dead`` for every request, or stops producing tokens (only the watchdog,
  ``scheduling.engine_hang_s``, notices);
- engine and sandbox actor processes are found by their Ray process titles and SIGKILLed;
- the driver (the ``raysolve solve`` process) gets SIGTERM, then SIGKILL if it lingers, and is
  started again on the same output directory (resume).

After the faults, the command runs again until it exits 0 (problems that infrastructure left
without a real settle are not done, so a rerun solves them).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from raysolve.engines.testing.scripted import directive_problem, fault_once_problem
from raysolve.io.output import valid_rows

ACTOR_TITLES = ("ray::EngineActor", "ray::SandboxPool", "ray::Coordinator")


@dataclass
class ChaosPlan:
    problems: int = 200
    engines: int = 2
    seed: int = 0
    dead: int = 2
    """Problems that make the engine running them report itself dead."""
    hang: int = 2
    """Problems that make the engine running them hang."""
    engine_kills: int = 3
    sandbox_kills: int = 2
    driver_stops: int = 1
    samples: int = 4
    tokens_per_s: float = 4000.0
    hang_s: float = 3.0
    """The watchdog's no-progress limit (a healthy scripted engine emits every few ms)."""


def make_dataset(plan: ChaosPlan, path: Path, markers: Path) -> dict[str, str]:
    """Write the problems (JSONL); returns id -> gold answer."""
    rng = random.Random(plan.seed)
    n = plan.problems
    faults = rng.sample(range(3, n), plan.dead + plan.hang)
    kinds = {i: "dead" for i in faults[:plan.dead]} | {i: "hang" for i in faults[plan.dead:]}
    gold, lines = {}, []
    for i in range(n):
        answer = str(rng.randrange(1000))
        lengths = [rng.randrange(40, 400) for _ in range(plan.samples)]
        if i in kinds:
            text = fault_once_problem(kinds[i], str(markers / f"{kinds[i]}-{i}"), [answer], lengths)
        else:
            text = directive_problem([answer], lengths, code=rng.random() < 0.5)
        gold[f"c{i:04d}"] = answer
        lines.append(json.dumps({"id": f"c{i:04d}", "problem": text, "answer": answer}))
    path.write_text("\n".join(lines) + "\n")
    return gold


def write_config(plan: ChaosPlan, path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "engine": {"backend": "scripted", "num_actors": plan.engines, "num_cpus": 0.25, "max_restarts": 20,
                   "options": {"tokens_per_s": plan.tokens_per_s, "concurrency": 16}},
        "scheduling": {"num_samples": plan.samples, "pool_size": 2, "engine_hang_s": plan.hang_s},
        "budget": {"max_tokens": 2000},
    }))
    return path


def actor_pids(title: str, address: str) -> list[int]:
    """Pids of the Ray actor processes whose title starts with ``title``, among the workers of
    this host's raylet of the cluster at ``address`` (other Ray instances on the host are left alone)."""
    import psutil

    found = []
    for raylet in psutil.process_iter(["name", "cmdline"]):
        cmd = raylet.info.get("cmdline") or []
        if not cmd or not cmd[0].endswith("raylet") or f"--gcs-address={address}" not in cmd:
            continue
        try:
            workers = raylet.children(recursive=True)
        except psutil.Error:
            continue
        for proc in workers:
            try:
                if proc.cmdline()[:1] and proc.cmdline()[0].startswith(title):
                    found.append(proc.pid)
            except psutil.Error:
                continue
    return found


def _kill_one(title: str, address: str, rng: random.Random) -> int | None:
    pids = actor_pids(title, address)
    if not pids:
        return None
    pid = rng.choice(pids)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return None
    return pid


def run(plan: ChaosPlan, workdir: Path, address: str, timeout_s: float = 900.0) -> dict[str, Any]:
    """Run the plan against the Ray cluster at ``address``; returns the report (``ok`` says
    whether every check held)."""
    workdir.mkdir(parents=True, exist_ok=True)
    markers = workdir / "markers"
    markers.mkdir(exist_ok=True)
    data, out = workdir / "problems.jsonl", workdir / "out"
    gold = make_dataset(plan, data, markers)
    config = write_config(plan, workdir / "chaos.yaml")
    rng = random.Random(plan.seed + 1)
    n = plan.problems
    schedule = sorted([(at, "engine_kill") for at in rng.sample(range(2, n - 2), plan.engine_kills)]
                      + [(at, "sandbox_kill") for at in rng.sample(range(2, n - 2), plan.sandbox_kills)]
                      + [(at, "driver_stop") for at in rng.sample(range(n // 4, 3 * n // 4), plan.driver_stops)])
    command = [sys.executable, "-m", "raysolve.cli", "solve", str(data), "--out", str(out), "--config", str(config),
               "--address", address, "--progress", "log", "--log-every", "5"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = workdir / "driver.log"
    injected: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    started = time.monotonic()

    def launch() -> subprocess.Popen:
        log = logs.open("a")
        log.write(f"\n--- run {len(runs) + 1}\n")
        log.flush()
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def done() -> int:
        return len(valid_rows(out / "problems.jsonl")) + len(valid_rows(out / "failed.jsonl"))

    proc = launch()
    try:
        while True:
            assert time.monotonic() - started < timeout_s, f"chaos run exceeded {timeout_s} s"
            code = proc.poll()
            if code is not None:
                runs.append({"exit": code, "at_results": done()})
                if code == 0 and len(valid_rows(out / "problems.jsonl")) >= n:  # all done: faults not reached are dropped
                    injected += [{"kind": kind, "at_results": at, "skipped": "the run ended first"} for at, kind in schedule]
                    break
                proc = launch()  # resubmit: after a stop, or to solve what failed
                continue
            if schedule and done() >= schedule[0][0]:
                at, kind = schedule.pop(0)
                event: dict[str, Any] = {"kind": kind, "at_results": done(), "s": round(time.monotonic() - started, 1)}
                if kind in ("engine_kill", "sandbox_kill"):
                    title = "ray::EngineActor" if kind == "engine_kill" else "ray::SandboxPool"
                    event["pid"] = _kill_one(title, address, rng)
                    if event["pid"] is None:  # the driver's actors are not up (yet): try again shortly
                        schedule.insert(0, (at, kind))
                        time.sleep(0.2)
                        continue
                else:
                    proc.send_signal(signal.SIGTERM)  # as `ray job stop` does, then SIGKILL
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    runs.append({"exit": proc.returncode, "at_results": done(), "stopped": True})
                    proc = launch()
                injected.append(event)
                continue
            time.sleep(0.05)
    finally:  # a failed check or a timeout must not leave the driver running
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = check(plan, gold, out, injected, runs, time.monotonic() - started, address)
    report["faults"]["engines_broken"] = sorted(p.name for p in markers.iterdir())  # dead-/hang- problems that fired
    return report


def wait_for_no_actors(address: str, timeout_s: float = 60.0) -> list[int]:
    """Pids of raysolve actor processes still alive after ``timeout_s`` (empty: all gone)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [pid for title in ACTOR_TITLES for pid in actor_pids(title, address)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def check(plan: ChaosPlan, gold: dict[str, str], out: Path, injected: list[dict[str, Any]],
          runs: list[dict[str, Any]], wall_s: float, address: str) -> dict[str, Any]:
    rows = valid_rows(out / "problems.jsonl")
    samples = valid_rows(out / "samples.jsonl")
    failed = valid_rows(out / "failed.jsonl")
    ids = Counter(str(r["problem_id"]) for r in rows)
    lost = sorted(set(gold) - set(ids))
    duplicated = sorted(i for i, c in ids.items() if c > 1)
    wrong = sorted(str(r["problem_id"]) for r in rows if r["answer"] != gold.get(str(r["problem_id"])))
    not_settled = sorted(str(r["problem_id"]) for r in rows if r.get("failure") or r["settle_reason"] == "no engine left")
    inconsistent = sorted(str(r["problem_id"]) for r in rows
                          if r["votes"] and r["votes"].get(r["answer"], 0) != max(r["votes"].values()))
    sample_keys = Counter((str(s["problem_id"]), s["sample_idx"]) for s in samples)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    sessions = [s.get("sessions") for s in summary.get("sandboxes") or []]
    left = wait_for_no_actors(address)
    report = {
        "plan": asdict(plan),
        "problems": len(gold), "rows": len(rows), "lost": len(lost), "duplicated": len(duplicated),
        "wrong_answers": len(wrong), "without_real_settle": len(not_settled), "votes_inconsistent": len(inconsistent),
        "duplicated_sample_rows": sum(c > 1 for c in sample_keys.values()),
        "failed_then_solved": sum(1 for f in failed if str(f["problem_id"]) in ids), "failed_rows": len(failed),
        "samples_retried": sum(1 for s in samples if s.get("attempt", 1) > 1),
        "sandbox_sessions_left": sessions, "actor_processes_left": left,
        "faults": {"injected": injected, "dead_problems": plan.dead, "hang_problems": plan.hang},
        "driver_runs": runs, "wall_s": round(wall_s, 1),
        "examples": {"lost": lost[:5], "duplicated": duplicated[:5], "wrong": wrong[:5], "not_settled": not_settled[:5]},
    }
    report["ok"] = (not lost and not duplicated and not wrong and not not_settled and not inconsistent
                    and report["duplicated_sample_rows"] == 0 and not left and all(s == 0 for s in sessions))
    return report

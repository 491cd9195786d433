"""The red-team and legitimate-code corpora (``raysolve/sandbox/corpus.py``) against
real worker processes.

Every hostile snippet must end exactly as its case names (compile-time rejection,
clean error text, wall-clock kill, or a killed-and-reported worker); afterwards
the same session must still hold its earlier state and run normally. Around the
whole corpus the host is checked: environment, files, the fork server (never
restarted by anything the code did) and the process table (no stray workers).
Every legitimate snippet must print exactly what plain CPython prints.

Only the ``timeout`` cases are about the wall clock, and they hang (or would run for
minutes), so their 1 s limit always fires. Every other case gets a limit far beyond what
it needs on a slow, busy host (``patient``): a snippet that prints the right thing in 3 s
instead of 0.3 s is not what these tests are about.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator

import pytest
from sandbox_helpers import LoopThread, live_children, wait_until

from raysolve.sandbox import LocalSandbox, SandboxConfig
from raysolve.sandbox.corpus import CATEGORIES, LEGIT, LEGIT_CATEGORIES, REDTEAM, Case, run_cases

pytestmark = pytest.mark.timeout(300)

PATIENT_S = 120.0
"""Wall-clock limit of every case that is not a ``timeout`` case."""


def patient(case: Case) -> Case:
    """The case with a limit far beyond its need, unless hitting its limit is the point."""
    return case if case.outcome == "timeout" else dataclasses.replace(case, timeout_s=PATIENT_S)


def _host_state(worker_uid: int | None = None) -> dict[str, object]:
    """The host's environment, and what the sandbox could have left in the temp dir and the
    cwd. Other processes of a busy machine write to /tmp too: entries count when a worker's
    uid owns them, or (where workers run as this process's uid) when the corpus names them."""
    tmp = tempfile.gettempdir()
    mine = worker_uid is None or worker_uid == os.getuid()
    entries = []
    for name in os.listdir(tmp):
        try:
            owner = os.lstat(os.path.join(tmp, name)).st_uid
        except OSError:
            continue
        if (not mine and owner == worker_uid) or (mine and name in CORPUS_TMP_NAMES):
            entries.append(name)
    return {
        "env": {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},
        "tmp": sorted(entries),
        "cwd": sorted(n for n in os.listdir(os.getcwd()) if n != ".pytest_cache"),
    }


CORPUS_TMP_NAMES = frozenset({"x", "escaped", "escaped.txt", "pwned", "out.txt"})


@pytest.fixture(scope="module")
def box(loop: LoopThread) -> Iterator[LocalSandbox]:
    sandbox = LocalSandbox(SandboxConfig(max_workers=2, warm_workers=1, timeout_s=PATIENT_S))
    loop.run(sandbox.__aenter__())
    sid = loop.run(sandbox.open_session())
    loop.run(sandbox.run(sid, "pass"))  # start the fork server
    worker_uid = sandbox._sessions[sid].worker.uid
    before = _host_state(worker_uid)
    server = sandbox.fork_server_pid
    yield sandbox
    # Nothing the corpus did reached the host or the fork server.
    after = _host_state(worker_uid)
    # A warm worker may be mid-fork, a killed one mid-exit: wait until neither is left over.
    def strays() -> list[int]:
        return [p for p in live_children(server) if p not in sandbox.worker_pids()]

    try:
        wait_until(lambda: not strays(), "stray workers to exit")
    except AssertionError:
        pass  # reported below, with their pids
    stray = strays()
    stats = sandbox.stats()
    loop.run(sandbox.aclose())
    assert after["env"] == before["env"]
    assert after["tmp"] == before["tmp"]
    assert after["cwd"] == before["cwd"]
    assert sandbox.fork_server_pid is None and stats["fork_server_starts"] == 1
    assert stats["running"] == 0
    assert stray == [], stray


def _ids(cases: tuple[Case, ...]) -> list[str]:
    return [f"{c.category}:{c.name}" for c in cases]


def test_corpora_cover_every_category() -> None:
    assert len(REDTEAM) >= 60 and len(LEGIT) >= 40
    for category in CATEGORIES:
        assert sum(c.category == category for c in REDTEAM) >= 5, category
    for category in LEGIT_CATEGORIES:
        assert any(c.category == category for c in LEGIT), category
    assert {c.outcome for c in REDTEAM} == {"compile", "error", "timeout", "killed", "ok"}
    assert len({c.name for c in REDTEAM + LEGIT}) == len(REDTEAM) + len(LEGIT)


@pytest.mark.parametrize("case", REDTEAM, ids=_ids(REDTEAM))
def test_redteam(loop: LoopThread, box: LocalSandbox, case: Case) -> None:
    (report,) = loop.run(run_cases(box, [patient(case)]), timeout=280)
    assert report.problem is None, report.problem


@pytest.mark.parametrize("case", LEGIT, ids=_ids(LEGIT))
def test_legit(loop: LoopThread, box: LocalSandbox, case: Case) -> None:
    (report,) = loop.run(run_cases(box, [patient(case)]), timeout=280)
    assert report.problem is None, report.problem

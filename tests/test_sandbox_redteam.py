"""The red-team and legitimate-code corpora (``raysolve/sandbox/corpus.py``) against
real worker processes.

Every hostile snippet must end exactly as its case names (compile-time rejection,
clean error text, wall-clock kill, or a killed-and-reported worker); afterwards
the same session must still hold its earlier state and run normally. Around the
whole corpus the host is checked: environment, files, the fork server (never
restarted by anything the code did) and the process table (no stray workers).
Every legitimate snippet must print exactly what plain CPython prints.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator

import pytest
from sandbox_helpers import LoopThread, live_children

from raysolve.sandbox import LocalSandbox, SandboxConfig
from raysolve.sandbox.corpus import CATEGORIES, LEGIT, LEGIT_CATEGORIES, REDTEAM, Case, run_cases

pytestmark = pytest.mark.timeout(120)


def _host_state() -> dict[str, object]:
    return {
        "env": {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},
        "tmp": sorted(os.listdir(tempfile.gettempdir())),
        "cwd": sorted(os.listdir(os.getcwd())),
    }


@pytest.fixture(scope="module")
def box(loop: LoopThread) -> Iterator[LocalSandbox]:
    sandbox = LocalSandbox(SandboxConfig(max_workers=2, warm_workers=1, timeout_s=2.0))
    loop.run(sandbox.__aenter__())
    loop.run(sandbox.run(loop.run(sandbox.open_session()), "pass"))  # start the fork server
    before = _host_state()
    server = sandbox.fork_server_pid
    yield sandbox
    # Nothing the corpus did reached the host or the fork server.
    after = _host_state()
    deadline = time.monotonic() + 10  # a warm worker may be mid-fork, a killed one mid-exit
    while (stray := [p for p in live_children(server) if p not in sandbox.worker_pids()]) and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = sandbox.stats()
    loop.run(sandbox.aclose())
    assert after["env"] == before["env"]
    assert not {n for n in after["tmp"] if n not in before["tmp"] and not n.startswith(("raysolve-sbx-", "pytest", "ray"))}
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
    (report,) = loop.run(run_cases(box, [case]), timeout=90)
    assert report.problem is None, report.problem


@pytest.mark.parametrize("case", LEGIT, ids=_ids(LEGIT))
def test_legit(loop: LoopThread, box: LocalSandbox, case: Case) -> None:
    (report,) = loop.run(run_cases(box, [case]), timeout=90)
    assert report.problem is None, report.problem

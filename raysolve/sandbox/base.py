"""The `Sandbox` protocol and its result type, shared by the tool loop and the actors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

ExecStatus = Literal["ok", "error", "timeout", "killed"]
"""``ok``: ran to the end; ``error``: compile or runtime error (text in ``stderr``);
``timeout``: wall-clock limit hit, worker killed; ``killed``: worker died (memory,
CPU rlimit, crash) or the run was cancelled."""


@dataclass(frozen=True)
class ExecResult:
    status: ExecStatus
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    wall_s: float = 0.0

    @property
    def text(self) -> str:
        """What the model sees: stdout, then stderr (errors are short, readable lines)."""
        if self.stdout and self.stderr:
            return f"{self.stdout}\n{self.stderr}" if not self.stdout.endswith("\n") else self.stdout + self.stderr
        return self.stdout or self.stderr


@runtime_checkable
class Sandbox(Protocol):
    """Stateful sessions of restricted Python: one session per sample.

    Variables defined by one ``run`` are visible to the next ``run`` of the same
    session. ``run`` never raises for bad, slow or hostile code: it returns an
    ``ExecResult`` whose text goes back to the model.
    """

    async def open_session(self) -> str: ...

    async def run(self, session_id: str, code: str, timeout_s: float | None = None) -> ExecResult: ...

    async def close(self, session_id: str) -> None: ...

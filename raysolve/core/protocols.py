"""The two protocols the tool loop talks to: `Engine` (inference backends) and `Sandbox`
(restricted code execution), with the values that cross them.

They live in the core so that the tool loop (`raysolve.core.tir`) depends on nothing
above it. Backends are like an HTTP client's transports: the tool loop and the actors
talk only to these protocols, and each module under `raysolve.engines` adapts one
library to `Engine`. Token ids go in and come out; a backend never re-tokenises what
the solver already holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "cancelled", "error"]
"""Why a generation segment ended.

- ``stop``: EOS or one of the request's stop tokens/strings (see ``Delta.stop``);
- ``length``: ``max_tokens`` reached;
- ``cancelled``: ``Engine.cancel`` was called for the request;
- ``error``: the backend failed on this request (the text says why).
"""


@dataclass(frozen=True)
class GenerationRequest:
    """One segment of one sample: continue ``prompt_ids`` for at most ``max_tokens``."""

    request_id: str
    prompt_ids: tuple[int, ...]
    max_tokens: int
    seed: int
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 0
    stop_token_ids: tuple[int, ...] = ()
    """Extra stop tokens (e.g. the code-end token); EOS always stops."""
    greedy: bool = False
    """Argmax decoding. Never the default: samples of one problem must differ."""


@dataclass
class Delta:
    """Tokens produced since the previous delta; the last delta has ``finish_reason``."""

    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    stop: int | None = None
    """The stop token id that ended the segment, when ``finish_reason == "stop"``."""
    error: str | None = None
    error_kind: str | None = None
    """With ``error``: a kind of ``raysolve.core.errors`` (``engine_dead``, ``engine_overloaded``,
    ``context_overflow``, ...) when the failure is the engine's rather than this request's."""


@runtime_checkable
class Engine(Protocol):
    """An async text generator with per-request cancellation.

    Implementations must: honour ``seed`` per request (two requests with different
    seeds give independent samples), stop on EOS and on ``stop_token_ids``, stop
    within milliseconds of ``cancel`` and free the request's cache, and allow at
    least ``max_concurrency()`` requests in flight at once. After ``start()`` a
    backend exposes the Hugging Face ``tokenizer`` of its model (or a ``codec``
    implementing ``raysolve.core.prompting.TokenCodec``): the engine actor renders
    prompts and tool output with it, so token ids agree with the engine's.
    """

    async def start(self) -> None:
        """Load weights and start background work. Called once inside the actor."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Stream deltas for ``request``; the final delta carries the finish reason."""

    async def cancel(self, request_id: str) -> None:
        """Stop decoding ``request_id`` and free its cache; its stream ends ``cancelled``."""

    def max_concurrency(self) -> int:
        """How many requests the coordinator should keep in flight on this engine."""

    def stats(self) -> dict[str, float]:
        """Counters for monitoring (tokens generated, requests, cancellations, ...)."""

    async def close(self) -> None:
        """Release the model and background threads."""



# ---- sandbox ----------------------------------------------------------------------

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

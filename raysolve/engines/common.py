"""What the model backends share: model names, request counters, early cancels."""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from pathlib import Path

from raysolve.core.protocols import Delta, GenerationRequest

TINY = "tiny"
"""A backend's ``model`` value meaning the project's trained tiny model, shipped in ``raysolve/tiny/model``."""
RANDOM_TINY = "random-tiny"
"""A backend's ``model`` value meaning ``raysolve.engines.testing.random_model.ensure_random_model()`` (tests)."""


def resolve_model_path(model: str, random_seed: int = 0) -> str:
    """The directory (or hub id) behind a backend's ``model`` option."""
    if model == TINY:
        from raysolve.tiny import MODEL_DIR

        return str(MODEL_DIR)
    if model == RANDOM_TINY:
        from raysolve.engines.testing.random_model import ensure_random_model

        return str(ensure_random_model(seed=random_seed))
    local = Path(model).expanduser()
    return str(local) if local.exists() else model


def request_counters() -> dict[str, int]:
    """The counters every backend reports in ``stats()``."""
    return dict.fromkeys(
        ("tokens_generated", "requests_started", "requests_finished", "requests_cancelled", "requests_failed"), 0
    )


class EarlyCancels:
    """Ids cancelled before their ``generate`` started; bounded in count and age.

    A sample's cancel can overtake its ``generate`` call (the coordinator settles a
    problem while the engine actor is still rendering the next segment). Backends
    remember such ids for a while and end that stream ``cancelled`` without running it."""

    def __init__(self, max_ids: int = 4096, ttl_s: float = 300.0) -> None:
        self.max_ids = max_ids
        self.ttl_s = ttl_s
        self._ids: OrderedDict[str, float] = OrderedDict()

    def add(self, request_id: str) -> None:
        now = time.monotonic()
        self._ids[request_id] = now
        self._ids.move_to_end(request_id)
        while self._ids and (
            len(self._ids) > self.max_ids or now - next(iter(self._ids.values())) > self.ttl_s
        ):
            self._ids.popitem(last=False)

    def pop(self, request_id: str) -> float | None:
        """The time the early cancel arrived, or None; forgets the id."""
        return self._ids.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._ids)


def fit_to_room(request: GenerationRequest, room: int, room_name: str) -> tuple[int, Delta | None]:
    """``max_tokens`` clamped so prompt plus generation fit ``room`` tokens (a cache, a context).

    Returns ``(max_tokens, None)`` when something can be generated, else ``(0, final delta)``:
    ``length`` for a request that asked for no tokens, ``error`` for a prompt with no room left."""
    max_tokens = min(request.max_tokens, room - len(request.prompt_ids))
    if max_tokens > 0:
        return max_tokens, None
    if request.max_tokens <= 0:
        return 0, Delta(finish_reason="length")
    return 0, Delta(
        finish_reason="error",
        error=f"prompt of {len(request.prompt_ids)} tokens leaves no room in {room_name} ({room} tokens)",
        error_kind="context_overflow",
    )


_DEAD_PHRASES = ("engine is dead", "enginedead", "engine core died", "executor is shut down", "executor has shut down",
                 "cuda error", "device-side assert", "nccl error")
_OVERFLOW_PHRASES = ("maximum context length", "max_model_len", "maximum model length", "exceeds the context",
                     "longer than the maximum", "max_seq_len")
_OVERLOAD_PHRASES = ("queue is full", "overloaded", "too many requests", "server is busy")


def library_error_kind(exc: BaseException) -> str | None:
    """The ``raysolve.core.errors`` kind of an exception a library raised under a request: an
    engine that died (vLLM's ``EngineDeadError``, a CUDA or NCCL error), a context overflow, an
    overloaded engine; ``None`` for a failure of that request alone."""
    text = f"{type(exc).__name__}: {exc}".lower()
    if any(p in text for p in _DEAD_PHRASES):
        return "engine_dead"
    if any(p in text for p in _OVERFLOW_PHRASES):
        return "context_overflow"
    if any(p in text for p in _OVERLOAD_PHRASES):
        return "engine_overloaded"
    return None


def library_request_problem(request: GenerationRequest, started: bool, running: bool) -> str | None:
    """Why a request must not reach an engine library (vLLM, TensorRT-LLM), or None."""
    if not started:
        return "engine not started (or closed)"
    if running:
        return f"request id {request.request_id!r} is already running"
    if not request.prompt_ids:
        return "empty prompt"
    if not request.greedy and request.temperature <= 0:
        return "temperature <= 0 without greedy=True (samples of one problem must differ)"
    return None


def preflight(request: GenerationRequest, problem: str | None, early: EarlyCancels, room: int, room_name: str,
              counters: dict[str, int]) -> tuple[int, Delta | None]:
    """What every backend does before its library sees a request, counted in ``counters``:
    a ``problem`` ends it with an ``error`` delta, an early cancel with ``cancelled``, and no
    room with ``fit_to_room``'s delta. Returns ``(max_tokens, None)`` when it may run."""
    if problem is not None:
        counters["requests_failed"] += 1
        return 0, Delta(finish_reason="error", error=problem)
    if early.pop(request.request_id) is not None:
        counters["requests_started"] += 1
        counters["requests_cancelled"] += 1
        return 0, Delta(finish_reason="cancelled")
    max_tokens, refused = fit_to_room(request, room, room_name)
    if refused is not None:
        counters["requests_failed" if refused.finish_reason == "error" else "requests_finished"] += 1
    return max_tokens, refused


def count_final(delta: Delta, counters: dict[str, int]) -> Delta:
    """Count a request's final delta; a cancelled one keeps no tokens (they came after the cancel)."""
    if delta.finish_reason == "cancelled":
        delta.token_ids = []
    else:
        counters["tokens_generated"] += len(delta.token_ids)
        counters["requests_failed" if delta.finish_reason == "error" else "requests_finished"] += 1
    return delta


def visible_gpu_count(environ: dict[str, str] | None = None) -> int:
    """GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` (Ray sets it for a GPU actor), else torch's count."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0

"""What can go wrong with a sample besides the model's own text, and what the runtime does
about each: the error taxonomy.

Backends report a failed request as an ``error`` delta with one of the ``kind``s below (or
none, for a failure of that request alone); the tool loop turns the infrastructure ones
into exceptions, so that a sample whose engine failed is retried instead of being counted
as a finished sample without an answer. The coordinator reads the class of the exception
(through Ray's wrapper) and acts on ``retry`` and ``engine_unhealthy``.

| kind                | retried | engine taken out and restarted |
|---------------------|---------|--------------------------------|
| ``engine_dead``     | yes     | yes                            |
| ``engine_hung``     | yes     | yes (no progress for too long) |
| ``engine_overloaded``| yes    | no                             |
| ``sandbox_lost``    | yes     | no                             |
| ``context_overflow``| no: the sample ends with ``length``      |
| ``bad_request``     | no: the sample ends with ``error``       |
"""

from __future__ import annotations

from typing import ClassVar


class SampleError(Exception):
    """A sample could not run for a reason outside the model's text."""

    kind: ClassVar[str] = "sample_error"
    retry: ClassVar[bool] = False
    """Run the sample again (on another engine, or this one once it is back)."""
    engine_unhealthy: ClassVar[bool] = False
    """The engine can serve nothing more: take it out of rotation and restart its actor."""


class EngineDead(SampleError):
    """The engine's process, thread or device is gone (vLLM's ``EngineDeadError``, a stopped
    generation thread, a CUDA error)."""

    kind = "engine_dead"
    retry = True
    engine_unhealthy = True


class EngineHung(EngineDead):
    """The engine made no progress (no token, no finished sample) for longer than the
    coordinator's watchdog allows."""

    kind = "engine_hung"


class EngineOverloaded(SampleError):
    """The engine refused the request for now (queue full, HTTP 429/503)."""

    kind = "engine_overloaded"
    retry = True


class SandboxLost(SampleError):
    """The sandbox service did not answer (its actor died and did not come back in time)."""

    kind = "sandbox_lost"
    retry = True


class BadRequest(SampleError):
    """The request itself is wrong and would fail on any engine."""

    kind = "bad_request"


class ContextOverflow(BadRequest):
    """Prompt plus generated text no longer fit the model's context: the sample ends as
    ``length``, like one that used its token budget."""

    kind = "context_overflow"


KINDS: dict[str, type[SampleError]] = {cls.kind: cls for cls in (
    SampleError, EngineDead, EngineHung, EngineOverloaded, SandboxLost, BadRequest, ContextOverflow)}


def error_for(kind: str | None, message: str) -> SampleError:
    """The exception for an ``error`` delta's kind (a plain ``SampleError`` when unknown)."""
    return KINDS.get(kind or "", SampleError)(message)


def find_sample_error(exc: BaseException | None) -> SampleError | None:
    """The ``SampleError`` inside ``exc``: itself, or one Ray (``RayTaskError.cause``) or Python
    (``__cause__``/``__context__``) wrapped around it."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, SampleError):
            return exc
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else (exc.__cause__ or exc.__context__)
        seen += 1
    return None

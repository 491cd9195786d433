"""The tool-integrated loop of one sample: generate, run code, append output, repeat.

Engine- and Ray-agnostic: it talks to an ``Engine``, a ``Sandbox`` and a
``TokenCodec``. Token ids stay here; only the finished ``SampleOutcome`` leaves.
Cancelling the task that runs ``run_sample`` stops the engine request, closes the
sandbox session and still returns an outcome (``finish_reason="cancelled"``) with
the tokens spent so far, so cancelled work is accounted for. An engine failure that
is not the sample's own (``raysolve.core.errors``: a dead or overloaded engine) is
raised, so the runtime retries the sample instead of counting it as finished.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

from raysolve.core.answers import extract_boxed, vote_key
from raysolve.core.errors import ContextOverflow, error_for
from raysolve.core.prompting import PromptFormat, TokenCodec
from raysolve.core.protocols import Engine, GenerationRequest, Sandbox
from raysolve.core.records import SampleSettings

SampleFinish = Literal["eos", "length", "cancelled", "error"]


@dataclass(frozen=True)
class SampleSpec:
    """Everything one sample needs besides the engine, sandbox and codec."""

    request_id: str
    prompt_ids: tuple[int, ...]
    seed: int
    settings: SampleSettings = SampleSettings()


@dataclass
class SampleOutcome:
    """What one sample produced; the per-sample record is built from it."""

    finish_reason: SampleFinish = "eos"
    answer: str | None = None
    """The vote key of the last box (``answers.parse_answer``)."""
    answer_text: str | None = None
    """The last box's content as the model wrote it: what grading reads."""
    text: str = ""
    generated_tokens: int = 0
    tool_output_tokens: int = 0
    code_calls: int = 0
    code_errors: int = 0
    segments: int = 0
    wall_s: float = 0.0
    first_token_s: float | None = None
    """Seconds from the sample's start to its first generated token (time to first token)."""
    tool_s: float = 0.0
    """Seconds spent waiting for code runs (the rest of ``wall_s`` is the engine's)."""
    error: str | None = None
    exec_statuses: list[str] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return self.generated_tokens + self.tool_output_tokens


async def run_sample(
    spec: SampleSpec,
    engine: Engine,
    sandbox: Sandbox,
    codec: TokenCodec,
    fmt: PromptFormat,
) -> SampleOutcome:
    """Run one sample to its end (EOS, budget, error or cancellation)."""
    cfg = spec.settings
    out = SampleOutcome()
    started = time.perf_counter()
    context = list(spec.prompt_ids)
    pieces: list[str] = []
    model_pieces: list[str] = []  # the answer comes from these: tool output never votes
    session: str | None = None
    stop_ids = (codec.code_end_token_id,) if codec.code_end_token_id is not None else ()
    try:
        while True:
            budget = cfg.max_tokens - out.total_tokens
            if budget <= 0:
                out.finish_reason = "length"
                break
            request = GenerationRequest(
                request_id=f"{spec.request_id}/{out.segments}",
                prompt_ids=tuple(context),
                max_tokens=budget,
                seed=segment_seed(spec.seed, out.segments),
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                top_k=cfg.top_k,
                stop_token_ids=stop_ids,
                greedy=cfg.temperature <= 0,
            )
            out.segments += 1
            segment: list[int] = []
            try:
                finish, stop, error, kind = await _generate_segment(engine, request, codec, fmt, segment, out, started)
            finally:  # counted even when cancelled mid-segment
                out.generated_tokens += len(segment)
            context.extend(segment)
            text = codec.decode(segment)
            pieces.append(text)
            model_pieces.append(text)
            if finish == "error":
                failure = error_for(kind, error or "engine error")
                if failure.retry:
                    raise failure
                out.finish_reason = "length" if isinstance(failure, ContextOverflow) else "error"
                out.error = error
                break
            if finish == "length":
                out.finish_reason = "length"
                break
            if finish == "cancelled":
                out.finish_reason = "cancelled"
                break
            if not _ended_on_code(stop, text, codec, fmt):
                out.finish_reason = "eos"
                break
            code = fmt.extract_code(text) or ""
            if out.code_calls >= cfg.max_code_calls:
                block = fmt.limit_block()
            else:
                if session is None:
                    session = await _open_session(sandbox)
                ran = time.perf_counter()
                result = await sandbox.run(session, code, cfg.code_timeout_s)
                out.tool_s += time.perf_counter() - ran
                out.code_calls += 1
                out.exec_statuses.append(result.status)
                if result.status != "ok":
                    out.code_errors += 1
                block = fmt.output_block(result.text, cfg.max_code_calls - out.code_calls,
                                         failed=result.status != "ok")
            block_ids = codec.encode(block)
            room = cfg.max_tokens - out.total_tokens
            if len(block_ids) > room:  # the output would overrun the sample's budget: cut it there
                block_ids = block_ids[:max(room, 0)]
                block = codec.decode(block_ids)
            out.tool_output_tokens += len(block_ids)
            context.extend(block_ids)
            pieces.append(block)
    except asyncio.CancelledError:
        out.finish_reason = "cancelled"
    finally:
        if session is not None:
            await _close_quietly(sandbox, session)
    out.text = "".join(pieces)
    out.wall_s = time.perf_counter() - started
    if out.finish_reason != "cancelled":
        # Code output can print "\boxed{...}" (or a fake output fence); only the
        # model's own text is read for the answer.
        model_text = "".join(model_pieces)
        out.answer_text = extract_boxed(model_text)
        if out.answer_text is not None:  # a LaTeX form's first sight parses for milliseconds: off the loop
            out.answer = await asyncio.to_thread(vote_key, out.answer_text, cfg.modulus)
    return out


async def _generate_segment(
    engine: Engine, request: GenerationRequest, codec: TokenCodec, fmt: PromptFormat, ids: list[int],
    out: SampleOutcome, started: float,
) -> tuple[str, int | None, str | None]:
    """Stream one segment into ``ids``; returns (finish reason, stop token, error, error kind)."""
    finish, stop, error, kind = "error", None, "engine stream ended without a finish reason", None
    stream = engine.generate(request)
    try:
        async for delta in stream:
            if out.first_token_s is None and delta.token_ids:
                out.first_token_s = time.perf_counter() - started
            ids.extend(delta.token_ids)
            if codec.code_end_token_id is None and fmt.code_end in codec.decode(ids):
                # The code-end tag spans several tokens: stop the request ourselves.
                await engine.cancel(request.request_id)
                ids[:] = _cut_at_string(ids, codec, fmt.code_end)
                return "stop", None, None, None
            if delta.finish_reason is not None:
                finish, stop, error, kind = delta.finish_reason, delta.stop, delta.error, delta.error_kind
                break
    except asyncio.CancelledError:
        await engine.cancel(request.request_id)
        raise
    finally:
        await stream.aclose()
    return finish, stop, error, kind


def segment_seed(seed: int, segment: int) -> int:
    """A fresh seed per segment that no other sample's segment shares (golden-ratio stride)."""
    return (seed + segment * 0x9E3779B97F4A7C15) % 2**63


def _cut_at_string(ids: list[int], codec: TokenCodec, tag: str) -> list[int]:
    """The shortest prefix of ``ids`` whose text contains ``tag``."""
    for n in range(1, len(ids) + 1):
        if tag in codec.decode(ids[:n]):
            return ids[:n]
    return ids


def _ended_on_code(stop: int | None, text: str, codec: TokenCodec, fmt: PromptFormat) -> bool:
    if stop is not None and stop == codec.code_end_token_id:
        return True
    return codec.code_end_token_id is None and text.rstrip().endswith(fmt.code_end)


async def _open_session(sandbox: Sandbox) -> str:
    """Open a sandbox session; one whose opening is cancelled midway is still closed when it
    arrives, so no session outlives its sample."""
    opening = asyncio.ensure_future(sandbox.open_session())
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        def close_late(task: asyncio.Future) -> None:
            if not task.cancelled() and task.exception() is None:
                asyncio.ensure_future(_close_quietly(sandbox, task.result()))

        opening.add_done_callback(close_late)
        raise


async def _close_quietly(sandbox: Sandbox, session: str) -> None:
    try:
        await asyncio.shield(sandbox.close(session))
    except Exception:  # a dead sandbox must not turn a finished sample into an error
        pass

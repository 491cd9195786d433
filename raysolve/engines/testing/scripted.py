"""TEST ENGINE — a scripted stand-in for a model. Not a backend: never ship it as one.

It exists for deterministic tests of the layers above the engine (the tool loop,
the engine actor, the coordinator): it "generates" a text that a script chooses
from the prompt and the seed, at a fixed token rate, and honours the parts of the
``Engine`` contract those layers rely on — streaming deltas, stop tokens, EOS,
``max_tokens`` and prompt cancellation. ``CharCodec`` is its tokenizer: one token
per character, plus single-token specials.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Sequence

from raysolve.core.protocols import Delta, GenerationRequest

EOS = "<|im_end|>"
SPECIALS = ("<|im_start|>", EOS, "<tool_call>", "</tool_call>")
_SPECIAL_BASE = 0x110000  # above every Unicode code point


class CharCodec:
    """One token per character; the chat markers and code tags are single tokens."""

    def __init__(self) -> None:
        self._ids = {tok: _SPECIAL_BASE + i for i, tok in enumerate(SPECIALS)}
        self._tokens = {i: tok for tok, i in self._ids.items()}
        self.eos_token_ids = (self._ids[EOS],)
        self.code_end_token_id = self._ids["</tool_call>"]

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        i = 0
        while i < len(text):
            special = next((s for s in SPECIALS if text.startswith(s, i)), None)
            if special:
                ids.append(self._ids[special])
                i += len(special)
            else:
                ids.append(ord(text[i]))
                i += 1
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self._tokens.get(i) or chr(i) for i in ids)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}{EOS}\n" for m in messages)
        return turns + "<|im_start|>assistant\n"


Script = Callable[[str, GenerationRequest], str]
"""(text so far — prompt plus everything generated —, request) -> continuation."""


def directive_problem(answers: Sequence[str], lengths: Sequence[int] = (40,), code: bool = True) -> str:
    """A problem text that tells ``directive_script`` what each sample should do:
    sample ``i`` answers ``answers[i % len(answers)]`` after ``lengths[i % len(lengths)]``
    tokens of filler, and first runs one code call when ``code`` is set."""
    return (f"Scripted problem. answers={','.join(answers)};lengths={','.join(map(str, lengths))};"
            f"code={int(code)};")


def directive_script(text: str, request: GenerationRequest) -> str:
    """TEST SCRIPT for ``directive_problem`` texts: a code call, then filler and a boxed answer.

    The sample index comes from the request id (``<problem>#<sample>/<segment>``)."""
    spec = dict(part.split("=", 1) for part in text.split("Scripted problem. ", 1)[1].split(";") if "=" in part)
    answers = spec["answers"].split(",")
    lengths = [int(n) for n in spec["lengths"].split(",")]
    idx = int(request.request_id.rsplit("#", 1)[1].split("/", 1)[0])
    if spec.get("crash_once"):
        _crash_once(spec["crash_once"])
    for fault in ("dead", "hang"):
        marker = spec.get(f"{fault}_once")
        if marker and _first_time(marker):
            raise ScriptedFault(fault)
    if spec.get("code") == "1" and "```output" not in text:
        return f"Let me compute.<tool_call>\n```python\nx = {idx} * 2\nprint(x)\n```\n</tool_call>"
    filler = "." * lengths[idx % len(lengths)]
    return f"{filler} The answer is \\boxed{{{answers[idx % len(answers)]}}}."


def crash_once_problem(marker: str, answers: Sequence[str], lengths: Sequence[int] = (40,)) -> str:
    """A ``directive_problem`` whose first sample to start, on any engine, kills its engine actor's
    process (``os._exit``) — once: the file ``marker`` records that it happened. For deterministic
    crash tests: the crash lands while that sample is in flight, however fast the machine."""
    return directive_problem(answers, lengths, code=False) + f"crash_once={marker};"


def fault_once_problem(fault: str, marker: str, answers: Sequence[str], lengths: Sequence[int] = (40,)) -> str:
    """A ``directive_problem`` whose first sample to start, on any engine, breaks that engine —
    once (the file ``marker`` records it): ``dead`` makes it report every request as
    ``engine_dead`` from then on, ``hang`` makes it stop producing tokens for every request,
    without failing (only the coordinator's watchdog notices). Both last until the actor restarts."""
    if fault not in ("dead", "hang"):
        raise ValueError(f"unknown fault {fault!r}")
    return directive_problem(answers, lengths, code=False) + f"{fault}_once={marker};"


class ScriptedFault(Exception):
    """Raised by the script to break the scripted engine (``fault_once_problem``)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _first_time(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _crash_once(marker: str) -> None:
    if _first_time(marker):
        os._exit(1)


@dataclass
class ScriptedEngineConfig:
    script: Script = directive_script
    tokens_per_s: float = 2000.0
    tokens_per_delta: int = 8
    concurrency: int = 16


class ScriptedEngine:
    """TEST ENGINE: emits ``script(text, seed)`` token by token, then EOS."""

    def __init__(self, config: ScriptedEngineConfig) -> None:
        self.config = config
        self.codec = CharCodec()
        self._cancelled: set[str] = set()
        self._active: set[str] = set()
        self._fault: str | None = None
        """``dead`` or ``hang`` once a ``fault_once_problem`` broke this engine."""
        self.counters = {"tokens_generated": 0, "requests_started": 0,
                         "requests_finished": 0, "requests_cancelled": 0}

    async def start(self) -> None:
        return None

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        self.counters["requests_started"] += 1
        self._active.add(request.request_id)
        try:
            text = self.codec.decode(request.prompt_ids)
            try:
                script = self.config.script(text, request) if self._fault is None else ""
            except ScriptedFault as fault:
                self._fault = fault.kind
                script = ""
            if self._fault == "dead":
                yield Delta(finish_reason="error", error="scripted engine: dead", error_kind="engine_dead")
                return
            planned = self.codec.encode(script) + list(self.codec.eos_token_ids)
            stops = set(request.stop_token_ids) | set(self.codec.eos_token_ids)
            step = self.config.tokens_per_delta
            emitted = 0
            while True:
                if request.request_id in self._cancelled:
                    self.counters["requests_cancelled"] += 1
                    yield Delta(finish_reason="cancelled")
                    return
                while self._fault == "hang":  # a hung engine: no tokens, no error, cancels ignored
                    await asyncio.sleep(3600)
                if self._fault == "dead":  # every request in flight fails with it
                    yield Delta(finish_reason="error", error="scripted engine: dead", error_kind="engine_dead")
                    return
                chunk = planned[emitted: emitted + step][: request.max_tokens - emitted]
                hit = next((k for k, t in enumerate(chunk) if t in stops), None)
                if hit is not None:
                    chunk = chunk[: hit + 1]
                await asyncio.sleep(len(chunk) / self.config.tokens_per_s)
                emitted += len(chunk)
                self.counters["tokens_generated"] += len(chunk)
                if hit is not None:
                    self.counters["requests_finished"] += 1
                    yield Delta(token_ids=chunk, finish_reason="stop", stop=chunk[-1])
                    return
                if emitted >= request.max_tokens or emitted >= len(planned):
                    self.counters["requests_finished"] += 1
                    yield Delta(token_ids=chunk, finish_reason="length")
                    return
                yield Delta(token_ids=chunk)
        finally:
            self._active.discard(request.request_id)
            self._cancelled.discard(request.request_id)

    async def cancel(self, request_id: str) -> None:
        if request_id in self._active:
            self._cancelled.add(request_id)

    def max_concurrency(self) -> int:
        return self.config.concurrency

    def stats(self) -> dict[str, float]:
        return {**self.counters, "active": len(self._active)}

    async def close(self) -> None:
        return None

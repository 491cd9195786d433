"""`LibraryEngine`, the skeleton under the vllm and trtllm backends, with a scripted library:
each request's handle replays a list of outputs the test chose, and the calls are recorded."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from raysolve.core.protocols import Delta, GenerationRequest
from raysolve.engines.adapter import LibraryEngine, Output


@dataclass
class Config:
    room: int = 100


class Handle:
    """Replays ``outputs`` (tuples as `Output`, or an exception to raise)."""

    def __init__(self, outputs: list[Any]) -> None:
        self.outputs = list(outputs)

    def __aiter__(self) -> "Handle":
        return self

    async def __anext__(self) -> Any:
        await asyncio.sleep(0)
        if not self.outputs:
            raise StopAsyncIteration
        out = self.outputs.pop(0)
        if isinstance(out, Exception):
            raise out
        return out


class Scripted(LibraryEngine[Config]):
    backend = "lib"
    config_class = Config
    room_name = "room"
    abort_reason = "abort"

    def __init__(self, script: dict[str, list[Any] | Exception]) -> None:
        super().__init__(Config())
        self.script = script
        self.submitted: list[tuple[str, int]] = []
        self.aborts: list[str] = []

    async def _load(self) -> None:
        self.llm = object()

    def _shutdown(self, llm: Any) -> None:
        pass

    def _room(self) -> int:
        return self.config.room

    def _submit(self, request: GenerationRequest, max_tokens: int) -> Handle:
        outputs = self.script[request.request_id]
        if isinstance(outputs, Exception):
            raise outputs
        self.submitted.append((request.request_id, max_tokens))
        return Handle(outputs)

    def _read(self, output: Any) -> Output:
        return output

    def _stop(self, request: GenerationRequest, new: list[int], stop_reason: Any) -> tuple[list[int], int | None]:
        return new, stop_reason

    async def _abort(self, request_id: str, handle: Any) -> None:
        self.aborts.append(request_id)
        handle.outputs[:] = [([], "abort", None)]


def req(rid: str, max_tokens: int = 10, prompt: tuple[int, ...] = (1, 2)) -> GenerationRequest:
    return GenerationRequest(rid, prompt, max_tokens, seed=1)


async def collect(engine: LibraryEngine, rid: str, **kw: Any) -> list[Delta]:
    return [d async for d in engine.generate(req(rid, **kw))]


def test_outputs_become_deltas_and_finish_reasons_map():
    engine = Scripted({
        "ok": [([5], None, None), ([], None, None), ([6, 7], "stop", 7)],
        "len": [([5, 6], "length", None)],
        "odd": [([5], "timeout", None)],
        "unasked": [([5], "abort", None)],
        "ended": [([5], None, None)],
    })

    async def go():
        await engine.start()
        return {rid: await collect(engine, rid) for rid in engine.script}

    out = asyncio.run(go())
    assert out["ok"] == [Delta([5]), Delta([6, 7], "stop", stop=7)]  # an empty update is no delta
    assert out["len"] == [Delta([5, 6], "length")]
    assert out["odd"][-1].finish_reason == "error" and "'timeout'" in out["odd"][-1].error
    assert out["unasked"][-1] == Delta([5], "error", error="lib aborted the request")  # we did not cancel it
    assert out["ended"][-1] == Delta(finish_reason="cancelled")  # a stream with no final output
    stats = engine.stats()
    assert stats["tokens_generated"] == 3 + 2 + 1 + 1 + 1 and stats["requests_started"] == 5
    assert stats["requests_finished"] == 2 and stats["requests_failed"] == 2 and stats["active"] == 0


def test_library_errors_become_error_deltas():
    engine = Scripted({"rejected": ValueError("bad params"), "died": [([5], None, None), RuntimeError("dead")]})

    async def go():
        await engine.start()
        return await collect(engine, "rejected"), await collect(engine, "died")

    rejected, died = asyncio.run(go())
    assert rejected == [Delta(finish_reason="error", error="lib: ValueError: bad params")]
    assert died == [Delta([5]), Delta(finish_reason="error", error="lib: RuntimeError: dead")]
    assert engine.stats()["requests_failed"] == 2 and engine.stats()["requests_started"] == 1


def test_preflight_clamps_and_refuses_before_the_library():
    engine = Scripted({"fit": [([5], "length", None)]})

    async def go():
        not_started = await collect(engine, "fit")
        await engine.start()
        return not_started, await collect(engine, "fit", max_tokens=500), await collect(engine, "full", prompt=(1,) * 100)

    not_started, fit, full = asyncio.run(go())
    assert not_started[-1].finish_reason == "error" and "not started" in not_started[-1].error
    assert engine.submitted == [("fit", 98)]  # clamped to the room; "full" never reached the library
    assert full[-1].finish_reason == "error" and "room (100 tokens)" in full[-1].error


def test_cancels_abort_once_and_a_consumer_that_leaves_aborts():
    forever = [([5], None, None)] * 1000
    engine = Scripted({"c": list(forever), "gone": list(forever), "early": list(forever)})

    async def go():
        await engine.start()
        stream = engine.generate(req("c"))
        first = await stream.__anext__()
        await engine.cancel("c")
        await engine.cancel("c")  # a second cancel is a no-op
        rest = [d async for d in stream]
        gone = engine.generate(req("gone"))
        await gone.__anext__()
        await gone.aclose()
        await engine.cancel("early")
        return first, rest, await collect(engine, "early")

    first, rest, early = asyncio.run(go())
    assert first == Delta([5]) and rest[-1] == Delta(finish_reason="cancelled")
    assert engine.aborts == ["c", "gone"]  # once each; "early" never reached the library
    assert early == [Delta(finish_reason="cancelled")] and [rid for rid, _ in engine.submitted] == ["c", "gone"]
    assert engine.stats()["requests_cancelled"] == 3 and engine.stats()["active"] == 0

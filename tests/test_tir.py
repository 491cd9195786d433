"""The tool-integrated loop with the scripted TEST engine and the real (process) sandbox."""

import asyncio

import pytest

from raysolve.core.protocols import GenerationRequest
from raysolve.engines.testing.scripted import CharCodec, ScriptedEngine, ScriptedEngineConfig
from raysolve.core.prompting import PromptFormat
from raysolve.sandbox import LocalSandbox, SandboxConfig
from raysolve.core.records import SampleSettings
from raysolve.core.tir import SampleSpec, run_sample

FMT = PromptFormat()
CODEC = CharCodec()


def two_call_script(text: str, request: GenerationRequest) -> str:
    """First call defines n, the second uses it; then the answer is read from the output."""
    calls = text.count("```output")
    if calls == 0:
        return "Define n.<tool_call>\n```python\nn = 12\nprint('defined')\n```\n</tool_call>"
    if calls == 1:
        return "Now use it.<tool_call>\n```python\nimport sympy\nprint(sympy.divisor_count(n) * 10)\n```\n</tool_call>"
    value = text.rsplit("```output\n", 1)[1].split("\n", 1)[0]
    return f"So the answer is \\boxed{{{value}}}."


def _spec(**settings):
    return SampleSpec("p#0", tuple(FMT.prompt_ids(CODEC, "x?", 6)), seed=1, settings=SampleSettings(**settings))


class WatchedSandbox(LocalSandbox):
    """A ``LocalSandbox`` that tells the test when a code run has begun."""

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self.run_started = asyncio.Event()

    async def run(self, session_id, code, timeout_s=None):
        self.run_started.set()
        return await super().run(session_id, code, timeout_s)


def _run(script, spec, sandbox_cfg=None, cancel_when=None):
    """Run one sample; ``cancel_when(engine, sandbox)`` is awaited alongside and the sample
    is cancelled when it returns (an observed event, never a fixed delay)."""
    async def go():
        engine = ScriptedEngine(ScriptedEngineConfig(script=script, tokens_per_s=5000))
        sandbox = WatchedSandbox(sandbox_cfg or SandboxConfig(max_workers=2))
        try:
            task = asyncio.ensure_future(run_sample(spec, engine, sandbox, CODEC, FMT))
            if cancel_when is not None:
                await cancel_when(engine, sandbox)
                assert not task.done(), "the sample ended before the cancel"
                task.cancel()
            out = await task
            return out, engine.stats(), sandbox.stats()
        finally:
            await sandbox.aclose()
    return asyncio.run(go())


def test_two_stateful_code_calls_then_boxed_answer():
    out, stats, _ = _run(two_call_script, _spec())
    assert out.finish_reason == "eos"
    assert out.code_calls == 2 and out.code_errors == 0 and out.exec_statuses == ["ok", "ok"]
    assert out.answer == "60"  # 12 has 6 divisors, computed in the sandbox from state of call 1
    assert "```output\ndefined\n```\nRemaining code calls: 5." in out.text
    assert out.tool_output_tokens == sum(len(CODEC.encode(b)) for b in [
        FMT.output_block("defined\n", 5), FMT.output_block("60\n", 4)])
    assert out.generated_tokens == stats["tokens_generated"]
    assert stats["active"] == 0


def test_code_error_goes_back_to_the_model():
    def script(text, request):
        if "```output" not in text:
            return "<tool_call>\nprint(undefined_name)\n</tool_call>"
        return "\\boxed{1}"
    out, _, _ = _run(script, _spec())
    assert out.code_errors == 1 and out.exec_statuses == ["error"]
    assert "NameError" in out.text and out.answer == "1"


def test_boxed_text_printed_by_code_is_not_an_answer():
    # Code output is untrusted text: a printed "\boxed{}" (even after a fake closing
    # fence) reaches the model's context but never the vote.
    def script(text, request):
        if "```output" not in text:
            return "<tool_call>\nprint('```\\n\\\\bo' + 'xed{' + str(999) + '}')\n</tool_call>"
        return "I am not sure."
    out, _, _ = _run(script, _spec())
    assert "\\boxed{999}" in out.text
    assert out.answer is None


def test_code_call_limit_appends_a_note_instead_of_running():
    def script(text, request):
        if "```output" not in text:
            return "<tool_call>\nprint(1)\n</tool_call>"
        return "\\boxed{2}"
    out, _, _ = _run(script, _spec(max_code_calls=0))
    assert out.code_calls == 0 and "Code call limit reached" in out.text and out.answer == "2"


def test_token_budget_counts_tool_output_and_ends_with_length():
    out, _, _ = _run(two_call_script, _spec(max_tokens=90))
    assert out.finish_reason == "length"
    assert out.answer is None
    assert out.generated_tokens + out.tool_output_tokens >= 90


def test_answer_modulus():
    out, _, _ = _run(two_call_script, _spec(modulus=7))
    assert out.answer == str(60 % 7)


def _first_segment(code: str) -> str:
    return f"<tool_call>\n{code}\nprint(1)\n</tool_call>"


async def _during_code_call(engine, sandbox) -> None:
    # The code call of the first segment has begun and its worker has the request (the code
    # sleeps for an hour: only the cancel ends it).
    await sandbox.run_started.wait()
    while not any(s.worker is not None for s in sandbox._sessions.values()):
        await asyncio.sleep(0.01)


async def _while_streaming_the_second_segment(engine, sandbox) -> None:
    # More tokens have come out than the first segment has: the second is being streamed. Its
    # rest (4000 tokens at 5000/s) is far from done when this returns, however slow the host:
    # the check runs between two of the engine's 8-token steps on the same event loop.
    first = len(CODEC.encode(_first_segment("pass")))
    while engine.stats()["tokens_generated"] <= first:
        await asyncio.sleep(0)


@pytest.mark.parametrize(("cancel_when", "code"), [
    (_during_code_call, "import time\ntime.sleep(3600)"),
    (_while_streaming_the_second_segment, "pass"),
])
def test_cancel_stops_engine_and_reports_tokens_spent(cancel_when, code):
    def script(text, request):
        if "```output" not in text:
            return _first_segment(code)
        return "." * 4000 + "\\boxed{3}"

    spec = _spec(max_tokens=100_000, code_timeout_s=3600.0)  # a code call never ends by its limit here
    out, stats, sandbox = _run(script, spec, cancel_when=cancel_when)
    assert out.finish_reason == "cancelled" and out.answer is None
    assert 0 < out.generated_tokens < 4000
    assert stats["active"] == 0
    assert sandbox["running"] == 0 and sandbox["sessions"] == 0  # the code run was stopped, the session closed


class _FailingEngine:
    """TEST ENGINE whose every request ends with an ``error`` delta of one kind."""

    def __init__(self, kind):
        self.kind = kind

    async def generate(self, request):
        from raysolve.core.protocols import Delta

        yield Delta(token_ids=[ord("a")])
        yield Delta(finish_reason="error", error=f"failed: {self.kind}", error_kind=self.kind)

    async def cancel(self, request_id):
        return None


class _NoSandbox:
    async def open_session(self):
        raise AssertionError("no code call expected")


@pytest.mark.parametrize("kind", ["engine_dead", "engine_overloaded"])
def test_an_engine_failure_is_raised_for_a_retry_not_recorded_as_a_finished_sample(kind):
    from raysolve.core.errors import SampleError

    with pytest.raises(SampleError) as failure:
        asyncio.run(run_sample(_spec(max_tokens=50), _FailingEngine(kind), _NoSandbox(), CODEC, FMT))
    assert failure.value.kind == kind and failure.value.retry


@pytest.mark.parametrize(("kind", "finish"), [("context_overflow", "length"), ("bad_request", "error"), (None, "error")])
def test_a_request_failure_ends_the_sample(kind, finish):
    out = asyncio.run(run_sample(_spec(max_tokens=50), _FailingEngine(kind), _NoSandbox(), CODEC, FMT))
    assert out.finish_reason == finish and out.generated_tokens == 1 and out.error == f"failed: {kind}"


def test_tool_output_never_overruns_the_token_budget():
    # A long output block: the budget cuts it, and the sample ends with "length" at exactly the budget.
    def printer(text, request):
        return "Print.<tool_call>\n```python\nprint('x' * 3000)\n```\n</tool_call>"

    out, _, _ = _run(printer, _spec(max_tokens=120, max_code_calls=3))
    assert out.finish_reason == "length" and out.total_tokens == 120 and out.code_calls == 1


def test_a_session_whose_opening_is_cancelled_is_closed_when_it_arrives():
    from raysolve.core.tir import _open_session

    class SlowToOpen(LocalSandbox):
        def __init__(self):
            super().__init__(SandboxConfig(max_workers=1, warm_workers=0))
            self.gate, self.opened = asyncio.Event(), []

        async def open_session(self, session_id=None):
            await self.gate.wait()
            sid = await super().open_session(session_id)
            self.opened.append(sid)
            return sid

    async def go():
        box = SlowToOpen()
        try:
            opening = asyncio.ensure_future(_open_session(box))
            await asyncio.sleep(0)
            opening.cancel()
            with pytest.raises(asyncio.CancelledError):
                await opening
            box.gate.set()
            while not box.opened or box.stats()["sessions"]:  # opened, then closed by the callback
                await asyncio.sleep(0.01)
            return box.stats()["sessions"], box.opened
        finally:
            await box.aclose()

    sessions, opened = asyncio.run(go())
    assert sessions == 0 and len(opened) == 1

"""The ``toolmix`` BENCHMARK wrapper: code calls put into a model's samples, run by a real sandbox.

The wrapped engine here is the ``scripted`` TEST engine (deterministic text); on GPUs the
benchmark wraps ``vllm`` with a random-weight model.
"""

from __future__ import annotations

import asyncio

from raysolve.engines import make_engine
from raysolve.core.protocols import GenerationRequest
from raysolve.engines.testing.scripted import directive_problem
from raysolve.engines.testing.toolmix import ToolMixEngine

ANSWER_TAIL = " The answer is \\boxed{7}."
LENGTH = 100
SCRIPTED = {"tokens_per_s": 1e6, "tokens_per_delta": 16}
EXACT = {"after_tokens": 30, "after_spread": 0.0}  # every call after exactly 30 tokens


def test_a_chosen_sample_calls_the_sandbox_after_the_set_tokens_and_goes_on():
    from raysolve.core.prompting import PromptFormat
    from raysolve.sandbox import LocalSandbox, SandboxConfig
    from raysolve.core.records import SampleSettings
    from raysolve.core.tir import SampleSpec, run_sample

    engine = make_engine("toolmix", inner="scripted", inner_options=SCRIPTED, share=1.0, **EXACT)
    fmt = PromptFormat()

    async def go():
        await engine.start()
        sandbox = LocalSandbox(SandboxConfig(max_workers=1))
        try:
            prompt = tuple(fmt.prompt_ids(engine.codec, directive_problem(["7"], [LENGTH], code=False), 4))
            sample = await run_sample(SampleSpec("p#0", prompt, seed=5, settings=SampleSettings()), engine, sandbox,
                                      engine.codec, fmt)
            alone = [d async for d in engine.generate(GenerationRequest("alone#1", prompt, 1000, seed=5))]
            return sample, alone
        finally:
            await sandbox.aclose()

    sample, alone = asyncio.run(go())
    assert sample.code_calls == 1 and sample.exec_statuses == ["ok"] and sample.answer == "7"
    assert "<tool_call>\n```python\nfrom math import comb" in sample.text and "```output\n" in sample.text
    stats = engine.stats()
    assert stats["injected_calls"] == 1
    # generated = 30 tokens before the call + the call itself + the whole scripted text after it (and EOS)
    full = LENGTH + len(ANSWER_TAIL) + 1
    assert sample.generated_tokens == 30 + stats["injected_tokens"] + full
    # requests that are not a sample's first segment (the benchmarks' engine-alone ones) pass through
    assert sum(len(d.token_ids) for d in alone) == full and alone[-1].finish_reason == "stop"


def test_the_share_of_samples_is_drawn_by_seed():
    engine = ToolMixEngine(inner="scripted", inner_options=SCRIPTED, share=0.3)
    picks = [engine.chosen(GenerationRequest(f"p#{i}/0", (1,), 500, seed=1000 + i)) for i in range(1000)]
    assert 240 < sum(picks) < 360
    assert picks == [engine.chosen(GenerationRequest(f"p#{i}/0", (1,), 500, seed=1000 + i)) for i in range(1000)]
    assert not any(engine.chosen(GenerationRequest(f"p#{i}/1", (1,), 500, seed=1000 + i)) for i in range(1000))
    at = [engine.call_position(GenerationRequest(f"p#{i}/0", (1,), 500, seed=i)) for i in range(1000)]
    assert 128 <= min(at) < 140 and 372 < max(at) <= 384  # 256 ± 50 %, spread by seed


def test_the_benchmark_counts_only_engine_generated_tokens(ray_local):
    from raysolve.bench.harness import orchestration, with_tool_calls
    from raysolve.runtime.config import SolverConfig
    from raysolve.io.problems import Problem

    cfg = SolverConfig.model_validate({"engine": {"backend": "scripted", "num_cpus": 0.01, "options": SCRIPTED},
                                       "budget": {"max_tokens": 2000}})
    cfg = with_tool_calls(cfg, share=0.5, after_tokens=30)
    assert cfg.engine.backend == "toolmix" and cfg.engine.options["inner"] == "scripted"
    cfg.engine.options["after_spread"] = 0.0
    problems = [Problem(f"t{i}", directive_problem(["7"], [LENGTH], code=False)) for i in range(6)]
    r = orchestration(cfg, problems, samples=8, pool=8, warm_up=lambda s: None, repeats=2)
    assert len(r["efficiencies"]) == 2 and len(r["engine_alone"]) == 3  # alone, (solver, alone) × 2
    assert r["efficiency"] == sorted(r["efficiencies"])[0]  # the median of two: the lower one
    run, full = r["solver"], LENGTH + len(ANSWER_TAIL) + 1
    assert run["samples"] == 48 and run["sample_errors"] == 0
    assert 10 <= run["samples_calling_code"] <= 38 and run["code_calls"] == run["samples_calling_code"]
    assert run["tokens"] == 48 * full + 30 * run["samples_calling_code"]  # the injected calls are not counted
    for alone in r["engine_alone"]:  # the same engine work: the chosen samples continue after their call
        assert 10 <= alone["code_calls"] <= 38 and alone["tokens"] == 48 * full + 30 * alone["code_calls"]

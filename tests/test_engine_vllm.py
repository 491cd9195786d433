"""The ``vllm`` backend's logic on CPU, against ``tests/vllm_double.py`` (a TEST DOUBLE of vLLM's API).

The tokenizer, the tool loop and the process sandbox are real; only vLLM's engine is
simulated. The same backend on real GPUs: ``jobs/gpu_smoke.py`` (results/gpu-smoke-*).
"""

import asyncio
import importlib.util

import pytest

import vllm_double
from raysolve.engines import make_engine
from raysolve.core.protocols import GenerationRequest
from raysolve.engines.common import visible_gpu_count
from raysolve.engines.vllm import VLLMEngine, VLLMEngineConfig, engine_kwargs, sampling_kwargs
from raysolve.core.prompting import HFTokenCodec, PromptFormat
from raysolve.sandbox import LocalSandbox, SandboxConfig
from raysolve.core.records import SampleSettings
from raysolve.core.tir import SampleSpec, run_sample

FMT = PromptFormat()


def req(rid="r", prompt=(5, 6, 7), max_tokens=8, seed=1, **kw):
    return GenerationRequest(rid, tuple(prompt), max_tokens, seed, **kw)


async def drain(engine, request):
    deltas = [d async for d in engine.generate(request)]
    return [t for d in deltas for t in d.token_ids], deltas[-1]


async def until(condition, timeout_s=60.0):
    """Yield to the event loop until ``condition()`` holds; the deadline is only a safety net."""
    async def poll():
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout_s)


def started(monkeypatch, script=None, step_s=0.001, model="random-tiny", **options):
    double = vllm_double.install(monkeypatch, script, step_s)
    engine = VLLMEngine(VLLMEngineConfig(model=model, **options))
    return engine, double


# ---------------------------------------------------------------- pure request building


def test_engine_args_use_every_gpu_the_actor_holds_and_mp_workers_for_tp():
    cfg = VLLMEngineConfig(model="m", engine_args={"kv_cache_dtype": "fp8"})
    two = engine_kwargs(cfg, "/models/m", gpus=2)
    assert two["tensor_parallel_size"] == 2 and two["distributed_executor_backend"] == "mp"
    assert two["enable_prefix_caching"] is True and two["generation_config"] == "vllm"
    assert two["tokenizer"] == "/models/m" and two["kv_cache_dtype"] == "fp8"
    one = engine_kwargs(cfg, "/models/m", gpus=1)
    assert one["tensor_parallel_size"] == 1 and "distributed_executor_backend" not in one
    with pytest.raises(ValueError, match="sees 1 GPU"):
        engine_kwargs(VLLMEngineConfig(tensor_parallel_size=2), "m", gpus=1)


def test_visible_gpu_count_reads_what_ray_set():
    assert visible_gpu_count({"CUDA_VISIBLE_DEVICES": "2,3"}) == 2
    assert visible_gpu_count({"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert visible_gpu_count({"CUDA_VISIBLE_DEVICES": "5"}) == 1


def test_sampling_params_per_segment():
    r = req(max_tokens=99, seed=2**62 + 5, stop_token_ids=(11,), temperature=0.6, top_p=0.9, top_k=20)
    kw = sampling_kwargs(r, 50)
    assert kw == {"n": 1, "max_tokens": 50, "seed": 2**62 + 5, "detokenize": False, "skip_special_tokens": False,
                  "temperature": 0.6, "top_p": 0.9, "top_k": 20, "stop_token_ids": [11]}
    assert sampling_kwargs(req(greedy=True), 8)["temperature"] == 0.0
    forced = sampling_kwargs(r, 50, forced_length=True)
    assert forced["ignore_eos"] is True and forced["stop_token_ids"] == []


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_is_a_clear_error():
    engine = make_engine("vllm", model="tiny")
    with pytest.raises(ImportError, match=r"raysolve\[vllm\]"):
        asyncio.run(engine.start())


# ---------------------------------------------------------------- streaming, stops, seeds


def test_streams_token_ids_and_maps_finish_reasons(monkeypatch):
    def script(prompt, params):
        return {1: [20, 21, 22, 23, 24, 25], 2: [30, 31, 2, 33], 3: [40, 41, 42, 43]}[params.seed]

    engine, double = started(monkeypatch, script)

    async def go():
        await engine.start()
        out = {}
        out["length"] = await drain(engine, req("a", seed=1, max_tokens=4))
        out["eos"] = await drain(engine, req("b", seed=2))
        out["stop"] = await drain(engine, req("c", seed=3, stop_token_ids=(42,)))
        await engine.close()
        return out

    out = asyncio.run(go())
    assert out["length"][0] == [20, 21, 22, 23] and out["length"][1].finish_reason == "length"
    assert out["eos"][0] == [30, 31, 2] and out["eos"][1].finish_reason == "stop" and out["eos"][1].stop == 2
    assert out["stop"][0] == [40, 41, 42] and out["stop"][1].stop == 42
    prompt, params, rid = double.instances[0].requests[0]
    assert prompt == [5, 6, 7] and rid == "a"
    assert params.output_kind is vllm_double.RequestOutputKind.DELTA and params.detokenize is False
    assert engine.stats()["tokens_generated"] == 4 + 3 + 3 and engine.stats()["requests_finished"] == 3
    assert double.instances[0].closed


def test_each_request_carries_its_own_seed_and_sampling_options(monkeypatch):
    """What vLLM is asked for; that vLLM honours a seed is checked on GPUs (jobs/gpu_smoke.py)."""
    engine, double = started(monkeypatch, lambda prompt, params: [1000 + params.seed] * 12)

    async def go():
        await engine.start()
        runs = await asyncio.gather(*(drain(engine, req(f"s{i}", seed=100 + i, max_tokens=12, top_k=5))
                                      for i in range(4)))
        await drain(engine, req("again", seed=100, max_tokens=12, top_k=5))
        return runs

    runs = asyncio.run(go())
    sent = {rid: params for _, params, rid in double.instances[0].requests}
    assert {rid: p.seed for rid, p in sent.items()} == {"s0": 100, "s1": 101, "s2": 102, "s3": 103, "again": 100}
    for p in sent.values():
        assert (p.n, p.temperature, p.top_p, p.top_k, p.max_tokens) == (1, 0.7, 0.95, 5, 12)
        assert p.output_kind is vllm_double.RequestOutputKind.DELTA and p.detokenize is False
    for i, (tokens, last) in enumerate(runs):  # each stream carries its own request's tokens
        assert tokens == [1100 + i] * 12 and last.finish_reason == "length"


def test_forced_length_ignores_eos_and_stop_tokens(monkeypatch):
    engine, _ = started(monkeypatch, lambda p, s: [2, 9, 2, 9, 2, 9], forced_length=True)

    async def go():
        await engine.start()
        return await drain(engine, req(max_tokens=6, stop_token_ids=(9,)))

    tokens, last = asyncio.run(go())
    assert tokens == [2, 9, 2, 9, 2, 9] and last.finish_reason == "length"


def test_bad_requests_are_error_deltas_and_max_tokens_is_clamped(monkeypatch):
    engine, double = started(monkeypatch, max_model_len=20)

    async def go():
        await engine.start()
        zero_t = await drain(engine, req("t", temperature=0.0))
        too_long = await drain(engine, req("l", prompt=range(25)))
        clamped = await drain(engine, req("c", prompt=range(15), max_tokens=100))
        return zero_t, too_long, clamped

    zero_t, too_long, clamped = asyncio.run(go())
    assert zero_t[1].finish_reason == "error" and "greedy" in zero_t[1].error
    assert too_long[1].finish_reason == "error" and "max_model_len (20 tokens)" in too_long[1].error
    assert len(clamped[0]) == 5 and clamped[1].finish_reason == "length"
    assert double.instances[0].requests[0][1].max_tokens == 5


# ---------------------------------------------------------------- cancellation


def test_cancel_aborts_the_request_ends_the_stream_and_frees_its_blocks(monkeypatch):
    engine, double = started(monkeypatch, lambda p, s: list(range(10, 10_000)))

    async def go():
        await engine.start()
        runs = [asyncio.ensure_future(drain(engine, req(f"k{i}", max_tokens=5000, prompt=range(40)))) for i in range(4)]
        llm = double.instances[0]
        # Synchronise on the double's steps, not on time: a step in which all four produced a token.
        await until(lambda: len(llm.running) == 4 and all(r.produced for r in llm.running.values()))
        busy = await engine.cache_stats()
        await engine.cancel("k1")
        await engine.cancel("k2")
        reports = llm.reports
        await until(lambda: llm.reports > reports)  # a step after the aborts
        after = await engine.cache_stats()
        for rid in ("k0", "k3"):  # no step can run between these two aborts
            await engine.cancel(rid)
        results = await asyncio.gather(*runs)
        stale = await engine.cache_stats()
        return busy, after, results, stale, await engine.cache_stats(fresh=True)

    busy, after, results, stale, idle = asyncio.run(go())
    assert busy["running"] == 4 and after["running"] == 2 and idle["running"] == 0
    assert stale["running"] == 2  # the last step's report: an engine left idle by aborts takes no steps
    assert idle["updates"] > stale["updates"]  # the probe request's step reported
    assert after["kv_cache_usage"] < busy["kv_cache_usage"] and idle["kv_cache_usage"] == 0
    assert all(last.finish_reason == "cancelled" for _, last in results)
    assert all(0 < len(tokens) < 5000 for tokens, _ in results)
    assert sorted(double.instances[0].aborted) == ["k0", "k1", "k2", "k3"]
    assert double.instances[0].requests[-1][2].startswith("raysolve-probe-")
    assert engine.stats()["requests_cancelled"] == 4 and engine.stats()["active"] == 0


def test_cancel_before_generate_never_reaches_vllm(monkeypatch):
    engine, double = started(monkeypatch)

    async def go():
        await engine.start()
        await engine.cancel("early")
        return await drain(engine, req("early"))

    tokens, last = asyncio.run(go())
    assert tokens == [] and last.finish_reason == "cancelled"
    assert double.instances[0].requests == []


def test_a_consumer_that_stops_listening_aborts_its_request(monkeypatch):
    engine, double = started(monkeypatch, lambda p, s: list(range(10, 1000)))

    async def go():
        await engine.start()
        stream = engine.generate(req("gone", max_tokens=900))
        await stream.__anext__()
        await stream.aclose()  # aborts before it returns
        return await engine.cache_stats(fresh=True)

    stats = asyncio.run(go())
    assert double.instances[0].aborted == ["gone"] and stats["running"] == 0
    assert engine.stats()["requests_cancelled"] == 1


# ---------------------------------------------------------------- the tool loop through the backend


def test_tool_loop_runs_code_and_votes_through_the_vllm_backend(monkeypatch):
    from transformers import AutoTokenizer

    from raysolve.tiny import MODEL_DIR

    codec = HFTokenCodec(AutoTokenizer.from_pretrained(str(MODEL_DIR)), FMT.code_end)

    def script(prompt, params):
        text = codec.decode(prompt)
        if "```output" not in text:
            reply = "<tool_call>\n```python\nprint(6 * 7)\n```\n</tool_call>"
        else:
            value = text.rsplit("```output\n", 1)[1].split("\n", 1)[0]
            reply = f"The answer is \\boxed{{{value}}}.<|im_end|>"
        return codec.encode(reply)

    engine, double = started(monkeypatch, script, model="tiny")

    async def go():
        await engine.start()
        sandbox = LocalSandbox(SandboxConfig(max_workers=1))
        try:
            prompt = tuple(FMT.prompt_ids(codec, "What is 6 times 7?", 4))
            spec = SampleSpec("p#0", prompt, seed=3, settings=SampleSettings())
            return await run_sample(spec, engine, sandbox, codec, FMT)
        finally:
            await sandbox.aclose()

    out = asyncio.run(go())
    assert out.answer == "42" and out.code_calls == 1 and out.finish_reason == "eos"
    first, second = double.instances[0].requests
    assert first[1].stop_token_ids == [codec.code_end_token_id]
    assert second[0][: len(first[0])] == first[0]  # the second segment extends the first: ids, not text

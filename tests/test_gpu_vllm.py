"""The ``vllm`` backend on a real GPU with the shipped tiny model. Skipped without CUDA and vLLM.

Run on a GPU machine: ``python -m pytest -m gpu tests/test_gpu_vllm.py``. The full GPU
smoke test (placement, abort, throughput, tp=2) is ``jobs/gpu_smoke.py``.
"""

import asyncio
import importlib.util

import pytest

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM"),
]


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.fixture(scope="module")
def engine():
    if not _cuda():
        pytest.skip("needs a CUDA GPU")
    from raysolve.engines.vllm import VLLMEngine, VLLMEngineConfig

    eng = VLLMEngine(VLLMEngineConfig(model="tiny", tensor_parallel_size=1, gpu_memory_utilization=0.3, max_num_seqs=64))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(eng.start())
    yield eng, loop
    loop.run_until_complete(eng.close())
    loop.close()


def _prompt(eng):
    from raysolve.core.prompting import HFTokenCodec, PromptFormat

    fmt = PromptFormat()
    codec = HFTokenCodec(eng.tokenizer, fmt.code_end)
    return codec, tuple(fmt.prompt_ids(codec, "What is the remainder when 2^10 is divided by 7?", 6))


def test_seeds_differ_and_stop_token_ends_a_segment(engine):
    from raysolve.core.protocols import GenerationRequest

    eng, loop = engine
    codec, prompt = _prompt(eng)

    async def run(seed):
        req = GenerationRequest(f"s{seed}", prompt, 200, seed, stop_token_ids=(codec.code_end_token_id,))
        deltas = [d async for d in eng.generate(req)]
        return [t for d in deltas for t in d.token_ids], deltas[-1]

    async def all_seeds():
        return await asyncio.gather(*(run(s) for s in range(8)))

    outs = loop.run_until_complete(all_seeds())
    assert len({tuple(t) for t, _ in outs}) > 1
    for tokens, last in outs:
        assert last.finish_reason in ("stop", "length")
        if last.finish_reason == "stop":
            assert tokens[-1] == last.stop


def test_abort_frees_the_scheduler(engine):
    from raysolve.core.protocols import GenerationRequest

    eng, loop = engine
    _, prompt = _prompt(eng)

    async def go():
        async def consume(r):
            return [d async for d in eng.generate(r)][-1].finish_reason

        reqs = [GenerationRequest(f"a{i}", prompt, 3900, i) for i in range(16)]
        eng.config.forced_length = True
        try:
            tasks = [asyncio.ensure_future(consume(r)) for r in reqs]
            for _ in range(5000):  # until the scheduler reports all 16 running (its reports come per step)
                busy = await eng.cache_stats()
                if busy["running"] == 16:
                    break
                await asyncio.sleep(0.001)
            for r in reqs:
                await eng.cancel(r.request_id)
            reasons = await asyncio.gather(*tasks)
            await asyncio.sleep(0.1)
            return busy, reasons, await eng.cache_stats(fresh=True)
        finally:
            eng.config.forced_length = False

    busy, reasons, idle = loop.run_until_complete(go())
    assert set(reasons) == {"cancelled"}, reasons
    assert busy["running"] == 16, busy
    assert idle["running"] == 0 and idle["kv_cache_usage"] < busy["kv_cache_usage"]

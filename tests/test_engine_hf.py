"""The ``hf`` engine (transformers' continuous batching) on CPU, with the tiny random model."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from raysolve.engines import make_engine  # noqa: E402
from raysolve.core.protocols import Delta, Engine, GenerationRequest  # noqa: E402
from raysolve.engines.hf import HFEngine, HFEngineConfig  # noqa: E402
from raysolve.engines.hf.engine import sampling_kwargs  # noqa: E402
from raysolve.engines.hf.sampler import SeededSampling  # noqa: E402
from raysolve.engines.testing.random_model import CODE_BEGIN, CODE_END, EOS, IM_START, PAD, ensure_random_model  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return ensure_random_model(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="module")
def engine(model_dir):
    eng = HFEngine(HFEngineConfig(model=str(model_dir), max_concurrency=16, max_model_len=1024, block_size=16))
    asyncio.run(eng.start())
    yield eng
    asyncio.run(eng.close())


@pytest.fixture(scope="module")
def prompt(engine):
    tok = engine.tokenizer
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Find the remainder when 2^100 is divided by 7."}],
        add_generation_prompt=True,
        tokenize=False,
    )
    return tuple(tok.encode(text, add_special_tokens=False))


def _req(rid: str, prompt, max_tokens: int, seed: int = 0, **kw) -> GenerationRequest:
    return GenerationRequest(request_id=rid, prompt_ids=tuple(prompt), max_tokens=max_tokens, seed=seed, **kw)


async def _collect(engine, request) -> tuple[list[int], list[Delta]]:
    deltas = [d async for d in engine.generate(request)]
    return [t for d in deltas for t in d.token_ids], deltas


def _run(engine, request):
    return asyncio.run(_collect(engine, request))


async def _wait_cache_released(engine, timeout: float = 60.0) -> dict:
    """Cache stats once no request holds blocks: the manager frees a cancelled request's blocks at its
    next step, after ``cancel`` returned. Returns at once when they are free; the deadline is a safety net."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await engine.cache_stats()
        if stats["requests_holding_blocks"] == 0 or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.01)


# ----------------------------------------------------------------------------------------- random model


def test_random_model_tokenizer_and_files(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert ensure_random_model(model_dir, seed=0) == model_dir  # idempotent
    tok = AutoTokenizer.from_pretrained(model_dir)
    for special in (PAD, IM_START, EOS, CODE_BEGIN, CODE_END):
        assert len(tok.encode(special, add_special_tokens=False)) == 1, special
    assert tok.eos_token == EOS and tok.pad_token == PAD
    text = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}], add_generation_prompt=True, tokenize=False
    )
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    code = "<tool_call>\nprint(2**100 % 7)\n</tool_call>"
    assert tok.decode(tok.encode(code, add_special_tokens=False)) == code
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.config.model_type == "qwen2"
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids(EOS)
    assert 2e5 < sum(p.numel() for p in model.parameters()) < 2e6
    assert model.config.vocab_size == len(tok)


def test_random_model_is_deterministic(model_dir, tmp_path):
    other = ensure_random_model(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (other / name).read_bytes() == (model_dir / name).read_bytes()
    with pytest.raises(FileExistsError):
        ensure_random_model(other, seed=1)  # never silently reuse a model built with another seed


# ----------------------------------------------------------------------------------------- registry


def test_registry_checks_names():  # that importing backends stays cheap: tests/test_engine_imports.py
    with pytest.raises(ValueError, match="unknown engine backend"):
        make_engine("nope")
    eng = make_engine("hf", model="random-tiny", max_concurrency=7)
    assert isinstance(eng, HFEngine) and isinstance(eng, Engine) and eng.max_concurrency() == 7


# ----------------------------------------------------------------------------------------- sampler


def _sampler_args(sampler, kwargs_and_indices):
    futures = [
        SimpleNamespace(
            has_new_token=True,
            state=SimpleNamespace(
                logit_processor_kwargs=kw, generated_tokens=[0] * i, initial_tokens=[], _true_initial_tokens=0
            ),
        )
        for kw, i in kwargs_and_indices
    ]
    storage = torch.zeros((sampler.ROWS, len(futures)), dtype=torch.int32)
    sampler.prepare_tensor_args(futures, storage)
    return storage


def test_sampler_matches_the_filtered_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    n = 20000

    def frequencies(**kw):
        sampler = SeededSampling()
        rows = [({"seed": s, "temperature": 1.0, "top_p": 1.0, "top_k": 0, **kw}, s % 7) for s in range(n)]
        args = _sampler_args(sampler, rows)
        picks = sampler.sample_scores(probs.log().expand(n, 4).clone(), args).argmax(-1)
        return torch.bincount(picks, minlength=4).float() / n

    assert torch.allclose(frequencies(), probs, atol=0.015)
    assert torch.allclose(frequencies(top_k=2), torch.tensor([0.625, 0.375, 0, 0]), atol=0.015)
    assert torch.allclose(frequencies(top_p=0.6), torch.tensor([0.625, 0.375, 0, 0]), atol=0.015)
    hot = torch.tensor([0.5, 0.3, 0.15, 0.05]).pow(0.5)
    assert torch.allclose(frequencies(temperature=2.0), hot / hot.sum(), atol=0.015)
    sampler = SeededSampling()
    args = _sampler_args(sampler, [({"seed": s, "greedy": True}, 0) for s in range(50)])
    assert (sampler.sample_scores(probs.log().expand(50, 4).clone(), args).argmax(-1) == 0).all()


def test_sampling_kwargs_carry_every_option_per_request():
    sampled = sampling_kwargs(_req("s", (1,), 5, seed=2**62 + 3, temperature=0.6, top_p=1.5, top_k=20))
    assert sampled == {"seed": 2**62 + 3, "greedy": False, "temperature": 0.6, "top_p": 1.0, "top_k": 20}
    assert sampling_kwargs(_req("g", (1,), 5, seed=4, greedy=True)) == {"seed": 4, "greedy": True}
    SeededSampling().check_kwargs(sampled)  # the sampler accepts exactly these


# ----------------------------------------------------------------------------------------- engine


def test_streams_deltas_then_length(engine, prompt):
    tokens, deltas = _run(engine, _req("len", prompt, 24, seed=11))
    assert len(deltas) >= 2  # streamed, not one final blob
    assert all(d.finish_reason is None for d in deltas[:-1])
    assert deltas[-1].finish_reason == "length" and deltas[-1].stop is None
    assert len(tokens) == 24
    assert engine.stats()["active"] == 0


def test_seeds(engine, prompt):
    async def main():
        runs = await asyncio.gather(*[_collect(engine, _req(f"seed{s}", prompt, 20, seed=s)) for s in range(8)])
        again = await _collect(engine, _req("seed3-again", prompt, 20, seed=3))
        return [r[0] for r in runs], again[0]

    outputs, again = asyncio.run(main())
    assert len({tuple(o) for o in outputs}) == 8  # different seeds, different samples
    assert again == outputs[3]  # same seed, same sample (here: alone vs in a batch of 8)
    greedy = _run(engine, _req("greedy", prompt, 20, greedy=True))[0]
    assert all(o != greedy for o in outputs)  # sampling is not argmax


def test_greedy_matches_plain_generate(engine, model_dir, prompt):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    ref = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=24)[0, len(prompt) :].tolist()
    tokens, _ = _run(engine, _req("greedy-ref", prompt, 24, greedy=True))
    assert tokens == ref  # paged attention + our sampler in greedy mode == plain HF greedy decoding


@pytest.mark.parametrize("greedy", [True, False])
def test_stop_token(engine, prompt, greedy):
    eos = set(engine.eos_token_ids)
    reference, _ = _run(engine, _req(f"ref-{greedy}", prompt, 40, seed=5, greedy=greedy))
    assert not eos & set(reference)
    # A token that first occurs at step k > 0: with it as a stop token, the stream must end right there.
    fresh = [i for i in range(1, len(reference)) if reference[i] not in reference[:i]]
    k = fresh[len(fresh) // 2]
    stop = reference[k]
    tokens, deltas = _run(engine, _req(f"stop-{greedy}", prompt, 40, seed=5, greedy=greedy, stop_token_ids=(stop,)))
    assert deltas[-1].finish_reason == "stop" and deltas[-1].stop == stop
    assert tokens == reference[: k + 1]  # stop token included, nothing after it


def test_cancel_mid_stream_frees_cache(engine, prompt):
    async def main():
        before = await _wait_cache_released(engine)
        request = _req("to-cancel", prompt, 500, seed=9)
        tokens: list[int] = []
        final = None
        async for delta in engine.generate(request):
            tokens.extend(delta.token_ids)
            if len(tokens) >= 5 and final is None:
                final = "asked"
                await engine.cancel(request.request_id)
            if delta.finish_reason is not None:
                final = delta
        after = await _wait_cache_released(engine)
        return before, tokens, final, after

    cancelled_before = engine.stats()["requests_cancelled"]
    before, tokens, final, after = asyncio.run(main())
    assert final.finish_reason == "cancelled" and final.token_ids == []
    assert 5 <= len(tokens) < 500
    assert engine.stats()["requests_cancelled"] == cancelled_before + 1
    assert after["requests_holding_blocks"] == 0
    # Every block is allocatable again: free, or a cached prefix block (reusable, evictable).
    assert after["blocks_free"] + after["blocks_cached"] == after["blocks_total"]
    assert before["blocks_free"] + before["blocks_cached"] == before["blocks_total"]


def test_abandoned_stream_and_early_cancel(engine, prompt):
    async def main():
        stream = engine.generate(_req("abandon", prompt, 500, seed=2))
        got = [await stream.__anext__() for _ in range(2)]
        await stream.aclose()  # the consumer walks away: the engine cancels the request
        released = await _wait_cache_released(engine)
        await engine.cancel("early")  # cancelled before its generate starts
        early = [d async for d in engine.generate(_req("early", prompt, 50))]
        return got, released, early

    got, released, early = asyncio.run(main())
    assert all(d.finish_reason is None for d in got)
    assert released["requests_holding_blocks"] == 0
    assert [d.finish_reason for d in early] == ["cancelled"]
    assert engine.stats()["active"] == 0


def test_bad_requests_fail_cleanly(engine, prompt):
    _, deltas = _run(engine, _req("t0", prompt, 10, temperature=0.0))
    assert deltas[-1].finish_reason == "error" and "greedy" in deltas[-1].error
    _, deltas = _run(engine, _req("oov", (10**6,), 10))
    assert deltas[-1].finish_reason == "error"
    _, deltas = _run(engine, _req("zero", prompt, 0))
    assert deltas == [Delta(finish_reason="length")]


def test_many_concurrent_requests(engine, prompt):
    start = engine.stats()

    async def main():
        return await asyncio.gather(
            *[_collect(engine, _req(f"many{i}", prompt[i:], 32, seed=100 + i)) for i in range(16)]
        )

    results = asyncio.run(main())
    eos = set(engine.eos_token_ids)
    for tokens, deltas in results:
        final = deltas[-1]
        assert final.finish_reason in ("length", "stop")
        if final.finish_reason == "length":
            assert len(tokens) == 32
        else:
            assert final.stop in eos and tokens[-1] == final.stop
    stats = engine.stats()
    assert stats["requests_finished"] - start["requests_finished"] == 16
    assert stats["tokens_generated"] - start["tokens_generated"] == sum(len(t) for t, _ in results)
    assert stats["active"] == 0

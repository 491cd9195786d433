"""The ``trtllm`` backend against ``tests/fake_trtllm`` (a FAKE of TensorRT-LLM 1.2's LLM API).

TensorRT-LLM cannot be installed on this project's machines; these are contract tests
of the adapter against the documented API shapes and traps. The tokenizer, the tool loop
and the process sandbox are real.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

FAKE_DIR = Path(__file__).parent / "fake_trtllm"


@pytest.fixture
def fake(monkeypatch):
    """The fake package on sys.path and a fresh set of its knobs."""
    monkeypatch.syspath_prepend(str(FAKE_DIR))
    for name in [m for m in sys.modules if m == "tensorrt_llm" or m.startswith("tensorrt_llm.")]:
        monkeypatch.delitem(sys.modules, name)
    import tensorrt_llm

    monkeypatch.setattr(tensorrt_llm.FAKE, "step_s", 0.001)
    monkeypatch.setattr(tensorrt_llm.FAKE, "script", None)
    monkeypatch.setattr(tensorrt_llm.FAKE, "instances", [])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    return tensorrt_llm


from raysolve.engines import make_engine  # noqa: E402
from raysolve.core.protocols import GenerationRequest  # noqa: E402
from raysolve.engines.trtllm import TRTLLMEngine, TRTLLMEngineConfig, is_engine_dir, llm_kwargs, sampling_kwargs  # noqa: E402


def req(rid="r", prompt=(5, 6, 7), max_tokens=8, seed=1, **kw):
    return GenerationRequest(rid, tuple(prompt), max_tokens, seed, **kw)


async def collect(engine, request):
    deltas = [d async for d in engine.generate(request)]
    return [t for d in deltas for t in d.token_ids], deltas


async def drain(engine, request):
    ids, deltas = await collect(engine, request)
    return ids, deltas[-1]


def engine_dir(tmp_path, tp=2, tokenizer=False) -> Path:
    d = tmp_path / "engine"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "pretrained_config": {"mapping": {"tp_size": tp}},
        "build_config": {"max_batch_size": 64, "max_seq_len": 4096, "max_num_tokens": 4096},
    }))
    (d / "rank0.engine").write_bytes(b"")
    return d


# ---------------------------------------------------------------- pure request building


def test_sampling_params_are_explicit_per_segment():
    kw = sampling_kwargs(req(seed=77, stop_token_ids=(9,), temperature=0.6, top_p=0.9), 300)
    assert kw == {"n": 1, "max_tokens": 300, "seed": 77, "stop_token_ids": [9], "include_stop_str_in_output": True,
                  "detokenize": False, "temperature": 0.6, "top_p": 0.9}
    greedy = sampling_kwargs(req(greedy=True, temperature=0.0), 5)
    assert greedy["top_k"] == 1 and "temperature" not in greedy
    assert sampling_kwargs(req(top_k=20), 5)["top_k"] == 20


def test_llm_arguments_for_both_loading_paths(tmp_path):
    cfg = TRTLLMEngineConfig(model="m", kv_cache_dtype="fp8", max_batch_size=128,
                             speculative={"kind": "eagle3", "model": "/d", "max_draft_len": 3})
    kw = llm_kwargs(cfg, "/ckpt", gpus=2, engine_dir=False)
    assert kw["tensor_parallel_size"] == 2 and kw["sampler_type"] == "TRTLLMSampler"
    assert kw["_kv_cache"] == {"free_gpu_memory_fraction": 0.9, "enable_block_reuse": True, "dtype": "fp8"}
    assert kw["_speculative"]["kind"] == "eagle3" and kw["allow_advanced_sampling"] is True
    assert "orchestrator_type" not in kw
    plain = llm_kwargs(TRTLLMEngineConfig(tokenizer="/tok"), "/engine", gpus=2, engine_dir=True)
    assert plain["tokenizer"] == "/tok" and "sampler_type" not in plain  # not a TRT-backend argument
    with pytest.raises(ValueError, match="PyTorch backend only"):
        llm_kwargs(TRTLLMEngineConfig(orchestrator="ray"), "/engine", 2, engine_dir=True)
    with pytest.raises(ValueError, match="holds 1 GPU"):
        llm_kwargs(TRTLLMEngineConfig(tensor_parallel_size=2), "/ckpt", gpus=1, engine_dir=False)
    with pytest.raises(ValueError, match="speculative.kind"):
        TRTLLMEngineConfig(speculative={"kind": "medusa"})
    assert is_engine_dir(engine_dir(tmp_path)) and not is_engine_dir(tmp_path)


def test_missing_tensorrt_llm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)
    engine = make_engine("trtllm", model="tiny")
    with pytest.raises(ImportError, match="NGC container"):
        asyncio.run(engine.start())


# ---------------------------------------------------------------- against the fake


def test_streams_the_librarys_tokens_and_sends_each_request_its_own_seed(fake):
    fake.FAKE.script = lambda prompt, params: [100 * params.seed + i for i in range(1, 60)]
    engine = TRTLLMEngine(model="tiny")

    async def go():
        await engine.start()
        runs = [await collect(engine, req(rid, max_tokens=40, seed=seed)) for rid, seed in (("a", 1), ("b", 2), ("a2", 1))]
        greedy = await collect(engine, req("g", max_tokens=5, greedy=True, temperature=0.0))
        return runs, greedy

    runs, greedy = asyncio.run(go())
    llm = fake.FAKE.instances[0]
    # The LLM: the seeded sampler (the PyTorch backend's default one ignores per-request seeds).
    assert llm.args["sampler_type"] == "TRTLLMSampler" and llm.args["tensor_parallel_size"] == 1
    assert llm.args["kv_cache_config"].enable_block_reuse is True
    # Each request: its own seed, n=1 (abort() would end all n), explicit max_tokens (the library's
    # default is 32) and temperature/top_p (all unset means greedy), no logprobs (abort crashes with them).
    sent = [params for _, params in llm.requests]
    assert [p.seed for p in sent] == [1, 2, 1, 1]
    for p in sent[:3]:
        assert (p.n, p.max_tokens, p.temperature, p.top_p, p.top_k, p.logprobs) == (1, 40, 0.7, 0.95, None, None)
        assert p.detokenize is False and p.include_stop_str_in_output is True
    assert (sent[3].top_k, sent[3].temperature, sent[3].max_tokens) == (1, None, 5)  # greedy: top_k=1
    assert all(prompt == [5, 6, 7] for prompt, _ in llm.requests)
    # What the library streamed reaches the caller unchanged, in several deltas, ending "length".
    for (ids, deltas), seed in zip(runs, (1, 2, 1)):
        assert ids == [100 * seed + i for i in range(1, 41)]
        assert len(deltas) > 1 and deltas[-1].finish_reason == "length"
    assert greedy[0] == [101, 102, 103, 104, 105]
    assert engine.stats()["tokens_generated"] == 3 * 40 + 5 and engine.stats()["requests_finished"] == 4


def test_llm_arguments_are_ones_the_library_accepts(fake):
    """The fake rejects unknown ``LLM`` arguments, as TensorRT-LLM does: the adapter's pass."""
    with pytest.raises(ValueError, match="unknown arguments"):
        fake.LLM(model=str(FAKE_DIR), max_tokens=10)  # the check is live
    engine = TRTLLMEngine(model="tiny", speculative={"kind": "ngram", "max_draft_len": 2})
    asyncio.run(engine.start())
    assert set(fake.FAKE.instances[0].args) == {
        "model", "tokenizer", "tensor_parallel_size", "max_batch_size", "max_num_tokens", "max_seq_len",
        "kv_cache_config", "sampler_type", "speculative_config", "allow_advanced_sampling"}


def test_code_end_stop_token_is_kept_in_the_output(fake):
    fake.FAKE.script = lambda prompt, params: [11, 12, 13, 99, 14]
    engine = TRTLLMEngine(model="tiny")

    async def go():
        await engine.start()
        return await drain(engine, req(max_tokens=50, stop_token_ids=(99,)))

    ids, end = asyncio.run(go())
    assert ids == [11, 12, 13, 99] and end.finish_reason == "stop" and end.stop == 99
    fake.FAKE.drop_stop_tokens = True  # a release that leaves the stop token out: appended for the tool loop
    ids, end = asyncio.run(go())
    assert ids == [11, 12, 13, 99] and end.stop == 99
    fake.FAKE.drop_stop_tokens = False

    fake.FAKE.script = lambda prompt, params: [11, 12, fake.EOS_ID]
    ids, end = asyncio.run(go())
    assert ids == [11, 12] and end.finish_reason == "stop" and end.stop is None


def test_cancel_aborts_and_drains_to_the_final_cancelled_output(fake):
    engine = TRTLLMEngine(model="tiny")

    async def go():
        await engine.start()
        seen = []
        streaming = asyncio.Event()

        async def consume():
            async for d in engine.generate(req("c", max_tokens=5000)):
                seen.append(d)
                streaming.set()

        task = asyncio.ensure_future(consume())
        await streaming.wait()  # the request is running in the library
        await engine.cancel("c")
        await asyncio.wait_for(task, 60)  # a safety net only: the abort ends it within a step
        return seen

    seen = asyncio.run(go())
    llm = fake.FAKE.instances[0]
    assert seen[-1].finish_reason == "cancelled" and seen[-1].token_ids == []
    assert seen[0].finish_reason is None and seen[0].token_ids  # it had streamed before the cancel
    assert llm.abort_calls == [1] and llm.running == {}  # aborted once, and read to its end
    assert engine.stats()["requests_cancelled"] == 1 and engine.stats()["active"] == 0


def test_cancel_before_generate_and_a_consumer_that_stops_listening(fake):
    engine = TRTLLMEngine(model="tiny")

    async def go():
        await engine.start()
        await engine.cancel("early")
        early = [d async for d in engine.generate(req("early"))]
        stream = engine.generate(req("gone", max_tokens=5000))
        await stream.__anext__()
        await stream.aclose()
        return early

    early = asyncio.run(go())
    llm = fake.FAKE.instances[0]
    assert [d.finish_reason for d in early] == ["cancelled"]
    assert len(llm.requests) == 1 and llm.abort_calls == [1] and llm.running == {}  # only "gone" was sent
    assert engine.stats()["requests_cancelled"] == 2 and engine.stats()["active"] == 0


def test_bad_requests_are_error_deltas_and_max_tokens_is_clamped(fake):
    engine = TRTLLMEngine(model="tiny", max_seq_len=64)

    async def go():
        await engine.start()
        clamped = await drain(engine, req("long", prompt=range(3, 60), max_tokens=500))
        full = await drain(engine, req("full", prompt=range(3, 70), max_tokens=5))
        hot = await drain(engine, req("t0", temperature=0.0))
        return clamped, full, hot

    (ids, end), (_, full), (_, hot) = asyncio.run(go())
    assert len(ids) == 64 - 57 and end.finish_reason == "length"
    assert fake.FAKE.instances[0].requests[0][1].max_tokens == 7
    assert full.finish_reason == "error" and "max_seq_len" in full.error
    assert hot.finish_reason == "error" and "greedy" in hot.error


def test_engine_dir_uses_the_tensorrt_llm_and_needs_a_tokenizer(fake, tmp_path):
    from raysolve.tiny import MODEL_DIR

    d = engine_dir(tmp_path, tp=1)
    engine = TRTLLMEngine(model=str(d), tokenizer=str(MODEL_DIR), max_batch_size=512)
    asyncio.run(engine.start())
    llm = fake.FAKE.instances[0]
    assert llm._backend == "tensorrt" and llm.args["max_batch_size"] == 64  # clamped to the build
    assert "sampler_type" not in llm.args
    with pytest.raises(ValueError, match="holds no tokenizer"):
        asyncio.run(TRTLLMEngine(model=str(d)).start())
    (tmp_path / "tp2").mkdir()
    built_for_two = engine_dir(tmp_path / "tp2", tp=2)
    with pytest.raises(ValueError, match="built for tp_size=2"):  # the actor holds one GPU
        asyncio.run(TRTLLMEngine(model=str(built_for_two), tokenizer=str(MODEL_DIR)).start())


def test_speculative_config_reaches_the_llm(fake):
    engine = TRTLLMEngine(model="tiny", speculative={"kind": "eagle3", "model": "/drafter", "max_draft_len": 4})
    asyncio.run(engine.start())
    spec = fake.FAKE.instances[0].args["speculative_config"]
    assert spec.max_draft_len == 4 and spec.speculative_model_dir == "/drafter" and spec.eagle3_one_model


def test_tool_loop_runs_code_through_the_trtllm_backend(fake):
    from transformers import AutoTokenizer

    from raysolve.core.prompting import HFTokenCodec, PromptFormat
    from raysolve.sandbox import LocalSandbox, SandboxConfig
    from raysolve.tiny import MODEL_DIR
    from raysolve.core.records import SampleSettings
    from raysolve.core.tir import SampleSpec, run_sample

    fmt = PromptFormat()
    codec = HFTokenCodec(AutoTokenizer.from_pretrained(str(MODEL_DIR)), fmt.code_end)

    def script(prompt, params):
        text = codec.decode(prompt)
        if "```output" not in text:
            return codec.encode("<tool_call>\n```python\nprint(6 * 7)\n```\n</tool_call> never reached")
        value = text.rsplit("```output\n", 1)[1].split("\n", 1)[0]
        return codec.encode(f"The answer is \\boxed{{{value}}}.") + [codec.tokenizer.eos_token_id]

    fake.FAKE.script = script
    engine = TRTLLMEngine(model="tiny")

    async def go():
        await engine.start()
        fake.EOS_ID = codec.tokenizer.eos_token_id
        sandbox = LocalSandbox(SandboxConfig(max_workers=1))
        try:
            prompt = tuple(fmt.prompt_ids(codec, "What is 6 times 7?", 4))
            return await run_sample(SampleSpec("p#0", prompt, seed=3, settings=SampleSettings()), engine, sandbox,
                                    codec, fmt)
        finally:
            await sandbox.aclose()

    out = asyncio.run(go())
    assert out.answer == "42" and out.code_calls == 1 and out.finish_reason == "eos"
    first, second = fake.FAKE.instances[0].requests
    assert first[1].stop_token_ids == [codec.code_end_token_id]
    assert second[0][: len(first[0])] == first[0]  # the second segment extends the first, stop token included


# ---------------------------------------------------------------- engine actors on (declared) GPUs, through Ray


def _actor_config(tmp_path, reply: str, **engine):
    from raysolve.runtime.config import EngineConfig, SolverConfig

    env = {"PYTHONPATH": str(FAKE_DIR), "FAKE_TRTLLM_LOG": str(tmp_path), "FAKE_TRTLLM_REPLY": reply}
    options = engine.pop("options", {})
    cfg = SolverConfig(engine=EngineConfig(backend="trtllm", num_cpus=0.25, env_vars=env,
                                           options={"model": "tiny", **options}, **engine))
    cfg.scheduling.num_samples = 4
    cfg.scheduling.stop_policy = "full"  # every sample runs to its end: no race with a settled vote
    cfg.budget.max_tokens = 64
    return cfg


def _reply(text: str) -> str:
    from transformers import AutoTokenizer

    from raysolve.tiny import MODEL_DIR

    tok = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    return json.dumps(tok.encode(text, add_special_tokens=False) + [tok.eos_token_id])


def test_tp2_actors_hold_disjoint_gpu_pairs_and_solve(ray_local, tmp_path):
    from raysolve.io.problems import Problem
    from raysolve.runtime.solver import Solver

    cfg = _actor_config(tmp_path, _reply("So the answer is \\boxed{7}."), num_actors=2, num_gpus=2)
    with Solver(cfg) as solver:
        results = [solver.solve(Problem(f"p{i}", "What is 3 + 4?", "7")) for i in range(2)]
        engines = solver.stats()["engines"]
    assert all(r.answer == "7" and r.correct and r.samples_finished == 4 for r in results)
    assert sum(e["samples_done"] for e in engines) == 8
    logs = [json.loads(f.read_text()) for f in sorted(tmp_path.glob("llm-*.json"))]
    assert len(logs) == 2
    pairs = [log["cuda_visible_devices"].split(",") for log in logs]
    assert all(len(p) == 2 for p in pairs) and set(pairs[0]).isdisjoint(pairs[1])  # one GPU pair each
    for log, pair in zip(logs, pairs):
        assert log["backend"] == "pytorch" and log["args"]["tensor_parallel_size"] == 2
        assert log["placement"] == {"orchestrator": "mpi", "rank_gpus": pair}  # MPI ranks take the pair


def test_ray_orchestrator_reuses_the_actors_placement_group(ray_local, tmp_path):
    from ray.util import placement_group_table

    from raysolve.io.problems import Problem
    from raysolve.runtime.solver import Solver

    cfg = _actor_config(tmp_path, _reply("\\boxed{5}"), num_actors=1, num_gpus=2, gpu_bundles="per-gpu",
                        child_cpus=0.5, options={"orchestrator": "ray"})
    with Solver(cfg) as solver:
        assert solver.solve(Problem("p", "What is 2 + 3?", "5")).answer == "5"
        group = solver.placements[0].group
        table = placement_group_table(group)
    assert table["strategy"] == "STRICT_PACK"
    assert list(table["bundles"].values()) == [{"GPU": 1.0, "CPU": 1.0}, {"GPU": 1.0, "CPU": 1.0}, {"CPU": 0.75}]
    (log,) = [json.loads(f.read_text()) for f in tmp_path.glob("llm-*.json")]
    assert log["args"]["orchestrator_type"] == "ray" and log["bundle_indices"] == "0,1"
    assert log["placement"]["own_group"] is False and log["placement"]["bundles"] == [0, 1]

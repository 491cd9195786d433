"""The ``loadgen`` BENCHMARK engine, and the orchestration benchmark on top of it (small loads).

The load generator's own contract (rate shared by the batch, per-request cap, cancellation
within a step) is checked on a `VirtualClock`, so it holds exactly on any machine; the
benchmark's real-time figures only get bounds with wide (>= 5x) margins: they are not
performance claims.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from raysolve.engines import make_engine
from raysolve.core.protocols import GenerationRequest
from raysolve.engines.testing.loadgen import CODE_CALL, LoadGenConfig, LoadGenEngine, VirtualClock
from raysolve.engines.testing.scripted import CharCodec


def req(rid, seed=1, max_tokens=10_000, prompt=(1, 2, 3), stop=()):
    return GenerationRequest(rid, tuple(prompt), max_tokens, seed, stop_token_ids=tuple(stop))


async def consume(engine, request):
    deltas = [d async for d in engine.generate(request)]
    return [t for d in deltas for t in d.token_ids], deltas


async def until(condition, timeout_s=60.0):
    """Yield to the event loop until ``condition()`` holds, checking after every loop turn (on a
    `VirtualClock` the engine takes a step per turn); the deadline is only a safety net."""
    async def poll():
        while not condition():
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), timeout_s)


RATES = LoadGenConfig(tokens_per_s=20_000, request_tokens_per_s=2_000, length_mean=400, step_s=0.005)


def test_the_batch_shares_the_rate_and_each_request_is_capped():
    clock = VirtualClock()

    async def go():
        engine = LoadGenEngine(RATES, clock=clock)
        t0 = clock.now()
        await asyncio.gather(*(consume(engine, req(f"r{i}", seed=i)) for i in range(100)))
        many = clock.now() - t0
        t0 = clock.now()
        ids, deltas = await consume(engine, req("one"))
        return many, clock.now() - t0, ids, deltas, engine.stats()

    many, one, ids, deltas, stats = asyncio.run(go())
    step = RATES.step_s
    assert many == pytest.approx(40_000 / 20_000, abs=2 * step)  # 100 × 400 tokens at 20,000 tokens/s
    assert one == pytest.approx(400 / 2_000, abs=2 * step)  # alone: the per-request cap, not the engine's rate
    text = CharCodec().decode(ids)
    assert len(ids) == 400 and text.endswith("The answer is \\boxed{42}.<|im_end|>")
    assert deltas[-1].finish_reason == "stop" and len(deltas) >= 400 // 64
    assert stats["requests_finished"] == 101 and stats["tokens_generated"] == 100 * 400 + 400


def test_on_the_real_clock_the_cap_is_a_floor_on_time():
    """Real time can only run slower than the rates (a busy machine), never faster."""
    async def go():
        engine = LoadGenEngine(RATES)
        t0 = time.perf_counter()
        ids, _ = await consume(engine, req("one"))
        return len(ids), time.perf_counter() - t0

    n, seconds = asyncio.run(go())
    assert n == 400 and seconds >= 400 / 2_000 * 0.99


def test_lengths_answers_and_code_calls_follow_the_seed():
    codec = CharCodec()
    engine = LoadGenEngine(length_mean=300, length_sigma=0.5, accuracy=0.5, code_share=0.5, step_s=0.001,
                           tokens_per_s=1e6, request_tokens_per_s=1e6)
    end = codec.code_end_token_id

    async def go():
        return [await consume(engine, req(f"s{i}", seed=i, stop=(end,))) for i in range(40)]

    outs = asyncio.run(go())
    texts = [codec.decode(ids) for ids, _ in outs]
    calls = [t for t in texts if t == CODE_CALL]
    assert 8 < len(calls) < 32  # about half call code; the code-end token stops the segment
    assert all(d[-1].stop == end for (_, d), t in zip(outs, texts) if t == CODE_CALL)
    answers = {t.rsplit("{", 1)[1].split("}")[0] for t in texts if t != CODE_CALL}
    assert "42" in answers and len(answers) > 3  # accuracy 0.5: other answers too
    assert len({len(t) for t in texts if t != CODE_CALL}) > 5  # lognormal lengths
    again = asyncio.run(consume(engine, req("s3", seed=3, stop=(end,))))
    assert codec.decode(again[0]) == texts[3]  # the seed decides
    after_code = asyncio.run(consume(engine, req("x", seed=0, prompt=codec.encode("```output\n42\n```\n"))))
    assert codec.decode(after_code[0]) != CODE_CALL  # once code ran, the answer follows


def test_cancel_frees_the_share_and_ends_the_stream_at_once():
    clock = VirtualClock()

    async def go():
        engine = LoadGenEngine(clock=clock, tokens_per_s=1_000, request_tokens_per_s=1_000, length_mean=100_000,
                               step_s=0.01)
        task = asyncio.ensure_future(consume(engine, req("c")))
        await until(lambda: engine.stats()["tokens_generated"] > 0)  # it has streamed a delta
        steps = engine.stats()["steps"]
        await engine.cancel("c")
        ids, deltas = await task
        steps_waited = engine.stats()["steps"] - steps
        await engine.cancel("early")
        early = await consume(engine, req("early"))
        return ids, deltas, steps_waited, early, engine.stats()

    ids, deltas, steps_waited, early, stats = asyncio.run(go())
    assert deltas[-1].finish_reason == "cancelled" and 0 < len(ids) < 1000
    assert steps_waited <= 1  # at once (as vLLM's abort): not after the next token, at most a step already under way
    assert [d.finish_reason for d in early[1]] == ["cancelled"]
    assert stats["requests_cancelled"] == 2 and stats["active"] == 0


def test_max_tokens_ends_with_length_and_the_backend_is_registered():
    engine = make_engine("loadgen", length_mean=500, tokens_per_s=1e6, request_tokens_per_s=1e6, step_s=0.001)
    ids, deltas = asyncio.run(consume(engine, req("m", max_tokens=70)))
    assert len(ids) == 70 and deltas[-1].finish_reason == "length"
    from raysolve.cli import MODEL_BACKENDS

    assert "loadgen" not in MODEL_BACKENDS and "scripted" not in MODEL_BACKENDS  # not offered as models


@pytest.mark.slow
def test_orchestration_benchmark_reports_efficiency_cancel_latency_and_scaling(ray_local):
    from raysolve.core.scheduling import SolveOptions
    from raysolve.bench.harness import bench_problems, cancel_latency, orchestration, scaling
    from raysolve.runtime.config import SolverConfig

    def config(actors: int, rate: float = 10_000, sigma: float = 0.0) -> SolverConfig:
        return SolverConfig.model_validate({
            "engine": {"backend": "loadgen", "num_actors": actors, "num_cpus": 0.01,
                       "options": {"tokens_per_s": rate, "length_mean": 256, "length_sigma": sigma,
                                   "request_tokens_per_s": 1000}},
            "budget": {"max_tokens": 2048}})

    r = orchestration(config(2), bench_problems(8), samples=8, pool=8, max_tokens=2048)
    assert r["solver"]["samples"] == 64 and r["solver"]["sample_errors"] == 0
    assert r["solver"]["ray_calls_per_sample"] == 1.0  # one run call per sample, no cancels (full vote)
    # Real-time ratios (about 0.98 and 1.0 on an idle 2-core machine): bounds 5x away, a sanity check only.
    assert 0.15 < r["efficiency"] < 5 and r["solver"]["coordinator_cpu_ms_per_sample"] > 0
    modes = {"launch-all": SolveOptions(mode="launch-all", num_samples=8, stop_policy="first-k:3")}
    c = cancel_latency(config(1, sigma=0.8), bench_problems(6, "c"), 8, modes)["launch-all"]
    assert c["with_siblings_cancelled"] >= 3 and c["settle_to_stopped_ms"]["p50"] < 500  # about 2 ms
    rows = scaling(lambda n: config(n, rate=5_000), [1, 2], problems_per_actor=2, samples=4, pool=4)
    assert [row["engines"] for row in rows] == [1, 2] and rows[1]["ratio_to_linear"] > 0.15


def test_raysolve_bench_has_its_own_flags():
    from raysolve.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--only", "nonsense"])
    assert exit_.value.code == 2

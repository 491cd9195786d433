"""Smoke-sized run of the tiny model's pipeline on CPU: data from real sandbox runs,
tokenizer, a few training steps, export, and loading through the hf backend."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "jobs"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    import train_tiny

    out = tmp_path_factory.mktemp("tiny")
    argv = ["all", "--out", str(out), "--problems", "120", "--vocab", "600", "--steps", "6", "--batch-size", "8",
            "--hidden-size", "64", "--num-layers", "2", "--num-heads", "4", "--num-kv-heads", "2",
            "--intermediate-size", "128", "--eval-every", "5", "--warmup-steps", "2", "--device", "cpu"]
    assert train_tiny.main(argv) == 0
    return out


def test_data_comes_from_executed_code_and_masks_tool_output(smoke):
    from transformers import AutoTokenizer

    from raysolve.tiny.train import load_data

    stats = json.loads((smoke / "data.json").read_text())
    assert stats["transcripts"] == stats["problems"]  # every executed answer matched its reference
    assert stats["code_calls"] >= stats["transcripts"]
    tok = AutoTokenizer.from_pretrained(smoke / "tokenizer")
    seqs, masks = load_data(smoke)
    assert len(seqs) == stats["transcripts"] and sum(len(s) for s in seqs) == stats["tokens"]
    for seq, mask in zip(seqs[:20], masks[:20]):
        learned = tok.decode([t for t, m in zip(seq, mask) if m])
        context = tok.decode([t for t, m in zip(seq, mask) if not m])
        assert "<tool_call>" in learned and "\\boxed{" in learned and learned.endswith("<|im_end|>")
        assert "```output" not in learned and "Remaining code calls" not in learned
        assert "<|im_start|>user" in context and "```output" in context


def test_exported_model_loads_offline_and_generates_through_the_hf_backend(smoke):
    import asyncio

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from raysolve.core.protocols import GenerationRequest
    from raysolve.engines.hf import HFEngine, HFEngineConfig

    model_dir = smoke / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert len(tok.encode("</tool_call>", add_special_tokens=False)) == 1
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.config.model_type == "qwen2"
    metrics = json.loads((model_dir / "training.json").read_text())["metrics"]
    assert metrics["final_val_loss"] is not None and metrics["parameters"] > 0

    async def go():
        engine = HFEngine(HFEngineConfig(model=str(model_dir), device="cpu"))
        await engine.start()
        try:
            deltas = [d async for d in engine.generate(GenerationRequest("r", tuple(tok.encode("Find")), 8, seed=1))]
        finally:
            await engine.close()
        return deltas

    deltas = asyncio.run(go())
    assert deltas[-1].finish_reason in ("stop", "length")

"""Train the tiny Qwen2 model on tokenised transcripts (GPU for the real run, CPU for a smoke run).

Plain PyTorch: sequences are bucketed by length, padded per batch, and the loss is
taken only where the mask says the model wrote the token (its reasoning, code and
answer; never the prompt or the tool output). Deterministic for a seed on a given
device. The data file is the ``data.npz`` written by ``jobs/train_tiny.py data``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class TrainConfig:
    seed: int = 0
    hidden_size: int = 256
    num_layers: int = 6
    num_heads: int = 8
    num_kv_heads: int = 4
    intermediate_size: int = 768
    steps: int = 4000
    batch_size: int = 128
    lr: float = 1.5e-3
    min_lr: float = 1e-4
    warmup_steps: int = 150
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    eval_every: int = 250
    max_minutes: float = 0.0
    """Stop early (and still export) after this much training time; 0: no limit."""
    save_dtype: str = "float16"
    """Weights are saved in this dtype to keep the shipped model small (loaded as float32 on CPU)."""


def load_data(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    data = np.load(path / "data.npz")
    ids, offsets = data["ids"], data["offsets"]
    mask = np.unpackbits(data["mask"])[: len(ids)]
    seqs = [ids[offsets[i]: offsets[i + 1]].astype(np.int64) for i in range(len(offsets) - 1)]
    masks = [mask[offsets[i]: offsets[i + 1]].astype(np.int64) for i in range(len(offsets) - 1)]
    return seqs, masks


def _batches(seqs: list[np.ndarray], masks: list[np.ndarray], batch: int, pad: int, rng: np.random.Generator):
    """Endless length-bucketed batches (sorted chunks of 50 batches, shuffled)."""
    n = len(seqs)
    while True:
        order = rng.permutation(n)
        for start in range(0, n, batch * 50):
            chunk = sorted(order[start: start + batch * 50], key=lambda i: len(seqs[i]))
            groups = [chunk[i: i + batch] for i in range(0, len(chunk), batch)]
            rng.shuffle(groups)
            for g in groups:
                width = max(len(seqs[i]) for i in g)
                x = np.full((len(g), width), pad, dtype=np.int64)
                y = np.zeros((len(g), width), dtype=np.int64)
                for row, i in enumerate(g):
                    x[row, : len(seqs[i])] = seqs[i]
                    y[row, : len(seqs[i])] = masks[i]
                yield x, y


def train(data_dir: str | Path, out_dir: str | Path, config: TrainConfig, device: str = "auto") -> dict[str, Any]:
    """Train, then save model + tokenizer to ``out_dir``; returns final metrics."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(data_dir / "tokenizer")
    seqs, masks = load_data(data_dir)
    n_val = max(1, min(500, len(seqs) // 20))
    val = (seqs[:n_val], masks[:n_val])
    train_set = (seqs[n_val:], masks[n_val:])
    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=4096,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    model = Qwen2ForCausalLM(model_config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=(0.9, 0.95), fused=device.startswith("cuda"),
    )
    use_bf16 = device.startswith("cuda")

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))

    def loss_of(x: np.ndarray, y: np.ndarray) -> torch.Tensor:
        xt = torch.from_numpy(x).to(device)
        mt = torch.from_numpy(y).to(device)
        attn = (xt != pad).long()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(input_ids=xt, attention_mask=attn).logits
        targets = xt[:, 1:].masked_fill(mt[:, 1:] == 0, -100)
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
        )

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        total, count = 0.0, 0
        for start in range(0, len(val[0]), config.batch_size):
            g = list(range(start, min(len(val[0]), start + config.batch_size)))
            width = max(len(val[0][i]) for i in g)
            x = np.full((len(g), width), pad, dtype=np.int64)
            y = np.zeros_like(x)
            for row, i in enumerate(g):
                x[row, : len(val[0][i])] = val[0][i]
                y[row, : len(val[0][i])] = val[1][i]
            total += float(loss_of(x, y)) * len(g)
            count += len(g)
        model.train()
        return total / count

    log: list[dict[str, float]] = []
    batches = _batches(*train_set, config.batch_size, pad, rng)
    started = time.perf_counter()
    tokens = 0
    model.train()
    for step in range(config.steps):
        out_of_time = bool(config.max_minutes) and time.perf_counter() - started > 60 * config.max_minutes
        last = out_of_time or step == config.steps - 1
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x, y = next(batches)
        tokens += int((x != pad).sum())
        loss = loss_of(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        if step % 25 == 0 or last:
            row = {"step": step, "loss": round(float(loss.detach()), 5), "lr": lr_at(step),
                   "elapsed_s": round(time.perf_counter() - started, 2)}
            if step % config.eval_every == 0 or last:
                row["val_loss"] = round(evaluate(), 5)
            log.append(row)
            print(json.dumps(row), flush=True)
        if last:
            break

    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=None,
                                               do_sample=True, temperature=0.7, top_p=0.95, max_new_tokens=1024)
    model.to(dtype=getattr(torch, config.save_dtype)).cpu().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    metrics = {
        "parameters": n_params,
        "train_sequences": len(train_set[0]),
        "val_sequences": n_val,
        "final_loss": log[-1]["loss"],
        "final_val_loss": log[-1].get("val_loss"),
        "steps_done": log[-1]["step"] + 1,
        "train_tokens_seen": tokens,
        "train_s": round(time.perf_counter() - started, 1),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "config": asdict(config),
    }
    (out_dir / "training.json").write_text(json.dumps({"metrics": metrics, "log": log}, indent=1))
    return metrics

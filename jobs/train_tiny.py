"""Regenerate the tiny model's data, train it and export it — reproducibly from a seed.

    python jobs/train_tiny.py data  --out build/tiny --problems 60000 --seed 0     # CPU: runs the sandbox
    python jobs/train_tiny.py train --data build/tiny --out raysolve/tiny/model   # one GPU (or CPU, slowly)
    python jobs/train_tiny.py all   --out build/tiny-smoke --problems 200 --steps 20   # smoke run

``data`` generates problems, runs every solution cell in the sandbox's interpreter,
trains the tokenizer on the transcripts and writes ``tokenizer/`` and ``data.npz``
(token ids, offsets, packed loss mask). ``train`` needs only torch and transformers,
so it runs on the GPU machines, which lack RestrictedPython.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_data(out: Path, seed: int, problems: int, vocab_size: int, workers: int) -> dict:
    from raysolve.core.prompting import HFTokenCodec, PromptFormat
    from raysolve.tiny.dataset import build_transcripts, corpus_texts, tokenize
    from raysolve.tiny.tokenizer import build_tokenizer

    started = time.perf_counter()
    fmt = PromptFormat()
    transcripts = build_transcripts(seed, problems, workers=workers)
    solved_s = time.perf_counter() - started
    tokenizer = build_tokenizer(corpus_texts(transcripts, fmt), vocab_size)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out / "tokenizer")
    codec = HFTokenCodec(tokenizer)
    ids: list[int] = []
    mask: list[int] = []
    offsets = [0]
    for t in transcripts:
        seq, m = tokenize(t, codec, fmt)
        ids += seq
        mask += m
        offsets.append(len(ids))
    np.savez_compressed(out / "data.npz", ids=np.asarray(ids, dtype=np.uint16),
                        offsets=np.asarray(offsets, dtype=np.int64), mask=np.packbits(np.asarray(mask, dtype=np.uint8)))
    lengths = np.diff(offsets)
    stats = {
        "seed": seed, "problems": problems, "transcripts": len(transcripts),
        "dropped": problems - len(transcripts), "tokens": len(ids), "learned_tokens": int(sum(mask)),
        "mean_len": float(lengths.mean()), "max_len": int(lengths.max()), "vocab": len(tokenizer),
        "solve_s": round(solved_s, 1), "total_s": round(time.perf_counter() - started, 1),
        "code_calls": sum(1 for t in transcripts for _, learned in t.pieces if not learned),
    }
    (out / "data.json").write_text(json.dumps(stats, indent=1))
    return stats


def main(argv: list[str] | None = None) -> int:
    from raysolve.tiny.train import TrainConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["data", "train", "all"])
    p.add_argument("--out", required=True, help="data dir (data/all) or model dir (train)")
    p.add_argument("--data", help="data dir for train (default: --out)")
    p.add_argument("--model-out", help="model dir for all (default: OUT/model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--problems", type=int, default=60000)
    p.add_argument("--vocab", type=int, default=1536)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    for name, field in TrainConfig.__dataclass_fields__.items():
        if name != "seed":
            p.add_argument(f"--{name.replace('_', '-')}", type=type(field.default), default=field.default)
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.stage in ("data", "all"):
        print(json.dumps(make_data(out, args.seed, args.problems, args.vocab, args.workers)), flush=True)
    if args.stage in ("train", "all"):
        from raysolve.tiny.train import train

        config = TrainConfig(seed=args.seed, **{k: getattr(args, k) for k in TrainConfig.__dataclass_fields__ if k != "seed"})
        data = Path(args.data or out)
        model_out = Path(args.model_out or (out / "model" if args.stage == "all" else out))
        print(json.dumps(train(data, model_out, config, device=args.device)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A tiny, randomly initialised Qwen2-architecture model, created offline.

A TEST MODEL: it gives the engine tests a model whose weights are random and
whose shape is arbitrary, so they test the engine mechanics and never the
trained tiny model's skill (that is ``raysolve/tiny/model``, the embedded
default). ``"random-tiny"`` as a backend's ``model`` means "call
``ensure_random_model()`` and use its path".

What gets written (a normal Hugging Face model directory, loadable offline with
``AutoTokenizer.from_pretrained`` / ``AutoModelForCausalLM.from_pretrained``):

- a byte-level BPE tokenizer trained with the ``tokenizers`` library on a small
  built-in math/Python corpus with Qwen2's pre-tokenisation (one digit per
  token), wrapped
  in ``PreTrainedTokenizerFast``. ``<|endoftext|>`` (pad), ``<|im_start|>`` and
  ``<|im_end|>`` (eos) are special tokens; ``<tool_call>`` / ``</tool_call>``
  (the code begin/end tags of the OpenMath / Qwen2.5 format) are added tokens,
  not special, as in Qwen2.5, so decoding with ``skip_special_tokens=True``
  keeps them. All five always encode to a single token. The tokenizer carries a
  Qwen-style ChatML ``chat_template`` (system/user/assistant roles,
  ``add_generation_prompt``).
- a ``Qwen2ForCausalLM`` (hidden 128, 2 layers, 4 heads, 2 KV heads, tied
  embeddings, ~0.5 M parameters) whose ``generation_config`` stops on
  ``<|im_end|>``.

Everything is deterministic given ``seed``. Creation is idempotent and safe when
several processes race: each builds in a private temporary directory next to the
target and publishes it with one atomic ``os.replace``; losers discard theirs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = [
    "CODE_BEGIN",
    "CODE_END",
    "DEFAULT_MODEL_NAME",
    "EOS",
    "IM_START",
    "PAD",
    "default_cache_dir",
    "ensure_random_model",
]

from raysolve.tiny.tokenizer import CODE_BEGIN, CODE_END, EOS, IM_START, PAD

DEFAULT_MODEL_NAME = "random-qwen2-tiny"
_MARKER = "raysolve_random_model.json"
_FORMAT_VERSION = 1
_VOCAB_TARGET = 1024

_CORPUS = r"""
Problem: Let $x$ and $y$ be real numbers such that $x + y = 10$ and $xy = 21$. Find $x^2 + y^2$.
Solution: We have $x^2 + y^2 = (x + y)^2 - 2xy = 100 - 42 = 58$. The answer is $\boxed{58}$.
Problem: Find the remainder when $2^{100}$ is divided by $7$.
Solution: Since $2^3 = 8 \equiv 1 \pmod{7}$, we get $2^{100} = 2^{99} \cdot 2 \equiv 2 \pmod{7}$. The answer is $\boxed{2}$.
Problem: How many positive divisors does $360$ have?
Solution: $360 = 2^3 \cdot 3^2 \cdot 5$, so the number of divisors is $(3+1)(2+1)(1+1) = 24$.
Therefore the final answer is $\boxed{24}$.
Problem: Triangle $ABC$ has sides $AB = 13$, $BC = 14$ and $CA = 15$. Compute its area.
Solution: The semi-perimeter is $s = 21$, and by Heron's formula the area is
$\sqrt{21 \cdot 8 \cdot 7 \cdot 6} = 84$. The answer is $\boxed{84}$.
Problem: Find the number of ordered pairs of integers $(a, b)$ with $1 \le a, b \le 100$ such that $a + b$ is divisible by $3$.
Let's write a program to count them.
<tool_call>
count = 0
for a in range(1, 101):
    for b in range(1, 101):
        if (a + b) % 3 == 0:
            count += 1
print(count)
</tool_call>
```output
3333
```
The answer is $\boxed{3333}$.
Problem: Compute the sum of all primes less than $50$.
<tool_call>
from sympy import primerange
print(sum(primerange(2, 50)))
</tool_call>
```output
328
```
So the sum of the primes is $\boxed{328}$.
Problem: Let $f(n) = n^2 + n + 41$. Find the smallest positive integer $n$ for which $f(n)$ is not prime.
<tool_call>
import sympy
n = 1
while sympy.isprime(n * n + n + 41):
    n += 1
print(n)
</tool_call>
```output
40
```
The smallest such integer is $\boxed{40}$.
Problem: What is the value of $\binom{10}{3} + \binom{10}{4}$?
Solution: By Pascal's rule, $\binom{10}{3} + \binom{10}{4} = \binom{11}{4} = 330$. The answer is $\boxed{330}$.
Problem: Solve for $x$: $3x - 7 = 2x + 5$.
Solution: Subtracting $2x$ from both sides gives $x - 7 = 5$, so $x = 12$. The answer is $\boxed{12}$.
def gcd(a, b):
    while b:
        a, b = b, a % b
    return a

def is_prime(n):
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True

result = [k for k in range(1, 1000) if is_prime(k) and gcd(k, 30) == 1]
print(len(result), sum(result) % 1000)
Therefore, the answer is the remainder modulo $1000$. We compute the probability, the expected value,
the number of integer solutions, the sum of the digits, and the greatest common divisor.
Let $n$ be a positive integer. Suppose that the polynomial $P(x) = x^3 - 6x^2 + 11x - 6$ has roots $r$, $s$, $t$.
Then $r + s + t = 6$, $rs + st + tr = 11$ and $rst = 6$, so the roots are $1$, $2$ and $3$.
"""


def default_cache_dir() -> Path:
    """``$RAYSOLVE_CACHE`` if set, else ``~/.cache/raysolve``."""
    env = os.environ.get("RAYSOLVE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "raysolve"


def ensure_random_model(path: str | Path | None = None, seed: int = 0) -> Path:
    """Return the directory of the tiny random model, creating it if absent.

    ``path`` defaults to ``<cache>/models/random-qwen2-tiny`` (``<cache>`` is
    ``$RAYSOLVE_CACHE`` or ``~/.cache/raysolve``), with a ``-seed<N>`` suffix for
    a non-zero seed. An existing directory is reused when its marker file says it
    was built by this function with the same seed and format; a directory that is
    not such a model raises ``FileExistsError`` rather than being overwritten.
    """
    if path is None:
        name = DEFAULT_MODEL_NAME if seed == 0 else f"{DEFAULT_MODEL_NAME}-seed{seed}"
        path = default_cache_dir() / "models" / name
    target = Path(path).expanduser().resolve()
    if _is_complete(target, seed):
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _build(tmp, seed)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        try:
            os.replace(tmp, target)  # atomic; fails if another process already published
        except OSError:
            if not _is_complete(target, seed):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not _is_complete(target, seed):
        raise FileExistsError(f"{target} exists and is not a raysolve random model with seed={seed}")
    return target


def _is_complete(target: Path, seed: int) -> bool:
    marker = target / _MARKER
    if not marker.is_file():
        if target.exists() and any(target.iterdir()):
            raise FileExistsError(f"{target} exists and is not a raysolve random model")
        return False
    info = json.loads(marker.read_text())
    if info.get("seed") != seed or info.get("format") != _FORMAT_VERSION:
        raise FileExistsError(
            f"{target} holds a random model with seed={info.get('seed')} format={info.get('format')}, "
            f"not seed={seed} format={_FORMAT_VERSION}; pass another path"
        )
    return True


def _build_tokenizer():
    from raysolve.tiny.tokenizer import build_tokenizer

    return build_tokenizer([line + "\n" for line in _CORPUS.strip().split("\n")], _VOCAB_TARGET)


def _build(out: Path, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = _build_tokenizer()
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    pad_id = tokenizer.convert_tokens_to_ids(PAD)
    config = Qwen2Config(
        vocab_size=len(tokenizer),  # exact: a random model must not emit ids the tokenizer lacks
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        initializer_range=0.2,  # peakier than the usual 0.02: greedy output is not one repeated token
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
        do_sample=True,
        temperature=0.7,
        top_p=0.95,
        max_new_tokens=1024,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    (out / _MARKER).write_text(
        json.dumps(
            {
                "format": _FORMAT_VERSION,
                "seed": seed,
                "parameters": n_params,
                "note": "randomly initialised placeholder created by raysolve.engines.testing.random_model",
            },
            indent=2,
        )
    )

"""Per-request seeded sampling for transformers' continuous-batching manager (the ``hf`` backend).

The manager samples with ``torch.multinomial`` on the process-global RNG (seeded once
per manager); it has no per-request seed or generator. So the engine does its own
sampling, in a logits-processor list installed in the manager (`SeededSampling`), and
leaves the manager in argmax mode (``do_sample=False``): for each request it scales by
the request's temperature, applies its top-k and top-p, and adds Gumbel noise that is a
pure function of ``(seed, index of the token in the segment, token id)`` (a
counter-based hash, no RNG state), so that the argmax the manager takes is an exact
sample from the filtered softmax (Gumbel-max trick). Temperature, top-p, top-k, seed
and greedy are all per request.

Guaranteed: a request is never decoded greedily unless ``greedy=True``; two requests
with different seeds draw independent noise (equal only by a 64-bit key collision); the
noise for a request does not depend on what else is in the batch or on its timing. The
same seed and prompt twice give the same tokens whenever the model's logits are bitwise
equal in both runs — always so on CPU in our tests, but batched kernels may round
differently for different batch compositions (in particular on GPU), and a flipped
near-tie then changes the continuation. Reproducibility is therefore "same seed, same
batch layout, same hardware", not absolute (seen on an H200: float32 reproduced a sample
alone and inside a batch of 8, bfloat16 did not; the same batch run twice matched in both).

Imports torch and transformers: only ``HFEngine.start()`` imports this module.
"""

from __future__ import annotations

import torch
from transformers.generation.continuous_batching.cb_logits_processors import (
    ContinuousBatchingLogitsProcessorList,
)
from transformers.generation.logits_process import LogitsProcessorList

__all__ = ["SeededSampling", "gumbel_noise"]

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
_HASH_MUL = 0x45D9F3B  # < 2**27, so products of 32-bit values stay far below 2**63 in int64
_TWO_POW_M24 = 1.0 / (1 << 24)


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _to_int32(u: int) -> int:
    return u - (1 << 32) if u & 0x80000000 else u


def _noise_key(seed: int, index: int) -> tuple[int, int]:
    """Two 32-bit words (as signed int32) keyed by (seed, token index)."""
    z = _splitmix64(_splitmix64(seed & _M64) ^ index)
    return _to_int32(z & _M32), _to_int32(z >> 32)


def _hash32_(x: torch.Tensor) -> torch.Tensor:
    """In-place 32-bit integer mix of an int64 tensor holding values in [0, 2**32)."""
    x.bitwise_xor_(x >> 16).mul_(_HASH_MUL).bitwise_and_(_M32)
    x.bitwise_xor_(x >> 16).mul_(_HASH_MUL).bitwise_and_(_M32)
    return x.bitwise_xor_(x >> 16)


def gumbel_noise(key_a: torch.Tensor, key_b: torch.Tensor, vocab_base: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise of shape ``[rows, vocab]``, a pure function of the keys and the token id.

    ``key_a``/``key_b``: int64 ``[rows]`` in [0, 2**32); ``vocab_base``: int64 ``[vocab]`` per-token hashes.
    """
    h = vocab_base.unsqueeze(0) ^ key_a.unsqueeze(1)
    h = _hash32_(h)
    h.bitwise_xor_(key_b.unsqueeze(1))
    h = _hash32_(h)
    u = ((h >> 8).to(torch.float32) + 0.5) * _TWO_POW_M24  # 24 bits, strictly inside (0, 1)
    return -torch.log(-torch.log(u))


class SeededSampling(ContinuousBatchingLogitsProcessorList):
    """Per-request temperature / top-k / top-p / seeded Gumbel noise, for a manager in argmax mode.

    The manager stores one int32 row per "tensor" for every sequence of a batch and hands
    us the rows of the sequences that sample a token this step, in order. Rows:
    0-1 noise key, 2 temperature (float32 bits), 3 top-p (float32 bits), 4 top-k, 5 greedy.
    """

    ROWS = 6
    KWARGS: dict[str, type] = {"seed": int, "temperature": float, "top_p": float, "top_k": int, "greedy": bool}

    def __init__(self) -> None:
        super().__init__(LogitsProcessorList(), per_request_processors=False, drop_unsupported_processors=True)
        self.tensors_required = self.ROWS
        self.supported_keys = dict(self.KWARGS)
        self.ignored_keys = set()
        self.do_processing = True
        self._filter = False  # set per batch on the host: does any sampled row use top-k / top-p?
        self._vocab_base: dict[tuple[int, str], torch.Tensor] = {}

    def __repr__(self) -> str:
        return "SeededSampling(per-request seed/temperature/top_k/top_p/greedy)"

    def check_kwargs(self, kwargs: dict) -> None:
        for key, value in kwargs.items():
            expected = self.KWARGS.get(key)
            if expected is None:
                raise ValueError(f"unknown sampling option {key!r}")
            if not isinstance(value, expected):
                raise TypeError(f"sampling option {key!r} must be {expected.__name__}, got {type(value).__name__}")

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        # Only padding rows ever read these: greedy, temperature 1, no filter.
        one = torch.tensor([1.0], dtype=torch.float32).view(torch.int32).item()
        defaults = torch.tensor([0, 0, one, one, 0, 1], dtype=torch.int32)
        int32_tensor.copy_(defaults.view(self.ROWS, 1).to(int32_tensor.device))

    def prepare_tensor_args(self, requests_in_batch: list, arg_storage: torch.Tensor) -> torch.Tensor:
        rows: list[list[int]] = [[], [], [], [], []]
        floats: list[float] = []
        need_filter = False
        for future in requests_in_batch:
            if not future.has_new_token:
                continue
            state = future.state
            kw = state.logit_processor_kwargs
            greedy = kw.get("greedy", False)
            # Index of the token sampled now within the segment. A request the manager had
            # to re-prefill carries its earlier tokens in its prompt (`_true_initial_tokens`).
            index = len(state.generated_tokens)
            true_initial = getattr(state, "_true_initial_tokens", 0)
            if true_initial:
                index += len(state.initial_tokens) - true_initial
            a, b = _noise_key(kw.get("seed", 0), index)
            top_k = kw.get("top_k", 0)
            top_p = kw.get("top_p", 1.0)
            rows[0].append(a)
            rows[1].append(b)
            rows[2].append(top_k)
            rows[3].append(1 if greedy else 0)
            floats.append(1.0 if greedy else kw.get("temperature", 1.0))
            floats.append(top_p)
            if not greedy and (top_k > 0 or top_p < 1.0):
                need_filter = True
        n = len(floats) // 2
        self._filter = need_filter
        if n == 0:
            return arg_storage
        packed = torch.empty((self.ROWS, n), dtype=torch.int32)
        packed[0] = torch.tensor(rows[0], dtype=torch.int32)
        packed[1] = torch.tensor(rows[1], dtype=torch.int32)
        packed[2:4] = torch.tensor(floats, dtype=torch.float32).view(n, 2).t().contiguous().view(torch.int32)
        packed[4] = torch.tensor(rows[2], dtype=torch.int32)
        packed[5] = torch.tensor(rows[3], dtype=torch.int32)
        arg_storage[: self.ROWS, :n] = packed.to(arg_storage.device)
        return arg_storage

    def _base(self, vocab: int, device: torch.device) -> torch.Tensor:
        key = (vocab, str(device))
        base = self._vocab_base.get(key)
        if base is None:
            ids = torch.arange(vocab, dtype=torch.int64, device=device)
            base = _hash32_((ids * 0x9E3779B1 + 0x7F4A7C15) & _M32)
            self._vocab_base[key] = base
        return base

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, args: torch.Tensor) -> torch.Tensor:
        return self.sample_scores(scores, args)

    def sample_scores(self, scores: torch.Tensor, args: torch.Tensor) -> torch.Tensor:
        """Scores whose argmax is each row's sample. ``scores``: float ``[rows, vocab]``."""
        n, vocab = scores.shape
        args = args[:, :n]
        key_a = args[0].to(torch.int64) & _M32
        key_b = args[1].to(torch.int64) & _M32
        temperature = args[2].contiguous().view(torch.float32)
        top_p = args[3].contiguous().view(torch.float32)
        top_k = args[4].to(torch.int64)
        sample = (args[5] == 0).to(scores.dtype)

        scores = scores / temperature.unsqueeze(1)
        if self._filter:
            sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
            ranks = torch.arange(vocab, device=scores.device).unsqueeze(0)
            k = torch.where(top_k > 0, top_k, vocab).unsqueeze(1)
            drop = ranks >= k
            probs = sorted_scores.softmax(dim=-1)
            drop |= (probs.cumsum(dim=-1) - probs) >= top_p.unsqueeze(1)  # the top token always stays
            scores = scores.masked_fill(torch.zeros_like(drop).scatter(1, order, drop), float("-inf"))
        noise = gumbel_noise(key_a, key_b, self._base(vocab, scores.device))
        return scores + noise * sample.unsqueeze(1)

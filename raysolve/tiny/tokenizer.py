"""A byte-level BPE tokenizer for the project's tiny models, trained offline.

Qwen2's pre-tokenisation (NFC, Qwen's split regex with one digit per piece,
byte-level), so ``AutoTokenizer`` — which maps a ``qwen2`` model to
``Qwen2Tokenizer`` and installs exactly this pipeline on load — encodes the same
way as the object built here. ``<|endoftext|>`` (pad), ``<|im_start|>`` and
``<|im_end|>`` (eos) are special tokens; ``<tool_call>`` / ``</tool_call>`` are
added, not special, as in Qwen2.5 (decoding with ``skip_special_tokens=True``
keeps them). All five always encode to one token. The tokenizer carries a
Qwen-style ChatML chat template.
"""

from __future__ import annotations

from typing import Any, Iterable

PAD = "<|endoftext|>"
IM_START = "<|im_start|>"
EOS = "<|im_end|>"
CODE_BEGIN = "<tool_call>"
CODE_END = "</tool_call>"
MARKERS = (PAD, IM_START, EOS, CODE_BEGIN, CODE_END)

# Qwen2.5-style ChatML, without Qwen's default system prompt (a system message is
# rendered only when the caller passes one).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)


def build_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Any:
    """Train a ``PreTrainedTokenizerFast`` on ``texts`` (deterministic for the same texts)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[PAD, IM_START, EOS],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in (CODE_BEGIN, CODE_END)])

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=[IM_START],
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    for t in MARKERS:
        ids = fast.encode(t, add_special_tokens=False)
        if len(ids) != 1:  # pragma: no cover - guards the construction above
            raise RuntimeError(f"{t!r} does not encode to a single token: {ids}")
    return fast

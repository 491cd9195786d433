"""Prompt templates, code tags and the output-block format (OpenMath "openmath" tags).

The model writes code between ``<tool_call>`` and ``</tool_call>``; generation stops
at the end tag, the code runs, and its output is appended as an output block.
This module turns text into token ids and back through a ``TokenCodec``; it knows
nothing of engines, sandboxes or Ray.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

DEFAULT_USER_TEMPLATE = (
    "Solve the following math problem, integrating natural language reasoning with "
    "Python code executions.\n"
    "You may perform up to {max_code_calls} Python code calls to assist your reasoning.\n"
    "Make sure to put the answer (and only answer) inside \\boxed{{}}.\n\n"
    "{problem}"
)

DEFAULT_REMAINING_NOTE = (
    "Remaining code calls: {remaining}. You will not be able to call code when you run "
    "out, so use them wisely. You can still solve the problem without code after that.\n"
)

DEFAULT_LIMIT_NOTE = "Code call limit reached: the code above was not run. Continue without code.\n"


@runtime_checkable
class TokenCodec(Protocol):
    """Text <-> token ids, plus the ids the tool loop must recognise."""

    eos_token_ids: tuple[int, ...]
    code_end_token_id: int | None
    """Id of the code-end tag when it is a single token (Qwen2.5 family); else None."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The chat-templated prompt text, ending where the assistant starts."""
        ...


class HFTokenCodec:
    """`TokenCodec` over a Hugging Face tokenizer and its chat template."""

    def __init__(self, tokenizer: Any, code_end: str = "</tool_call>") -> None:
        self.tokenizer = tokenizer
        ids = tokenizer.encode(code_end, add_special_tokens=False)
        self.code_end_token_id = ids[0] if len(ids) == 1 else None
        eos = tokenizer.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        self.eos_token_ids = tuple(i for i in eos_ids if i is not None)

    @classmethod
    def from_pretrained(cls, path: str, code_end: str = "</tool_call>") -> "HFTokenCodec":
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(path), code_end=code_end)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


_FENCE = re.compile(r"^\s*```(?:python|py)?\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)


@dataclass(frozen=True)
class PromptFormat:
    """How problems become prompts and how tool output goes back into the text."""

    user_template: str = DEFAULT_USER_TEMPLATE
    system: str | None = None
    code_begin: str = "<tool_call>"
    code_end: str = "</tool_call>"
    output_begin: str = "\n```output\n"
    output_end: str = "```\n"
    max_output_chars: int = 200
    """Characters of tool output shown to the model (the AIMO-2 winners used 200)."""
    remaining_note: str = DEFAULT_REMAINING_NOTE
    """Appended after each output block; empty to disable."""
    limit_note: str = DEFAULT_LIMIT_NOTE

    def messages(self, problem: str, max_code_calls: int) -> list[dict[str, str]]:
        user = self.user_template.format(problem=problem, max_code_calls=max_code_calls)
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": user}]

    def prompt_ids(self, codec: TokenCodec, problem: str, max_code_calls: int) -> list[int]:
        return codec.encode(codec.render_chat(self.messages(problem, max_code_calls)))

    def extract_code(self, text: str) -> str | None:
        """The code of the last complete-or-open tool call in ``text``, fences removed."""
        start = text.rfind(self.code_begin)
        if start < 0:
            return None
        body = text[start + len(self.code_begin):]
        end = body.find(self.code_end)
        if end >= 0:
            body = body[:end]
        fenced = _FENCE.match(body)
        return (fenced.group(1) if fenced else body).strip("\n")

    def truncate_output(self, output: str, keep_tail: bool = False) -> str:
        """The first ``max_output_chars`` characters, or the last ones with ``keep_tail``
        (an error's message is the last line of its traceback)."""
        n = self.max_output_chars
        if len(output) <= n:
            return output
        return "<output cut>\n" + output[len(output) - n:] if keep_tail else output[:n] + "\n<output cut>"

    def output_block(self, output: str, remaining_calls: int, failed: bool = False) -> str:
        """The text appended after ``</tool_call>``: output block, then the calls left."""
        shown = self.truncate_output(output, keep_tail=failed)
        if shown and not shown.endswith("\n"):
            shown += "\n"
        note = self.remaining_note.format(remaining=remaining_calls) if self.remaining_note else ""
        return f"{self.output_begin}{shown}{self.output_end}{note}"

    def limit_block(self) -> str:
        """Appended instead of an output block when the sample has no code calls left."""
        return f"{self.output_begin}{self.limit_note}{self.output_end}"

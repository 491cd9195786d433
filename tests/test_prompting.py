"""Prompt rendering, code extraction and the output block."""

from raysolve.engines.testing.scripted import CharCodec
from raysolve.core.prompting import PromptFormat


def test_prompt_states_the_code_call_limit_and_renders_through_the_chat_template():
    fmt = PromptFormat()
    codec = CharCodec()
    text = codec.decode(fmt.prompt_ids(codec, "What is 1+1?", max_code_calls=3))
    assert "up to 3 Python code calls" in text and "What is 1+1?" in text and "\\boxed{}" in text
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")


def test_extract_code_takes_the_last_call_and_strips_fences():
    fmt = PromptFormat()
    text = "a<tool_call>\nprint(1)\n</tool_call>b<tool_call>\n```python\nx = 2\nprint(x)\n```\n</tool_call>"
    assert fmt.extract_code(text) == "x = 2\nprint(x)"
    assert fmt.extract_code("no code here") is None
    assert fmt.extract_code("<tool_call>print(3)") == "print(3)"


def test_output_block_truncates_and_counts_remaining_calls():
    fmt = PromptFormat(max_output_chars=10)
    block = fmt.output_block("0123456789abcdef", remaining_calls=2)
    assert block.startswith("\n```output\n0123456789\n<output cut>\n```\n")
    assert "Remaining code calls: 2." in block
    assert PromptFormat(remaining_note="").output_block("5", 1) == "\n```output\n5\n```\n"


def test_failed_output_keeps_the_error_line():
    fmt = PromptFormat(max_output_chars=40)
    tb = "Traceback (most recent call last):\n  File \"<cell 1>\", line 1\nNameError: name 'q' is not defined"
    block = fmt.output_block(tb, remaining_calls=1, failed=True)
    assert "<output cut>\n" in block and "NameError: name 'q' is not defined" in block

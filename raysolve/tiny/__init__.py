"""The project's tiny tool-integrated math model: its problem generator (``families``),
training transcripts (``dataset``), tokenizer, training loop, and the trained model
itself in ``model/`` — the ``hf`` backend's embedded default (``model: tiny``)."""

from pathlib import Path

MODEL_DIR = Path(__file__).parent / "model"
"""The shipped model: a Qwen2ForCausalLM and its tokenizer, loadable offline."""

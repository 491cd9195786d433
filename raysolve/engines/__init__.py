"""Inference backends behind the `Engine` protocol (`raysolve.core.protocols`).

``make_engine(backend, **options)`` builds one by name. Backend modules are
imported lazily, so importing this package never imports torch, transformers or vLLM.
"""

from __future__ import annotations

import importlib
from typing import Any

from raysolve.core.protocols import Delta, Engine, FinishReason, GenerationRequest

__all__ = ["BACKENDS", "NOT_MODELS", "Delta", "Engine", "FinishReason", "GenerationRequest", "make_engine"]

BACKENDS: dict[str, tuple[str, str, str]] = {
    "hf": ("raysolve.engines.hf", "HFEngine", "HFEngineConfig"),
    "scripted": ("raysolve.engines.testing.scripted", "ScriptedEngine", "ScriptedEngineConfig"),
    "vllm": ("raysolve.engines.vllm", "VLLMEngine", "VLLMEngineConfig"),
    "trtllm": ("raysolve.engines.trtllm", "TRTLLMEngine", "TRTLLMEngineConfig"),
    "loadgen": ("raysolve.engines.testing.loadgen", "LoadGenEngine", "LoadGenConfig"),
    "toolmix": ("raysolve.engines.testing.toolmix", "ToolMixEngine", "ToolMixConfig"),
}
"""backend name -> (module, engine class, config dataclass). ``scripted`` is the TEST engine and
``loadgen`` the BENCHMARK engine (a load generator), ``toolmix`` a BENCHMARK wrapper that puts code
calls into a real engine's samples: none of them is a model backend."""

NOT_MODELS = frozenset({"scripted", "loadgen", "toolmix"})


def make_engine(backend: str, **options: Any) -> Engine:
    """Build the engine named ``backend``; ``options`` are the fields of its config dataclass."""
    try:
        module_name, engine_name, config_name = BACKENDS[backend]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown engine backend {backend!r}; known backends: {known}") from None
    module = importlib.import_module(module_name)
    config_cls = getattr(module, config_name)
    try:
        config = config_cls(**options)
    except TypeError as exc:
        raise TypeError(f"bad options for engine backend {backend!r}: {exc}") from exc
    return getattr(module, engine_name)(config)

"""Restricted Python sessions for model-written code: worker processes with OS
limits (``LocalSandbox``) and a Ray actor front (``SandboxPool``/``RemoteSandbox``).

Importing this package imports neither Ray nor numpy/sympy; the Ray names are
loaded on first use.
"""

from __future__ import annotations

from typing import Any

from raysolve.core.protocols import ExecResult, ExecStatus, Sandbox
from raysolve.sandbox.config import SandboxConfig
from raysolve.sandbox.session import LocalSandbox

__all__ = [
    "ExecResult",
    "ExecStatus",
    "LocalSandbox",
    "RemoteSandbox",
    "Sandbox",
    "SandboxConfig",
    "SandboxPool",
    "sandbox_pool_actor",
]

_RAY_NAMES = {"RemoteSandbox", "SandboxPool", "sandbox_pool_actor"}


def __getattr__(name: str) -> Any:
    if name in _RAY_NAMES:
        from raysolve.sandbox import actor

        return getattr(actor, name)
    raise AttributeError(f"module 'raysolve.sandbox' has no attribute {name!r}")

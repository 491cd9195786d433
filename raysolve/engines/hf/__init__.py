"""The ``hf`` backend: transformers' continuous batching behind the `Engine` protocol.

- ``engine.py``: `HFEngine` and `HFEngineConfig` (requests, streams, cancellation, the bridge thread);
- ``sampler.py``: per-request seeded sampling inside the manager (imports torch; loaded by ``start()``);
- ``compat.py``: what is read of transformers' internals, per release.

Importing this package imports neither torch nor transformers (``raysolve.engines.BACKENDS``
promises cheap imports); ``HFEngine.start()`` does.
"""

from raysolve.engines.hf.engine import HFEngine, HFEngineConfig

__all__ = ["HFEngine", "HFEngineConfig"]

"""What the ``hf`` backend reads of transformers' continuous batching beyond its documented API,
for each transformers release it runs on (5.17 and 5.23 on CPU).

Internals relied on
    The sampler replaces ``manager.logit_processor`` before the manager's thread builds
    its batch processor and reads ``RequestState.generated_tokens`` / ``initial_tokens``
    / ``_true_initial_tokens`` for the token index (``sampler.py``); the request status
    codes below; and the paged cache's bookkeeping, whose layout changed between 5.17
    (one ``BlockManager``, per-group cache managers) and 5.23 (sectors shared by
    per-attention-type allocators). Each helper here reads either layout, so a version
    change breaks in this one file.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

__all__ = ["FAILED", "FINISHED", "attn_implementation", "cache_stats", "capacity_tokens",
           "continuous_batching_config", "stop_manager"]

FINISHED = 3
"""transformers' ``RequestStatus.FINISHED``."""
FAILED = 4
"""transformers' ``RequestStatus.FAILED``."""


def attn_implementation(name: str) -> str:
    """The attention name to load the model with. 5.23 deprecates the ``paged|`` prefix except
    for ``paged|eager`` (SDPA is paged natively); 5.17 adds the prefix itself."""
    return "sdpa" if name == "paged|sdpa" else name


def continuous_batching_config(**options: Any) -> Any:
    """A ``ContinuousBatchingConfig`` from ``options`` (5.23 names); fields this release lacks
    are dropped, and ``page_size`` becomes ``block_size`` on 5.17."""
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    known = {f.name for f in dataclasses.fields(ContinuousBatchingConfig)}
    if "page_size" not in known and "page_size" in options:
        options["block_size"] = options.pop("page_size")
    return ContinuousBatchingConfig(**{k: v for k, v in options.items() if k in known})


def stop_manager(manager: Any) -> None:
    """Stop the manager's thread and release its cache (blocks up to ten seconds)."""
    try:
        manager.stop(block=True, timeout=10.0, hard_stop=True)
    finally:
        manager.destroy()


def capacity_tokens(cache: Any) -> int:
    """Tokens the whole paged cache holds."""
    allocators = getattr(cache, "cache_allocators", None)
    if allocators is not None:  # >= 5.2x
        return min(a.num_blocks * a.tokens_per_page for a in allocators.values())
    return int(cache.num_blocks * cache.block_size)  # 5.17


def read_cache_stats(cache: Any) -> dict[str, int]:
    """Block counts of the paged cache (see ``HFEngine.cache_stats``)."""
    holders: set[str] = set()
    allocators = getattr(cache, "cache_allocators", None)
    if allocators is not None:  # >= 5.2x
        for allocator in allocators.values():
            holders.update(rid for rid, blocks in allocator.block_table.items() if blocks)
        cached = sum(len(allocator.ledger.cached_blocks) for allocator in allocators.values())
        free = round(cache.compute_free_capacity(relative=True) * cache.num_blocks)
    else:  # 5.17: "initialised" blocks are unreferenced blocks kept for prefix sharing
        for group in cache.group_cache_managers:
            holders.update(rid for rid, blocks in group.block_table.items() if blocks)
        cached = len(cache._block_manager._init_block_ids)
        free = cache.get_num_free_blocks() - cached
    return {
        "blocks_total": int(cache.num_blocks),
        "blocks_free": int(free),
        "blocks_cached": int(cached),
        "requests_holding_blocks": len(holders),
    }


def cache_stats(manager: Any) -> dict[str, int]:
    """``read_cache_stats`` of the manager's cache, read between two of its steps."""
    cache = manager.batch_processor.cache
    if hasattr(manager, "pause"):  # >= 5.2x: read between two steps
        with manager.pause():
            return read_cache_stats(cache)
    for _ in range(100):  # 5.17 cannot pause its loop: retry a read that raced with it
        try:
            return read_cache_stats(cache)
        except RuntimeError:
            time.sleep(0.001)
    return read_cache_stats(cache)

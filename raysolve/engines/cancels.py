"""Bookkeeping shared by the backends for cancels that arrive before their request.

A sample's cancel can overtake its ``generate`` call (the coordinator settles a
problem while the engine actor is still rendering the next segment). Backends
remember such ids for a while and end that stream ``cancelled`` without running it.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class EarlyCancels:
    """Ids cancelled before their ``generate`` started; bounded in count and age."""

    def __init__(self, max_ids: int = 4096, ttl_s: float = 300.0) -> None:
        self.max_ids = max_ids
        self.ttl_s = ttl_s
        self._ids: OrderedDict[str, float] = OrderedDict()

    def add(self, request_id: str) -> None:
        now = time.monotonic()
        self._ids[request_id] = now
        self._ids.move_to_end(request_id)
        while self._ids and (
            len(self._ids) > self.max_ids or now - next(iter(self._ids.values())) > self.ttl_s
        ):
            self._ids.popitem(last=False)

    def pop(self, request_id: str) -> float | None:
        """The time the early cancel arrived, or None; forgets the id."""
        return self._ids.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._ids)

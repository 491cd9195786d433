"""`LibraryEngine`: the one skeleton of the backends that adapt an async LLM library (vLLM, TensorRT-LLM).

Both libraries take one request, stream its outputs, and stop it on ``abort``. What the
`Engine` protocol adds on top is the same for both and lives here once: refusing bad
requests before the library sees them (``common.preflight``), remembering cancels that
overtake their ``generate`` (``common.EarlyCancels``), the request counters, turning the
library's outputs into deltas, ending a stream ``cancelled`` only when we asked for it,
and aborting the library request when the consumer stops listening (so its KV cache is
freed). A backend implements the hooks: build and submit the library request, read one
output, name the stop token, abort, release, and load/shut down the library.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any, AsyncIterator, ClassVar, Generic, TypeVar

from raysolve.core.protocols import Delta, GenerationRequest
from raysolve.engines.common import (
    EarlyCancels,
    count_final,
    library_error_kind,
    library_request_problem,
    preflight,
    request_counters,
)

__all__ = ["LibraryEngine", "Output"]

ConfigT = TypeVar("ConfigT")

Output = tuple[list[int], str | None, Any]
"""One library output as the skeleton sees it: (new token ids, the library's finish reason or
None while the request runs, the library's stop reason)."""


class LibraryEngine(ABC, Generic[ConfigT]):
    """`Engine` over an async LLM library; subclasses implement the hooks below.

    A *handle* is what ``_submit`` returns for one request: an async iterable of the
    library's outputs (vLLM's generator, TensorRT-LLM's ``RequestOutput``)."""

    backend: ClassVar[str]
    """Backend name, the prefix of error texts."""
    config_class: ClassVar[type]
    room_name: ClassVar[str]
    """The config field that bounds prompt plus generation (``max_model_len``, ``max_seq_len``)."""
    abort_reason: ClassVar[str]
    """The library's finish reason for an aborted request."""

    def __init__(self, config: ConfigT | None = None, **options: Any) -> None:
        if config is not None and options:
            raise TypeError(f"pass either a {self.config_class.__name__} or keyword options, not both")
        self.config: ConfigT = config if config is not None else self.config_class(**options)
        self.llm: Any = None
        """The library's engine; None until ``start()`` and after ``close()``."""
        self.tokenizer: Any = None
        self._active: dict[str, Any] = {}
        """Running request id -> its handle."""
        self._cancelled: set[str] = set()
        """Running request ids that ``cancel`` was called for: only these end ``cancelled``."""
        self._early = EarlyCancels()
        self._start_lock = asyncio.Lock()
        self._counters = request_counters()

    # ------------------------------------------------------------------ hooks

    @abstractmethod
    async def _load(self) -> None:
        """Import the library, build its engine into ``self.llm`` and load ``self.tokenizer``."""

    @abstractmethod
    def _shutdown(self, llm: Any) -> None:
        """Stop the library's engine (runs in a worker thread)."""

    @abstractmethod
    def _room(self) -> int:
        """Tokens one request may hold, prompt plus generation."""

    @abstractmethod
    def _submit(self, request: GenerationRequest, max_tokens: int) -> Any:
        """Hand ``request`` to the library; returns its handle. Raising ends the stream ``error``."""

    @abstractmethod
    def _read(self, output: Any) -> Output:
        """One library output as (new token ids, finish reason or None, stop reason)."""

    @abstractmethod
    def _stop(self, request: GenerationRequest, new: list[int], stop_reason: Any) -> tuple[list[int], int | None]:
        """For a ``stop`` finish: the final token ids and the stop token that ended them (None: EOS
        or unknown)."""

    @abstractmethod
    async def _abort(self, request_id: str, handle: Any) -> None:
        """Ask the library to stop the request and free its cache."""

    async def _release(self, handle: Any, finished: bool) -> None:
        """After the stream: release what the library still holds for the request (``finished``:
        its final output was read)."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the library's engine and the tokenizer. Idempotent."""
        async with self._start_lock:
            if self.llm is None:
                await self._load()

    async def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            await asyncio.to_thread(self._shutdown, llm)

    def stats(self) -> dict[str, float]:
        return {**{k: float(v) for k, v in self._counters.items()}, "active": float(len(self._active))}

    # ------------------------------------------------------------------ requests

    async def cancel(self, request_id: str) -> None:
        handle = self._active.get(request_id)
        if handle is None:
            self._early.add(request_id)
            return
        if request_id in self._cancelled:
            return
        self._cancelled.add(request_id)
        self._counters["requests_cancelled"] += 1
        await self._abort(request_id, handle)  # the stream then ends with the library's abort output

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        rid = request.request_id
        problem = library_request_problem(request, self.llm is not None, rid in self._active)
        max_tokens, refused = preflight(request, problem, self._early, self._room(), self.room_name, self._counters)
        if refused is not None:
            yield refused
            return
        try:
            handle = self._submit(request, max_tokens)
        except Exception as exc:  # the library rejected the request (validation)
            self._counters["requests_failed"] += 1
            yield self._error(exc)
            return
        self._active[rid] = handle
        self._counters["requests_started"] += 1
        finished = False
        try:
            async for output in handle:
                new, reason, stop_reason = self._read(output)
                if reason is None:
                    if new:
                        self._counters["tokens_generated"] += len(new)
                        yield Delta(token_ids=new)
                    continue
                finished = True
                final = self._final_delta(request, new, reason, stop_reason, cancelled=rid in self._cancelled)
                yield count_final(final, self._counters)
                return
            finished = True  # the stream ended without a final output: only after an abort
            yield Delta(finish_reason="cancelled")
        except Exception as exc:  # the library's engine failed under this request
            finished = True
            self._counters["requests_failed"] += 1
            yield self._error(exc)
        finally:
            self._active.pop(rid, None)
            cancelled = rid in self._cancelled
            self._cancelled.discard(rid)
            if not finished and not cancelled:  # the consumer stopped listening: free the library's request
                self._counters["requests_cancelled"] += 1
                await self._abort(rid, handle)
            await self._release(handle, finished)

    def _final_delta(self, request: GenerationRequest, new: list[int], reason: str, stop_reason: Any,
                     cancelled: bool) -> Delta:
        """Map the library's finish reason onto the project's; an abort we did not ask for is an error."""
        if reason == self.abort_reason:
            if cancelled:
                return Delta(token_ids=new, finish_reason="cancelled")
            return Delta(token_ids=new, finish_reason="error", error=f"{self.backend} aborted the request")
        if reason == "stop":
            new, stop = self._stop(request, new, stop_reason)
            return Delta(token_ids=new, finish_reason="stop", stop=stop)
        if reason == "length":
            return Delta(token_ids=new, finish_reason="length")
        return Delta(token_ids=new, finish_reason="error", error=f"{self.backend} finished the request with {reason!r}")

    def _error(self, exc: Exception) -> Delta:
        return Delta(finish_reason="error", error=f"{self.backend}: {type(exc).__name__}: {exc}",
                     error_kind=library_error_kind(exc))

"""TEST DOUBLE: a FAKE ``tensorrt_llm`` for tests (see ../README.md). Not TensorRT-LLM.

Follows the documented shapes of TensorRT-LLM 1.2's LLM API (PyTorch backend): ``LLM``,
``SamplingParams``, ``RequestOutput`` updated in place while streaming, ``abort()``
ending in a final ``cancelled`` output, ``token_ids_diff``. It RECORDS what the adapter
sends (``LLM.args``, ``LLM.requests``, ``LLM.abort_calls``), which is what tests assert
on; its tokens (``FAKE.script``, else arbitrary ids) only feed the adapter's streaming.
It models no sampling: seeds, temperatures and samplers are recorded, not honoured.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

__version__ = "1.2.1+fake"

EOS_ID = 2
"""The fake model's end id (``SamplingParams.end_id`` overrides it)."""


@dataclass
class _Knobs:
    """Test controls (not part of TensorRT-LLM's API)."""

    step_s: float = 0.001
    vocab: int = 1000
    script: Callable[[list[int], "SamplingParams"], list[int]] | None = None
    """Tokens a request produces, from its prompt and params (before stop/EOS/length rules);
    None: arbitrary ids that never hit EOS."""
    instances: list["LLM"] = field(default_factory=list)
    drop_stop_tokens: bool = False
    """Leave matched stop tokens out of the output even with ``include_stop_str_in_output``."""


FAKE = _Knobs()


@dataclass
class SamplingParams:
    """The documented defaults: ``max_tokens=32``; greedy when temperature/top_p/top_k are unset
    (recorded, not modelled)."""

    max_tokens: int = 32
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    n: int = 1
    stop: list[str] | str | None = None
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    end_id: int | None = None
    detokenize: bool = True
    logprobs: int | None = None


@dataclass
class CompletionOutput:
    index: int = 0
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    """Cumulative."""
    token_ids_diff: list[int] = field(default_factory=list)
    """New since the previous update."""
    text_diff: str = ""
    finish_reason: str | None = None
    """``stop``, ``length``, ``timeout`` or ``cancelled``."""
    stop_reason: int | str | None = None


class RequestOutput:
    """Returned at once by ``generate_async``; iterating yields this same object, updated in place."""

    def __init__(self, request_id: int, prompt_token_ids: list[int], abort_calls: list[int]) -> None:
        self.request_id = request_id
        self.prompt_token_ids = prompt_token_ids
        self.outputs = [CompletionOutput()]
        self.finished = False
        self._aborted = False
        self._responses: asyncio.Queue[tuple[list[int], str | None, Any]] = asyncio.Queue()
        """Executor responses, applied to this object when the consumer takes them (as TRT-LLM
        does), so ``token_ids_diff`` is always relative to the previous update it saw."""
        self._task: asyncio.Task | None = None
        self._abort_calls = abort_calls

    def abort(self) -> None:
        """Ask the executor to stop the request; a final ``cancelled`` output follows."""
        self._abort_calls.append(self.request_id)
        self._aborted = True

    def __aiter__(self) -> "RequestOutput":
        return self

    async def __anext__(self) -> "RequestOutput":
        if self.finished:
            raise StopAsyncIteration
        new, reason, stop_reason = await self._responses.get()
        c = self.outputs[0]
        c.token_ids = c.token_ids + new
        c.token_ids_diff = list(new)
        c.finish_reason, c.stop_reason = reason, stop_reason
        self.finished = reason is not None
        return self

    async def aresult(self) -> "RequestOutput":
        async for _ in self:
            pass
        return self


_PYTORCH_ONLY = {"sampler_type", "orchestrator_type", "allow_advanced_sampling", "speculative_config",
                 "cuda_graph_config", "disable_overlap_scheduler", "attn_backend"}
_TRT_ONLY = {"quant_config", "calib_config", "build_config", "enable_build_cache"}
_COMMON = {"model", "tokenizer", "tensor_parallel_size", "pipeline_parallel_size", "kv_cache_config", "max_batch_size",
           "max_num_tokens", "max_seq_len", "dtype", "trust_remote_code", "skip_tokenizer_init", "backend",
           "enable_chunked_prefill"}


class LLM:
    """The PyTorch-backend ``LLM`` (``from tensorrt_llm import LLM``)."""

    _backend = "pytorch"
    _allowed = _COMMON | _PYTORCH_ONLY

    def __init__(self, model: str, tokenizer: str | None = None, **kwargs: Any) -> None:
        unknown = set(kwargs) - self._allowed
        if unknown:
            raise ValueError(f"LLM got unknown arguments {sorted(unknown)} for the {self._backend} backend")
        if not Path(model).exists():
            raise ValueError(f"model path {model!r} does not exist")
        self.model, self.tokenizer_path = model, tokenizer
        self.args: dict[str, Any] = {"model": model, "tokenizer": tokenizer, **kwargs}
        self.tp = int(kwargs.get("tensor_parallel_size", 1))
        self.max_seq_len = kwargs.get("max_seq_len") or 8192
        self.max_batch_size = kwargs.get("max_batch_size") or 2048
        self.orchestrator = kwargs.get("orchestrator_type") or "mpi"
        self.placement = self._place()
        self._ids = 0
        self.requests: list[tuple[list[int], SamplingParams]] = []
        """Every ``generate_async`` call: (prompt token ids, sampling params)."""
        self.abort_calls: list[int] = []
        """Request ids, once per ``RequestOutput.abort()`` call."""
        self.running: dict[int, RequestOutput] = {}
        self.shut_down = False
        FAKE.instances.append(self)
        self._report()

    def _report(self) -> None:
        """For tests across processes (Ray actors): ``FAKE_TRTLLM_LOG=DIR`` makes each LLM write
        what it was given to ``DIR/llm-<pid>.json``; ``FAKE_TRTLLM_REPLY=[ids]`` makes every
        request produce those token ids."""
        reply = os.environ.get("FAKE_TRTLLM_REPLY")
        if reply:
            ids = [int(t) for t in json.loads(reply)]
            FAKE.script = lambda prompt, params: ids
        log = os.environ.get("FAKE_TRTLLM_LOG")
        if log:
            args = {k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
                    for k, v in self.args.items()}
            Path(log, f"llm-{os.getpid()}.json").write_text(json.dumps({
                "backend": self._backend, "args": args, "placement": self.placement,
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "bundle_indices": os.environ.get("TRTLLM_RAY_BUNDLE_INDICES")}))

    def __reduce__(self) -> Any:
        raise TypeError("LLM objects cannot be pickled: construct them inside the actor")

    def _place(self) -> dict[str, Any]:
        """Where the TP ranks would run: MPI ranks take the visible GPUs by rank; the Ray
        orchestrator uses the current placement group's bundles named in TRTLLM_RAY_BUNDLE_INDICES."""
        if self.orchestrator == "ray":
            indices = os.environ.get("TRTLLM_RAY_BUNDLE_INDICES")
            group = None
            try:
                from ray.util import get_current_placement_group

                group = get_current_placement_group()
            except ImportError:
                pass
            if group is not None and indices:
                bundles = [int(i) for i in indices.split(",")]
                assert len(bundles) == self.tp and len(set(bundles)) == len(bundles), bundles
                assert max(bundles) < len(group.bundle_specs)
                return {"orchestrator": "ray", "own_group": False, "bundles": bundles,
                        "bundle_specs": [group.bundle_specs[i] for i in bundles]}
            return {"orchestrator": "ray", "own_group": True}
        visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        if len(visible) < self.tp:
            raise RuntimeError(f"tensor_parallel_size={self.tp} but {len(visible)} GPU(s) are visible")
        return {"orchestrator": "mpi", "rank_gpus": visible[: self.tp]}

    def generate_async(self, inputs: Any, sampling_params: SamplingParams | None = None,
                       streaming: bool = False) -> RequestOutput:
        loop = asyncio.get_running_loop()  # RuntimeError without a running loop, as documented
        if isinstance(inputs, str):
            raise TypeError("the fake takes token ids only")
        params = sampling_params or SamplingParams()
        prompt = [int(t) for t in inputs]
        if len(prompt) + params.max_tokens > self.max_seq_len:
            raise ValueError(f"prompt {len(prompt)} + max_tokens {params.max_tokens} > max_seq_len {self.max_seq_len}")
        self._ids += 1
        out = RequestOutput(self._ids, prompt, self.abort_calls)
        self.requests.append((prompt, params))
        self.running[out.request_id] = out
        out._task = loop.create_task(self._run(out, params, streaming))
        return out

    def _tokens(self, prompt: list[int], params: SamplingParams) -> Callable[[], int]:
        if FAKE.script is not None:
            script = iter(FAKE.script(prompt, params))
            return lambda: next(script, params.end_id or EOS_ID)
        rng = random.Random(len(self.requests))  # arbitrary ids above EOS; no sampling is modelled
        return lambda: rng.randrange(3, FAKE.vocab)

    async def _run(self, out: RequestOutput, params: SamplingParams, streaming: bool) -> None:
        nxt = self._tokens(out.prompt_token_ids, params)
        stops = set(params.stop_token_ids or [])
        end = params.end_id or EOS_ID
        pending: list[int] = []
        produced = 0
        reason: str | None = None
        stop_reason: Any = None
        try:
            while reason is None:
                await asyncio.sleep(FAKE.step_s)
                if out._aborted:
                    reason = "cancelled"
                    break
                token = nxt()
                if token == end:
                    reason = "stop"
                elif token in stops:
                    reason, stop_reason = "stop", token
                    if params.include_stop_str_in_output and not FAKE.drop_stop_tokens:
                        pending.append(token)
                else:
                    pending.append(token)
                    produced += 1
                    if produced >= params.max_tokens:
                        reason = "length"
                if streaming and reason is None:
                    out._responses.put_nowait((pending, None, None))
                    pending = []
        finally:
            out._responses.put_nowait((pending, reason or "cancelled", stop_reason))
            self.running.pop(out.request_id, None)

    def shutdown(self) -> None:
        for out in list(self.running.values()):
            out.abort()
        self.shut_down = True

    def __enter__(self) -> "LLM":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def read_engine_config(engine_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(engine_dir) / "config.json").read_text())


def _check_fields(cls: type, kwargs: dict[str, Any]) -> None:
    names = {f.name for f in fields(cls)}
    unknown = set(kwargs) - names
    if unknown:
        raise TypeError(f"{cls.__name__} got unexpected arguments {sorted(unknown)}")

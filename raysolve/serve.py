"""Ray Serve application: ``POST /v1/solve``, ``POST /v1/solve/stream``, ``GET /healthz``.

    raysolve serve [--config run.yaml] [--port 8000]
    serve run raysolve.serve:app                      # the embedded default engine
    serve run serve.yaml                              # applications: - import_path: raysolve.serve:build

One replica owns a ``Solver`` (the same engine, sandbox and coordinator actors as
the CLI); concurrent requests become concurrent problems in that coordinator, so
their samples share the engines' continuous batches. Overload is answered by Serve
(503) once ``max_ongoing_requests`` run and ``max_queued_requests`` wait. A client
that disconnects, or a request's ``time_limit_s``, stops that request's samples.

``/docs`` (Swagger UI) and ``/redoc`` load their scripts and stylesheets from this server
(``/docs-assets/``, the files the ``fastapi-offline`` package ships), not from a CDN, so they
work on a machine without internet access.
"""


import dataclasses
import json
import time
import typing
import uuid
from pathlib import Path
from typing import Any

import fastapi_offline
import ray
from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from ray import serve

from raysolve.core.scheduling import SolveOptions
from raysolve.runtime.config import SolverConfig
from raysolve.io.problems import MAX_PROBLEM_CHARS, Problem
from raysolve.core.records import ProblemResult, SampleRecord
from raysolve.runtime.solver import Solver
from raysolve.core.voting import parse_policy


class SolveRequest(BaseModel):
    """One problem and optional per-request settings (defaults: the server's config,
    latency-first scheduling)."""

    model_config = ConfigDict(extra="forbid")

    problem: str = Field(min_length=1, max_length=MAX_PROBLEM_CHARS, description="Problem statement.")
    samples: int | None = Field(None, ge=1, le=256, description="Sample budget.")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000, description="Token budget per sample.")
    max_code_calls: int | None = Field(None, ge=0, le=64)
    time_limit_s: float | None = Field(None, gt=0, le=3600, description="Answer with the votes so far after this.")
    stop_policy: str | None = Field(None, description="e.g. 'default', 'unbeatable', 'beta:0.99:min=4', 'full'.")
    modulus: int | None = Field(None, ge=2, description="Take integer answers modulo this (AIMO: 1000).")
    id: str | None = Field(None, max_length=200, description="Echoed back; a fresh id if absent.")
    keep_samples: bool = Field(True, description="Include per-sample summaries in the answer.")

    @field_validator("problem")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("problem text is empty")
        return text

    @field_validator("stop_policy")
    @classmethod
    def _policy_parses(cls, spec: str | None) -> str | None:
        if spec is not None:
            parse_policy(spec)  # raises ValueError with the reason
        return spec

    def options(self) -> SolveOptions:
        return SolveOptions.latency(
            num_samples=self.samples,
            stop_policy=self.stop_policy or "latency",
            max_tokens=self.max_tokens,
            max_code_calls=self.max_code_calls,
            temperature=self.temperature,
            modulus=self.modulus,
            time_limit_s=self.time_limit_s,
        )


SAMPLE_FIELDS = (
    "sample_idx", "answer", "finish_reason", "cancelled", "generated_tokens", "tool_output_tokens", "code_calls", "wall_s",
)
"""The ``SampleRecord`` fields a response lists per sample (``keep_samples``)."""


def _sample_summary_model() -> type[BaseModel]:
    """``SampleSummary``: the ``SAMPLE_FIELDS`` of ``SampleRecord``, with the record's own types,
    so the HTTP schema cannot drift from the record: a retyped field changes both, a renamed or
    removed one fails here at import. The schema (field order, required, nullable) is what the
    hand-written model had."""
    hints = typing.get_type_hints(SampleRecord)
    records = {f.name for f in dataclasses.fields(SampleRecord)}
    missing = [name for name in SAMPLE_FIELDS if name not in records]
    if missing:
        raise TypeError(f"SampleRecord has no field(s) {missing}: update SAMPLE_FIELDS")
    return create_model("SampleSummary", **{name: (hints[name], ...) for name in SAMPLE_FIELDS})  # type: ignore[call-overload]


SampleSummary = _sample_summary_model()


class SolveResponse(BaseModel):
    """The settled vote. Every field is always present: ``answer`` is ``null`` when no sample
    gave an answer, ``samples`` is ``null`` unless ``keep_samples``."""

    id: str
    answer: str | None = Field(description="The winning vote key; null when there are no votes.")
    settle_reason: str = Field(description="Which stop rule decided, or budget / time_limit / cancelled.")
    votes: dict[str, int]
    samples_started: int
    samples_finished: int
    samples_cancelled: int
    generated_tokens: int
    tool_output_tokens: int
    code_calls: int
    settle_s: float
    wall_s: float
    queue_s: float = Field(description="Seconds between arrival and the answer that were not solving.")
    samples: list[SampleSummary] | None = Field(None, description="Per-sample summaries; null unless keep_samples.")


def to_response(request_id: str, result: ProblemResult, started: float, keep_samples: bool) -> dict[str, Any]:
    total = time.monotonic() - started
    samples = [{k: getattr(s, k) for k in SAMPLE_FIELDS} for s in sorted(result.samples, key=lambda s: s.sample_idx)]
    return {
        "id": request_id,
        "answer": result.answer,
        "settle_reason": result.settle_reason,
        "votes": result.votes,
        "samples_started": result.samples_started,
        "samples_finished": result.samples_finished,
        "samples_cancelled": result.samples_cancelled,
        "generated_tokens": result.generated_tokens,
        "tool_output_tokens": result.tool_output_tokens,
        "code_calls": result.code_calls,
        "settle_s": result.settle_s,
        "wall_s": result.wall_s,
        "queue_s": round(max(0.0, total - result.wall_s), 4),
        "samples": samples if keep_samples else None,
    }


api = FastAPI(
    title="raysolve",
    summary="Competition math by tool-integrated reasoning, majority vote and early stopping.",
    version="1",
    docs_url=None,  # FastAPI's own pages load their assets from a CDN: ours are below
    redoc_url=None,
)

DOCS_ASSETS_URL = "/docs-assets"
"""Where the Swagger UI and ReDoc files are served."""
DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
"""The files the docs pages load, all from ``DOCS_ASSETS_URL``."""


def docs_assets_dir() -> Path:
    """The folder of ``DOCS_ASSETS``: the Swagger UI and ReDoc builds that ``fastapi-offline`` ships."""
    folder = Path(fastapi_offline.__file__).parent / "static"
    missing = [name for name in DOCS_ASSETS if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline no longer ships {missing} in {folder}: update raysolve.serve")
    return folder


api.mount(DOCS_ASSETS_URL, StaticFiles(directory=docs_assets_dir()), name="docs-assets")


def _root(request: Request) -> str:
    """The prefix the app is mounted under (Serve's route prefix), for the pages' own links."""
    return str(request.scope.get("root_path", "")).rstrip("/")


@api.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for ``/openapi.json``, with its script and stylesheet served locally."""
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{api.openapi_url}",
        title=f"{api.title} - Swagger UI",
        swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
    )


@api.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc for ``/openapi.json``, served locally and without Google Fonts."""
    root = _root(request)
    return get_redoc_html(
        openapi_url=f"{root}{api.openapi_url}",
        title=f"{api.title} - ReDoc",
        redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )


@serve.deployment(max_ongoing_requests=32, max_queued_requests=64, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class SolverApp:
    """The ingress replica: validates requests and talks to the coordinator."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = SolverConfig.model_validate(config or {})
        self.solver = Solver(self.config).start()

    def __del__(self) -> None:
        """Serve calls this when the replica shuts down: stop the engines and kill the actors
        now, rather than leaving them to Ray's owner clean-up."""
        solver = getattr(self, "solver", None)
        if solver is not None:
            solver.shutdown()

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        """Liveness and load: 200 while the coordinator answers."""
        stats = await self.solver.coordinator.stats.remote()
        return {"status": "ok", "engines": len(self.solver.engines), "active_problems": stats["active"],
                "queued_problems": stats["queued"], "samples_in_flight": stats["in_flight"]}

    @api.post("/v1/solve", response_model=SolveResponse)
    async def solve(self, request: SolveRequest) -> dict[str, Any]:
        """Solve one problem and answer when its vote is settled."""
        started = time.monotonic()
        request_id = request.id or uuid.uuid4().hex
        ref = self.solver.coordinator.solve.remote(Problem(request_id, request.problem), request.options())
        try:
            result = await ref
        except BaseException:  # client gone (Serve cancels us) or shutting down: stop the samples
            ray.cancel(ref)
            raise
        if result.failure is not None:  # no engine could answer: the client may retry elsewhere
            raise HTTPException(status_code=503, detail=f"no answer: {result.failure}")
        return to_response(request_id, result, started, request.keep_samples)

    @api.post("/v1/solve/stream")
    async def solve_stream(self, request: SolveRequest) -> StreamingResponse:
        """The same, as NDJSON events: ``sample`` per finished or cancelled sample,
        ``settled`` when the vote is decided, then ``result`` (a ``SolveResponse``)."""
        started = time.monotonic()
        request_id = request.id or uuid.uuid4().hex
        stream = self.solver.coordinator.solve_stream.options(num_returns="streaming").remote(
            Problem(request_id, request.problem), request.options()
        )

        async def events():
            try:
                async for ref in stream:
                    event = await ref
                    if event["event"] == "result":
                        event = {"event": "result", **to_response(request_id, event["result"], started, request.keep_samples)}
                    else:
                        event = {"id": request_id, **event}
                    yield json.dumps(event) + "\n"
            finally:  # also when the client went away mid-stream: stop the samples
                try:
                    ray.cancel(stream)
                except Exception:  # already finished
                    pass

        return StreamingResponse(events(), media_type="application/x-ndjson")


def build(args: dict[str, Any]) -> serve.Application:
    """Application builder for ``serve run`` config files: ``args`` may hold ``config``
    (a path to a ``SolverConfig`` YAML) and ``max_ongoing_requests`` / ``max_queued_requests``."""
    config = SolverConfig.load(args["config"]).model_dump() if args.get("config") else dict(args.get("solver") or {})
    limits = {k: int(args[k]) for k in ("max_ongoing_requests", "max_queued_requests") if k in args}
    return SolverApp.options(**limits).bind(config)


app = build({})

"""`SolverConfig`: one object that fully describes a run.

The CLI, the dataset job, the Serve app and the AIMO runner all build their actors
from it through ``raysolve.runtime.solver.Solver`` — there is no second code path. Load it
from YAML/JSON with ``SolverConfig.load`` and override fields from the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raysolve.core.prompting import PromptFormat
from raysolve.core.records import SampleSettings
from raysolve.core.scheduling import SchedulerSettings
from raysolve.core.voting import parse_policy
from raysolve.sandbox.config import SandboxConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EngineConfig(_Strict):
    """Which backend, how many engine actors, and what each one reserves."""

    backend: str = "hf"
    """A name registered in ``raysolve.engines.BACKENDS``; ``scripted`` is the test engine."""
    options: dict[str, Any] = Field(default_factory=lambda: {"model": "tiny"})
    """Backend options (model path, dtype, cache sizes ...), passed to the backend's config."""
    num_actors: int | Literal["auto"] = 1
    """Engine actors; ``"auto"``: one per ``num_gpus`` GPUs of the cluster (1 on a CPU-only cluster)."""
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    """GPUs per engine actor. 0: CPU; a fraction: actors share a GPU; an integer n >= 1: the
    actor holds n GPUs of one node (a placement-group bundle; n is the tensor-parallel size)."""
    gpu_bundles: Literal["one", "per-gpu"] = "one"
    """How an actor with whole GPUs reserves them. ``one``: one bundle of ``num_gpus`` GPUs that
    the actor holds; the processes its backend starts inherit its ``CUDA_VISIBLE_DEVICES``
    (vLLM's workers, TensorRT-LLM's MPI ranks). ``per-gpu``: one bundle per GPU plus one for
    the actor, which holds no GPU and captures the Ray actors its backend starts into the
    group (TensorRT-LLM's ``orchestrator: ray`` workers)."""
    child_cpus: float = Field(0.0, ge=0)
    """``per-gpu``: CPUs for the backend's own Ray actors in the actor's bundle (TensorRT-LLM's
    Ray orchestrator starts two queue actors of 2 CPUs each: 4)."""
    placement_timeout_s: float = Field(600.0, gt=0)
    """How long to wait for GPUs that exist but are busy before giving up with an error."""
    wait_for_gpus: bool = False
    """Wait (up to ``placement_timeout_s``) even when no node has the GPUs yet: for autoscaling clusters."""
    env_vars: dict[str, str] = Field(default_factory=dict)
    """Environment of the engine actors (and the workers their backend starts)."""
    queue_depth: int | None = Field(None, ge=1)
    """In-flight samples the coordinator keeps on each actor; None: the engine's own target."""
    max_restarts: int = 3

    @field_validator("backend")
    @classmethod
    def _backend_known(cls, name: str) -> str:
        from raysolve.engines import BACKENDS

        if name not in BACKENDS:
            raise ValueError(f"unknown engine backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
        return name

    @field_validator("num_actors")
    @classmethod
    def _actors_positive(cls, n: int | str) -> int | str:
        if isinstance(n, int) and n < 1:
            raise ValueError("num_actors must be at least 1 (or 'auto')")
        return n

    @field_validator("num_gpus")
    @classmethod
    def _whole_gpus_above_one(cls, n: float) -> float:
        if n > 1 and n != int(n):
            raise ValueError(f"num_gpus={n}: above 1 it must be a whole number of GPUs (the tensor-parallel size)")
        return n


class SamplingConfig(_Strict):
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(0, ge=0)


class BudgetConfig(_Strict):
    """Per-sample limits (the AIMO-2 winners' defaults for code calls and timeouts)."""

    max_tokens: int = Field(1024, ge=1)
    """Tokens per sample, generated plus tool output."""
    max_code_calls: int = Field(6, ge=0)
    code_timeout_s: float = Field(2.0, gt=0)
    max_output_chars: int = Field(200, ge=0)
    """Tool output characters shown to the model."""


class SchedulingConfig(_Strict):
    """How samples of a problem are scheduled (see docs on early stopping)."""

    mode: Literal["pool", "launch-all", "wave"] = "pool"
    """``pool``: at most ``pool_size`` samples of a problem in flight, the next one starting as
    soon as one finishes (batch default, where early stopping saves tokens); ``launch-all``:
    every sample at once, siblings cancelled when the vote settles (latency mode);
    ``wave``: ``pool_size`` samples launched together, the next wave only if the vote is
    still open when the whole wave is back (latency mode that keeps most of the saving)."""
    num_samples: int = Field(8, ge=1)
    pool_size: int = Field(4, ge=1)
    stop_policy: str = "default"
    """A ``raysolve.core.voting.parse_policy`` spec, e.g. ``unbeatable|beta:0.95:min=3``."""
    max_active_problems: int | None = Field(None, ge=1)
    """Cap on problems in progress at once; None: as many as keep the engines full."""
    max_sample_retries: int = Field(2, ge=0)
    """Retries of a sample whose engine actor died under it."""
    engine_hang_s: float | None = Field(300.0, gt=0)
    """An engine actor with samples in flight that made no progress (no token, no sample
    ending) for this long is taken as hung: its actor is restarted and its samples retried
    (None: no watchdog)."""
    settle_grace_s: float | None = Field(1.0, ge=0)
    """Longest wait after a vote settled for the cancelled siblings to stop before the result
    is delivered anyway (they are then recorded as cancelled; None: wait for all)."""
    engine_recovery_s: float = Field(300.0, gt=0)
    """How long a dead engine actor may take to come back (restart, model loading) before
    it is given up; when every engine is given up, all problems are answered as they stand."""

    @field_validator("stop_policy")
    @classmethod
    def _policy_parses(cls, spec: str) -> str:
        parse_policy(spec)  # raises ValueError with the bad part named
        return spec


class SolverConfig(_Strict):
    engine: EngineConfig = Field(default_factory=EngineConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    scheduling: SchedulingConfig = Field(default_factory=SchedulingConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    num_sandbox_actors: int = Field(1, ge=1)
    sandbox_resources: dict[str, float] = Field(default_factory=dict)
    """Ray resources each sandbox actor requires, e.g. ``{"sandbox": 1}`` to keep them on the
    CPU nodes of ``cluster.yaml`` that advertise that custom resource (away from the engines)."""
    modulus: int | None = Field(None, ge=2)
    """Integer answers are taken modulo this (AIMO-2: 1000, AIMO-3: 100000)."""
    seed: int = 0
    keep_text: bool = False
    """Store each sample's generated text in its record."""
    prompt_template: str | None = None
    """Override of the user prompt (fields ``{problem}`` and ``{max_code_calls}``)."""

    @model_validator(mode="after")
    def _samples_must_differ(self) -> "SolverConfig":
        if self.sampling.temperature <= 0 and self.scheduling.num_samples > 1:
            raise ValueError(f"sampling.temperature 0 (greedy) with scheduling.num_samples "
                             f"{self.scheduling.num_samples}: every sample would be identical and the vote "
                             "meaningless; use temperature > 0, or num_samples 1")
        return self

    @classmethod
    def load(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "SolverConfig":
        """A YAML config file; ``overrides`` maps dotted keys (``engine.options.dtype``) to values."""
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        data.pop("build", None)  # an engine recipe's build section (raysolve engine build)
        for key, value in (overrides or {}).items():
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return cls.model_validate(data)

    @classmethod
    def from_spec(cls, spec: str) -> tuple[str, "SolverConfig", dict[str, Any]]:
        """``NAME=CONFIG[,a.b.c=value ...]`` (values parsed as YAML), as the benchmarks take engines:
        the name, the config, and ``{"config": CONFIG, "overrides": {...}}`` for their reports."""
        import yaml

        name, _, rest = spec.partition("=")
        path, *items = rest.split(",")
        if not name or not path:
            raise ValueError(f"engine spec {spec!r}: expected NAME=CONFIG[,dotted.key=value ...]")
        overrides = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"engine spec {spec!r}: {item!r} is not dotted.key=value")
            overrides[key] = yaml.safe_load(value)
        return name, cls.load(path, overrides), {"config": path, "overrides": overrides}

    def scheduler_settings(self) -> SchedulerSettings:
        """What the pure scheduler (``raysolve.core.scheduling``) needs of this config."""
        s = self.scheduling
        return SchedulerSettings(
            num_samples=s.num_samples, pool_size=s.pool_size, mode=s.mode, stop_policy=s.stop_policy,
            sample=SampleSettings(
                max_tokens=self.budget.max_tokens, max_code_calls=self.budget.max_code_calls,
                code_timeout_s=self.budget.code_timeout_s, temperature=self.sampling.temperature,
                top_p=self.sampling.top_p, top_k=self.sampling.top_k, modulus=self.modulus),
            seed=self.seed, max_active_problems=s.max_active_problems,
            max_sample_retries=s.max_sample_retries, settle_grace_s=s.settle_grace_s)

    def prompt_format(self) -> PromptFormat:
        kwargs: dict[str, Any] = {"max_output_chars": self.budget.max_output_chars}
        if self.prompt_template:
            kwargs["user_template"] = self.prompt_template
        return PromptFormat(**kwargs)

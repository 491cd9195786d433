"""What crosses Ray boundaries and lands on disk: problems, sample requests, sample and problem records.

All plain dataclasses of plain values, so they pickle cheaply and turn into JSON
rows with ``dataclasses.asdict``. Per-sample records are also the replay traces
for stop-policy work: answer, tokens, finish order and wall time per sample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Problem:
    """One problem to solve (loaders: ``raysolve.io.problems``)."""

    id: str
    text: str
    answer: str | None = None
    """Gold answer, when the data set has one (used for grading only)."""
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleSettings:
    """Budgets and sampling settings of a sample: the same for every sample of a problem."""

    max_tokens: int = 4096
    """Budget of the whole sample: generated tokens plus tool-output tokens."""
    max_code_calls: int = 6
    code_timeout_s: float = 2.0
    temperature: float = 0.7
    """0 asks for greedy decoding (every sample then gives the same text)."""
    top_p: float = 0.95
    top_k: int = 0
    modulus: int | None = None


@dataclass(frozen=True)
class SampleRequest:
    """One sample of one problem, as the coordinator sends it to an engine actor."""

    problem_id: str
    sample_idx: int
    problem_text: str
    """The engine actor renders the prompt (once per problem) with its own tokenizer."""
    seed: int
    settings: SampleSettings
    run_key: int = 0
    """The coordinator's number for this submission of the problem (ids may repeat)."""
    attempt: int = 1
    """1, then 2, ... when the sample is retried after its engine failed."""

    @property
    def key(self) -> str:
        """Unique among samples in flight: ``<run key>:<problem id>#<sample index>``, with
        ``.<attempt>`` after the run key for a retry (the first run may still be stopping)."""
        run = self.run_key if self.attempt == 1 else f"{self.run_key}.{self.attempt}"
        return f"{run}:{self.problem_id}#{self.sample_idx}"


@dataclass
class SampleRecord:
    """One finished (or cancelled) sample; one row of ``samples.jsonl``."""

    problem_id: str
    sample_idx: int
    seed: int
    answer: str | None
    """The vote key (``answers.vote_key``): what the sample voted for."""
    finish_reason: str
    """eos | length | cancelled | error"""
    cancelled: bool
    generated_tokens: int
    tool_output_tokens: int
    code_calls: int
    code_errors: int
    wall_s: float
    first_token_s: float | None = None
    """Time to first token, from the sample's start on its engine actor."""
    tool_s: float = 0.0
    """Part of ``wall_s`` spent waiting for code runs."""
    start_s: float = 0.0
    """Start time, seconds after the problem's first sample started."""
    end_s: float = 0.0
    finish_order: int | None = None
    """1 for the first sample of the problem to finish, ...; None when cancelled."""
    engine: int = -1
    attempt: int = 1
    late: bool = False
    """Finished after its problem had settled (its cancel lost the race): kept, but it did not vote."""
    error: str | None = None
    answer_text: str | None = None
    """The boxed answer as the model wrote it (``\\frac{\\sqrt3}{2}`` where ``answer`` is
    ``sqrt(3)/2``): what grading reads."""
    text: str | None = None
    """The generated text, when the run keeps texts."""

    @property
    def total_tokens(self) -> int:
        return self.generated_tokens + self.tool_output_tokens

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        if row["text"] is None:
            row.pop("text")
        return row


@dataclass
class ProblemResult:
    """The outcome of one problem; one row of ``problems.jsonl`` (samples go to their own file)."""

    problem_id: str
    answer: str | None
    """The winning vote key."""
    settle_reason: str
    votes: dict[str, int]
    gold: str | None = None
    answer_text: str | None = None
    """The winning answer as its first voter wrote it (graded against ``gold``)."""
    correct: bool | None = None
    samples_budget: int = 0
    samples_started: int = 0
    samples_finished: int = 0
    samples_cancelled: int = 0
    samples_failed: int = 0
    samples_late: int = 0
    """Finished after the vote had settled; not in ``votes`` or ``samples_finished``."""
    generated_tokens: int = 0
    tool_output_tokens: int = 0
    code_calls: int = 0
    settle_s: float = 0.0
    """Seconds from the first sample's start until the vote settled."""
    wall_s: float = 0.0
    """Seconds from the first sample's start until the result was delivered: every sample back,
    or ``settle_grace_s`` after the settle (siblings still stopping are then marked cancelled)."""
    policy: str = ""
    mode: str = ""
    failure: str | None = None
    """Why infrastructure left the problem without a real settle (every engine gone, every
    sample failed): such a problem is not written as done, and a resumed run solves it again."""
    samples: list[SampleRecord] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return self.generated_tokens + self.tool_output_tokens

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("samples")
        row["total_tokens"] = self.total_tokens
        return row

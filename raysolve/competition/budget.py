"""Time budgets for competition runs: how long a problem may take and how many samples it gets.

An AIMO-style run answers problems one at a time under a hard wall-clock budget for the
whole set. Before each problem the runner asks a ``BudgetPolicy`` for a ``ProblemPlan``
(deadline, sample count, stop policy) and afterwards tells it what happened (an
``Outcome``). Policies are pure: they see times as numbers, never a clock, so they are
tested on a simulated clock and replayed exactly.

Two policies:

- ``FixedBudget``: every problem gets the same share of the total and the same sample
  count; time a problem leaves unused is lost (the baseline).
- ``AdaptiveBudget``: unused time is carried forward (capped per problem, as the AIMO-2
  winners did: 350 s a problem plus a share of a buffer, at most 560 s), the deadline
  leaves later problems what recent problems actually needed, and the sample count is what
  the engine's measured speed fits into the deadline (the AIMO-2 runner-up adjusted the
  sample count to the time left). Straggler cutting is an option of both.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from raysolve.core.voting import parse_policy


@dataclass(frozen=True)
class ProblemPlan:
    """What the runner does with the next problem."""

    deadline_s: float
    """Seconds from the problem's start until it must be answered (the vote so far)."""
    num_samples: int
    """Samples launched together."""
    stop_policy: str
    """The early-stop rule (a ``raysolve.core.voting.parse_policy`` spec)."""


@dataclass(frozen=True)
class Outcome:
    """What a problem cost, as the runner measured it."""

    used_s: float
    """Wall-clock seconds from the plan to the answer (engine time, cancellation, bookkeeping)."""
    samples_launched: int
    finished_latencies_s: tuple[float, ...]
    """Start-to-finish seconds of each sample that finished (not cancelled, not failed)."""
    settle_reason: str

    def median_latency_s(self) -> float:
        """The launched samples' median latency. When fewer than half finished, the median is
        unknown but at least ``used_s`` (the rest ran that long unfinished), so that is used."""
        half = math.ceil(self.samples_launched / 2)
        if len(self.finished_latencies_s) >= half and half > 0:
            return sorted(self.finished_latencies_s)[half - 1]
        return self.used_s


class BudgetPolicy(Protocol):
    @property
    def name(self) -> str: ...

    def plan(self, time_left_s: float, problems_left: int) -> ProblemPlan:
        """The plan for the next problem; ``problems_left`` counts it."""
        ...

    def observe(self, outcome: Outcome) -> None:
        """Learn from the problem just answered."""
        ...


def with_stragglers(stop_policy: str, stragglers: int) -> str:
    """``stop_policy`` plus straggler cutting: settle once at most ``stragglers`` samples are
    still running (the rest have finished), instead of waiting for the slowest."""
    spec = f"{stop_policy}|stragglers:{stragglers}" if stragglers > 0 else stop_policy
    parse_policy(spec)  # a bad spec fails here, before the run starts
    return spec


def _check(**positive: float) -> None:
    for name, value in positive.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")


@dataclass
class FixedBudget:
    """Rule: each problem's deadline is ``total_s / problems`` (never more than an even share
    of the time actually left), with ``samples`` samples; unused time is not reused."""

    total_s: float
    problems: int
    samples: int = 16
    stop_policy: str = "unbeatable|latency"
    stragglers: int = 0

    def __post_init__(self) -> None:
        _check(total_s=self.total_s, problems=self.problems, samples=self.samples)
        self.stop_policy = with_stragglers(self.stop_policy, self.stragglers)

    @property
    def name(self) -> str:
        return f"fixed:{self.samples}"

    def plan(self, time_left_s: float, problems_left: int) -> ProblemPlan:
        share = self.total_s / self.problems
        deadline = max(0.0, min(share, time_left_s / max(1, problems_left)))
        return ProblemPlan(deadline, self.samples, self.stop_policy)

    def observe(self, outcome: Outcome) -> None:
        pass


@dataclass
class AdaptiveBudget:
    """Carries unused time forward and sizes each problem's sample count to its deadline.

    Deadline rule, with ``base = total_s / problems``, ``left`` the time left minus
    ``reserve_s`` and ``n`` the problems left (this one included)::

        expect   = min(base, max(floor_s, median used_s of the last `window` problems))
                   (base before any problem is done)
        greedy   = left - (n - 1) * expect        # leave later problems what recent ones needed
        even     = left / n
        deadline = min(max(greedy, even),         # behind schedule: spread the deficit evenly
                       cap * base,                # no single problem takes the whole buffer
                       left - (n - 1) * floor_s)  # every later problem keeps floor_s
        deadline = max(deadline, min(floor_s, even))

    With no history this is the AIMO-2 rule: ``base`` plus the whole buffer of unused
    time, capped. When recent problems settled quickly, later problems are expected to
    need less, so more of the buffer goes to the current one (still capped).

    Sample rule: for each recent problem, ``slot = median sample latency / samples launched``
    (seconds a sample's latency grows per sample launched beside it); with ``slot`` the
    median over the window::

        samples = clamp(floor(fill * deadline / slot), min_samples, max_samples)

    i.e. as many samples as leave the median one finishing within ``fill`` of the deadline,
    so the vote has answers when the deadline comes (samples launched together progress
    together: too many, and none finishes in time). On an engine whose speed is shared out
    (a CPU, a saturated GPU) latency grows with the count and ``slot`` is steady; on one
    where latency barely grows (a GPU below saturation) ``slot`` shrinks as the count rises
    and the count climbs to ``max_samples``. ``max_samples`` before there is history.
    """

    total_s: float
    problems: int
    max_samples: int = 16
    min_samples: int = 4
    stop_policy: str = "unbeatable|latency"
    stragglers: int = 0
    cap: float = 1.6
    """The AIMO-2 winners' 560 s / 350 s."""
    floor_s: float | None = None
    """Least time a problem is promised; default ``base / 4``."""
    reserve_s: float = 0.0
    """Held back from the whole run (start-up slack, writing the submission)."""
    window: int = 8
    fill: float = 0.8
    history: deque[Outcome] = field(init=False)

    def __post_init__(self) -> None:
        _check(total_s=self.total_s, problems=self.problems, max_samples=self.max_samples,
               min_samples=self.min_samples, cap=self.cap, window=self.window, fill=self.fill)
        if self.min_samples > self.max_samples:
            raise ValueError(f"min_samples {self.min_samples} > max_samples {self.max_samples}")
        if self.cap < 1:
            raise ValueError(f"cap must be at least 1 (a multiple of the even share), got {self.cap}")
        if self.floor_s is None:
            self.floor_s = self.base_s / 4
        self.stop_policy = with_stragglers(self.stop_policy, self.stragglers)
        self.history = deque(maxlen=self.window)

    @property
    def name(self) -> str:
        return f"adaptive:{self.min_samples}-{self.max_samples}"

    @property
    def base_s(self) -> float:
        return self.total_s / self.problems

    def expected_need_s(self) -> float:
        """What a later problem is expected to need: recent problems' median, at most ``base``."""
        assert self.floor_s is not None
        if not self.history:
            return self.base_s
        return min(self.base_s, max(self.floor_s, statistics.median(o.used_s for o in self.history)))

    def deadline_s(self, time_left_s: float, problems_left: int) -> float:
        assert self.floor_s is not None
        left = max(0.0, time_left_s - self.reserve_s)
        others = max(0, problems_left - 1)
        even = left / max(1, problems_left)
        greedy = left - others * self.expected_need_s()
        deadline = min(max(greedy, even), self.cap * self.base_s, left - others * self.floor_s)
        return max(deadline, min(self.floor_s, even), 0.0)

    def samples_for(self, deadline_s: float) -> int:
        slots = [o.median_latency_s() / o.samples_launched for o in self.history if o.samples_launched]
        if not slots:
            return self.max_samples
        fits = math.floor(self.fill * deadline_s / max(statistics.median(slots), 1e-9))
        return max(self.min_samples, min(self.max_samples, fits))

    def plan(self, time_left_s: float, problems_left: int) -> ProblemPlan:
        deadline = self.deadline_s(time_left_s, problems_left)
        return ProblemPlan(deadline, self.samples_for(deadline), self.stop_policy)

    def observe(self, outcome: Outcome) -> None:
        self.history.append(outcome)


POLICIES = ("adaptive", "fixed")


def make_policy(kind: str, total_s: float, problems: int, *, samples: int = 16, min_samples: int = 4,
                stop_policy: str = "unbeatable|latency", stragglers: int = 0, cap: float = 1.6,
                reserve_s: float = 0.0) -> BudgetPolicy:
    """A policy by name (``raysolve aimo --budget-policy``)."""
    if kind == "adaptive":
        return AdaptiveBudget(total_s, problems, max_samples=samples, min_samples=min(min_samples, samples),
                              stop_policy=stop_policy, stragglers=stragglers, cap=cap, reserve_s=reserve_s)
    if kind == "fixed":
        return FixedBudget(total_s - reserve_s, problems, samples=samples, stop_policy=stop_policy,
                           stragglers=stragglers)
    raise ValueError(f"unknown budget policy {kind!r}; known: {', '.join(POLICIES)}")

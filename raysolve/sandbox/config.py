"""Settings of the sandbox service (host side; the worker gets a JSON subset)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and pool sizes for ``LocalSandbox`` / ``SandboxPool``."""

    max_workers: int = 4
    """Sessions running code at the same time; more runs wait (2-core boxes: ~cores)."""

    timeout_s: float = 2.0
    """Default wall-clock limit of one ``run`` (AIMO-2 winners used 2 s); then SIGKILL."""

    cpu_s: float | None = None
    """CPU-time limit of one run (RLIMIT_CPU, a backstop if the host is stalled);
    None means ``timeout + 1`` s."""

    memory_mb: int = 1536
    """Address-space limit of a worker (RLIMIT_AS); numpy + sympy use ~250 MB of it."""

    max_output_chars: int = 4000
    """Output kept per run (head and tail); the tool loop may cut further."""

    warm_workers: int = 2
    """Workers forked ahead of time, so a new session's first run does not wait for a fork."""

    max_live_workers: int = 32
    """Workers kept alive for idle sessions; beyond it the least recently used idle
    session's worker is stopped and its state is rebuilt by replay when it runs again."""

    session_ttl_s: float = 3600.0
    """A session nobody ran code in for this long is closed: its sample is gone without closing
    it (an engine actor that died mid-sample, a caller that vanished)."""

    replay_budget_s: float = 20.0
    """Most wall time spent re-running earlier cells after a worker was lost."""

    start_timeout_s: float = 60.0
    """How long the fork server may take to import and warm numpy/SymPy (and a
    worker to report ready)."""

    python: str | None = None
    """Interpreter for workers (needs RestrictedPython, numpy, sympy); None means the
    interpreter of the process that starts them (resolved there, e.g. on the actor's node)."""

    isolate_network: bool = True
    """Start workers in a new network namespace (``unshare -n``) where the OS allows it."""

    drop_root: bool = True
    """Workers started as real root switch to uid/gid 65534 (``nobody``) before serving."""

    max_recursion: int = 100_000
    """Highest value the sandbox's ``sys.setrecursionlimit`` accepts."""

    stack_mb: int = 256
    """Stack of the worker thread that runs cells (deep memoised recursion)."""

    int_max_str_digits: int = 100_000
    """Digits allowed in int<->str conversion (Python's default is 4300)."""

    session_cpu_s: int = 600
    """Hard CPU-time limit of a worker, all its runs together (each run also has its own
    ``cpu_limit``); a session past it is killed and replays its cells in a new worker."""

    landlock: bool = True
    """Confine each worker with Landlock where the kernel has it: read-only access to the
    libraries, no other file, no signals or abstract sockets outside the worker."""

    seccomp: bool = True
    """Install the seccomp filter in each worker (``raysolve.sandbox.seccomp``)."""

    require_full_isolation: bool = False
    """Refuse to run code when any OS layer is missing (see ``LocalSandbox.isolation``):
    the setting for serving untrusted input. Off, a missing layer is a warning, once."""

    idle_memory_mb: float = 400.0
    """A worker whose resident memory grew by more than this since its fork (after a run, freed
    memory given back) is stopped; its session's state is replayed in a new worker when it runs
    again."""

    unrestricted_for_tests: bool = False
    """TESTS ONLY: workers accept plain, unfiltered Python (``op: unrestricted``), the way code
    that escaped the language filter runs, so tests can check that the OS layer holds."""

    def worker_options(self) -> dict[str, Any]:
        """The part of the config the worker process needs."""
        return {
            "memory_mb": self.memory_mb,
            "max_output": self.max_output_chars,
            "max_recursion": self.max_recursion,
            "stack_mb": self.stack_mb,
            "int_max_str_digits": self.int_max_str_digits,
            "drop_root": self.drop_root,
            "session_cpu_s": self.session_cpu_s,
            "landlock": self.landlock,
            "seccomp": self.seccomp,
            "unrestricted_for_tests": self.unrestricted_for_tests,
        }

    def cpu_limit(self, timeout_s: float) -> float:
        return self.cpu_s if self.cpu_s is not None else timeout_s + 1.0

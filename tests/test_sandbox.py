"""LocalSandbox: restricted execution in worker processes (no Ray).

Async code runs on one background event loop shared by the module (workers are
bound to the loop that started them), driven from plain test functions.

No test waits for a fixed time: a kill or cancel "mid-run" is sent once the worker has
been seen burning CPU in the cell (``cpu_ticks``), and a process is "gone" once /proc
says so (``is_gone`` polled by ``wait_until``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sandbox_helpers import LoopThread, await_until, cpu_ticks, is_gone, wait_until

from raysolve.sandbox import ExecResult, LocalSandbox, Sandbox, SandboxConfig

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def box(loop: LoopThread) -> Iterator[LocalSandbox]:
    # A limit no normal run here comes near on a busy host; the timeout test sets its own.
    sandbox = LocalSandbox(SandboxConfig(max_workers=2, warm_workers=2, timeout_s=30.0))
    loop.run(sandbox.__aenter__())
    yield sandbox
    loop.run(sandbox.aclose())


@pytest.fixture
def run(loop: LoopThread, box: LocalSandbox):
    """run(code) in one fresh session per test; returns ExecResult."""
    sid = loop.run(box.open_session())

    def _run(code: str, timeout_s: float | None = None) -> ExecResult:
        return loop.run(box.run(sid, code, timeout_s))

    _run.sid = sid  # type: ignore[attr-defined]
    yield _run
    loop.run(box.close(sid))


@pytest.fixture(scope="module")
def shared_run(loop: LoopThread, box: LocalSandbox):
    """One session for tests that only check rejections (saves a worker start each)."""
    sid = loop.run(box.open_session())

    def _run(code: str, timeout_s: float | None = None) -> ExecResult:
        return loop.run(box.run(sid, code, timeout_s))

    yield _run
    loop.run(box.close(sid))


def ok(result: ExecResult) -> str:
    assert result.status == "ok", result
    return result.stdout


def test_protocol_and_state_across_runs(box: LocalSandbox, run) -> None:
    assert isinstance(box, Sandbox)
    assert ok(run("x = 41\ndef inc(v):\n    return v + 1")) == ""
    assert ok(run("print(inc(x))")) == "42\n"


def test_sympy(run) -> None:
    out = ok(run(
        "import sympy as sp\n"
        "x, y = sp.symbols('x y')\n"
        "print(sp.solve(x**2 - 4, x), sp.factor(x**2 - y**2), sp.expand((x + 1)**2))\n"
        "print(sp.Matrix([[1, 2], [3, 4]]).det(), sp.Rational('1/3') + sp.Rational(1, 6), sp.Symbol('z'))\n"
    ))
    assert out.splitlines() == ["[-2, 2] (x - y)*(x + y) x**2 + 2*x + 1", "-2 1/2 z"]
    out = ok(run(
        "from sympy import *\n"
        "k = Symbol('k')\n"
        "print(isprime(97), list(primerange(1, 12)), divisors(12), totient(10), binomial(10, 3))\n"
        "print(factorint(360), Integer(5) / 2, sqrt(8), pi, oo, summation(k**2, (k, 1, 10)))\n"
        "print(nsimplify(0.25), nsimplify(1.4142135623730951), simplify((k**2 - 1) / (k - 1)))\n"
    ))
    assert out.splitlines() == [
        "True [2, 3, 5, 7, 11] [1, 2, 3, 4, 6, 12] 4 120",
        "{2: 3, 3: 2, 5: 1} 5/2 2*sqrt(2) pi oo 385",
        "1/4 sqrt(2) k + 1",
    ]


def test_sympy_numeric_paths_that_use_lambdify(run) -> None:
    out = ok(run(
        "import sympy as sp\nn, x = sp.symbols('n x')\n"
        "print(sp.Sum(1 / sp.factorial(n), (n, 0, sp.oo)).evalf(10))\n"
        "print(sp.nsolve(x**2 - 2, x, 1).round(6))\n"
    ))
    assert out.splitlines() == ["2.718281828", "1.414214"]


def test_numpy(run) -> None:
    out = ok(run(
        "import numpy as np\n"
        "a = np.arange(6).reshape(2, 3)\n"
        "a[0, 1] += 10\n"
        "a[1] = [7, 8, 9]\n"
        "print(a.sum(), a.tolist(), np.linalg.det(np.eye(2)))\n"
        "print(a)\n"
    ))
    assert out.splitlines()[0] == "37 [[0, 11, 2], [7, 8, 9]] 1.0"
    assert "[[ 0 11  2]" in out


def test_itertools_brute_force(run) -> None:
    out = ok(run(
        "import itertools\n"
        "count = 0\n"
        "for p in itertools.permutations(range(7)):\n"
        "    if all(abs(p[i] - p[i + 1]) != 1 for i in range(6)):\n"
        "        count += 1\n"
        "print(count, len(list(itertools.combinations(range(10), 3))))\n"
    ))
    assert out == "646 120\n"  # OEIS A002464(7)


def test_classes_and_dunders(run) -> None:
    out = ok(run(
        "class Base:\n"
        "    made = 0\n"
        "    def __init__(self, v):\n"
        "        self.v = v\n"
        "        self.hits = 0\n"
        "        Base.made += 1\n"
        "class Vec(Base):\n"
        "    def __init__(self, v):\n"
        "        super().__init__(v)\n"
        "    def __add__(self, other):\n"
        "        return Vec(self.v + other.v)\n"
        "    def __repr__(self):\n"
        "        return f'Vec({self.v})'\n"
        "    def bump(self):\n"
        "        self.hits += 1\n"
        "        return self\n"
        "w = (Vec(1) + Vec(2)).bump()\n"
        "print(w, w.hits, Base.made, type(w).__name__)\n"
        "class Bag(dict):\n"
        "    def __init__(self):\n"
        "        dict.__init__(self, a=1)\n"
        "class Oops(Exception):\n"
        "    def __init__(self, msg):\n"
        "        Exception.__init__(self, msg)\n"
        "        self.code = 7\n"
        "try:\n"
        "    raise Oops('bad')\n"
        "except Oops as e:\n"
        "    print(Bag(), e, e.code)\n"
    ))
    assert out == "Vec(3) 1 3 Vec\n{'a': 1} bad 7\n"


def test_memoised_recursion(run) -> None:
    out = ok(run(
        "import sys\nfrom functools import lru_cache\n"
        "sys.setrecursionlimit(10**6)\n"
        "@lru_cache(maxsize=None)\n"
        "def f(n):\n"
        "    return 0 if n == 0 else f(n - 1) + n\n"
        "print(f(30000))\n"
        "@lru_cache(None)\n"
        "def fib(n):\n"
        "    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
        "print(fib(90))\n"
    ))
    assert out == f"{30000 * 30001 // 2}\n2880067194370816120\n"


def test_everyday_syntax(run) -> None:
    out = ok(run(
        "from collections import defaultdict, Counter\n"
        "d = defaultdict(int)\n"
        "for ch in 'banana':\n"
        "    d[ch] += 1\n"
        "c = Counter('banana')\n"
        "c['z'] += 2\n"
        "def counter():\n"
        "    n = 0\n"
        "    def tick():\n"
        "        nonlocal n\n"
        "        n += 1\n"
        "    tick(); tick()\n"
        "    return n\n"
        "total: int = counter()\n"
        "pairs = sorted(zip([3, 1, 2], 'abc'))\n"
        "if __name__ == '__main__':\n"
        "    print(dict(d), c.most_common(1), total, pairs, tuple(reversed(range(3))))\n"
        "    print(f'{total:>4}|{3.14159:.2f}|{\"x\"!r}', 'a{}b{k}'.format(1, k=2), '%05d' % 42)\n"
        "a, (b, c2) = 1, (2, 3)\n"
        "print([i * j for i in range(2) for j in range(2)], a + b + c2)\n"
    ))
    assert out.splitlines() == [
        "{'b': 1, 'a': 3, 'n': 2} [('a', 3)] 2 [(1, 'b'), (2, 'c'), (3, 'a')] (2, 1, 0)",
        "   2|3.14|'x' a1b2 00042",
        "[0, 0, 0, 1] 6",
    ]


def test_big_int_printing(run) -> None:
    out = ok(run("print(2**10000)"))
    assert out.strip() == str(2**10000)
    res = run("print(10**200000)")
    assert res.status == "error" and "Exceeds the limit" in res.stderr
    assert ok(run("import sys\nsys.set_int_max_str_digits(0)\nprint(len(str(10**200000)))")) == "200001\n"


def test_errors_are_short_tracebacks(run) -> None:
    res = run("def f(x):\n    return 1 / x\n\ny = 2\nprint(f(0))")
    assert res.status == "error"
    assert res.stderr.splitlines() == [
        "Traceback (most recent call last):",
        '  File "<cell 1>", line 5, in <module>',
        "    print(f(0))",
        '  File "<cell 1>", line 2, in f',
        "    return 1 / x",
        "ZeroDivisionError: division by zero",
    ]
    assert ok(run("print(y)")) == "2\n"  # a failed cell still bound y
    res = run("x = = 1")
    assert res.status == "error" and res.stderr.startswith("SyntaxError: line 1: invalid syntax")
    res = run("match 1:\n    case 1:\n        pass")
    assert res.status == "error" and "Match statements are not allowed" in res.stderr
    res = run("print(undefined_name)")
    assert res.stderr.endswith("NameError: name 'undefined_name' is not defined")


def test_output_flood_truncated(run) -> None:
    res = run("for i in range(200000):\n    print(i)\nprint('ANSWER', 7)")
    assert res.status == "ok" and res.truncated
    assert len(res.stdout) < 4300
    assert res.stdout.startswith("0\n1\n2\n")
    assert res.stdout.rstrip().endswith("ANSWER 7")
    assert "characters truncated" in res.stdout


def test_exit_and_system_exit_do_not_kill(run) -> None:
    assert ok(run("keep = 'alive'")) == ""
    res = run("raise SystemExit")
    assert res.status == "error" and "NameError: name 'SystemExit' is not defined" in res.stderr
    assert ok(run("print('before')\nexit()\nprint('after')")) == "before\n"
    assert ok(run("quit()")) == ""
    assert ok(run("import sys\nsys.exit(0)")) == ""
    res = run("try:\n    exit()\nexcept Exception:\n    print('no')")
    assert res.status == "ok"
    assert ok(run("print(keep)")) == "alive\n"


def test_timeout_kills_and_state_is_replayed(loop: LoopThread, box: LocalSandbox, run) -> None:
    assert ok(run("import sympy as sp\nbase = 40\nxs = [base, base + 1]")) == ""
    res = run("broken = 1\nraise ValueError('boom')")
    assert res.status == "error"
    pid = box._sessions[run.sid].worker.pid  # type: ignore[attr-defined]
    res = run("y = 0\nwhile True:\n    y += 1", timeout_s=1.0)
    assert res.status == "timeout"
    # Killed at the limit, not before it; the upper bound only says "not the CPU backstop or
    # later" and leaves seconds for a busy host to deliver the timer.
    assert "time limit" in res.stderr and 0.9 <= res.wall_s < 1.0 + 5.0
    wait_until(lambda: is_gone(pid), f"worker {pid} to exit")
    # State from successful and runtime-error cells is rebuilt; the killed cell is not replayed.
    assert ok(run("print(xs, broken, sp.Integer(2) ** 3)")) == "[40, 41] 1 8\n"
    assert run("print(y)").status == "error"


def test_cpu_limit_kills_worker(loop: LoopThread) -> None:
    async def go() -> tuple[ExecResult, ExecResult]:
        async with LocalSandbox(SandboxConfig(warm_workers=0, cpu_s=1.0)) as sb:
            sid = await sb.open_session()
            # RLIMIT_CPU (1 s of CPU) must end it; the wall-clock limit is only a backstop far
            # beyond the wall time 1 s of CPU takes on a busy host.
            spin = await sb.run(sid, "n = 0\nwhile True:\n    n += 1", timeout_s=120)
            after = await sb.run(sid, "print('fine')")
            return spin, after

    spin, after = loop.run(go())
    assert spin.status == "killed" and "CPU time limit exceeded" in spin.stderr
    assert ok(after) == "fine\n"


def test_memory_bombs_are_contained(run) -> None:
    assert ok(run("keep = 7")) == ""
    for bomb in ("s = 'a' * 10**10", "big = list(range(10**10))", "import numpy as np\nz = np.ones(10**10)"):
        res = run(bomb)
        assert res.status in ("error", "killed"), res
        assert "MemoryError" in res.stderr or "memory" in res.stderr.lower(), res.stderr
    assert ok(run("print(keep)")) == "7\n"


def test_environment_not_visible(loop: LoopThread, box: LocalSandbox, run) -> None:
    os.environ["RAYSOLVE_TEST_SECRET"] = "hunter2"
    try:
        sid = loop.run(box.open_session())
        try:
            res = loop.run(box.run(sid, "import sys\nprint(sys.argv, 1)"))
            assert ok(res) == "[] 1\n"
            for probe in (
                "open('/proc/self/environ').read()",
                "import numpy as np\nnp.fromfile('/proc/self/environ', dtype=np.uint8)",
                "import numpy as np\nnp.loadtxt('/proc/self/environ')",
                "import os\nos.environ",
                "import sys\nsys.modules['os'].environ",
            ):
                res = loop.run(box.run(sid, probe))
                assert res.status == "error" and "hunter2" not in res.text, res
            pid = box._sessions[sid].worker.pid
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if item)
            assert b"RAYSOLVE_TEST_SECRET" not in env
            assert env[b"OPENBLAS_NUM_THREADS"] == b"1"
            assert set(env) <= {k.encode() for k in _ALLOWED_ENV}
            assert os.listdir(f"/proc/{pid}/cwd") == []
        finally:
            loop.run(box.close(sid))
    finally:
        del os.environ["RAYSOLVE_TEST_SECRET"]


_ALLOWED_ENV = {
    "PATH", "PYTHONPATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "PYTHONHASHSEED",
    "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE", "PYTHONIOENCODING", "MALLOC_ARENA_MAX",
    "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
}


def test_worker_limits_and_network_namespace(box: LocalSandbox, run) -> None:
    ok(run("pass"))
    pid = box._sessions[run.sid].worker.pid  # type: ignore[attr-defined]
    limits = open(f"/proc/{pid}/limits").read()
    assert any(line.startswith("Max file size") and " 0 " in line for line in limits.splitlines())
    assert any(line.startswith("Max core file size") and " 0 " in line for line in limits.splitlines())
    assert any(line.startswith("Max address space") and str(1536 * 2**20) in line for line in limits.splitlines())
    if box.config.isolate_network and os.path.exists("/usr/bin/unshare"):
        from raysolve.sandbox.process import _network_prefix

        if _network_prefix:
            assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")


def test_cancellation_kills_worker_and_session_recovers(loop: LoopThread, box: LocalSandbox, run) -> None:
    assert ok(run("state = 'kept'")) == ""
    pid = box._sessions[run.sid].worker.pid  # type: ignore[attr-defined]

    async def cancel_midway() -> bool:
        task = asyncio.ensure_future(box.run(run.sid, "while True:\n    pass", 120))  # type: ignore[attr-defined]
        await _spinning(pid)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert loop.run(cancel_midway())
    wait_until(lambda: is_gone(pid), f"worker {pid} to exit")
    assert ok(run("print(state)")) == "kept\n"


def test_parallel_sessions_are_isolated(loop: LoopThread, box: LocalSandbox) -> None:
    async def go() -> list[str]:
        sids = [await box.open_session() for _ in range(3)]
        await asyncio.gather(*(box.run(s, f"v = {i}") for i, s in enumerate(sids)))
        results = await asyncio.gather(*(box.run(s, "print(v)") for s in sids))
        await asyncio.gather(*(box.close(s) for s in sids))
        return [ok(r) for r in results]

    assert loop.run(go()) == ["0\n", "1\n", "2\n"]


def test_close_kills_worker(loop: LoopThread, box: LocalSandbox) -> None:
    sid = loop.run(box.open_session())
    ok(loop.run(box.run(sid, "pass")))
    pid = box._sessions[sid].worker.pid
    loop.run(box.close(sid))
    wait_until(lambda: is_gone(pid), f"worker {pid} to exit")
    with pytest.raises(KeyError):
        loop.run(box.run(sid, "pass"))


def test_idle_workers_are_evicted_and_rebuilt(loop: LoopThread) -> None:
    async def go() -> tuple[str, str, dict[str, int], ExecResult]:
        async with LocalSandbox(SandboxConfig(warm_workers=0, max_live_workers=1)) as sb:
            a, b = await sb.open_session(), await sb.open_session()
            await sb.run(a, "x = 'from a'")
            await sb.run(b, "y = 'from b'")  # a's worker is stopped: one live worker allowed
            stats = sb.stats()
            back_in_a = (await sb.run(a, "print(x)")).stdout  # replayed in a new worker
            back_in_b = (await sb.run(b, "print(y)")).stdout
        async with LocalSandbox(SandboxConfig(warm_workers=0, max_live_workers=1, replay_budget_s=0.0)) as sb:
            a, b = await sb.open_session(), await sb.open_session()
            await sb.run(a, "x = 1")
            await sb.run(b, "pass")
            lost = await sb.run(a, "print('still runs')")
        return back_in_a + back_in_b, str(stats["live_workers"]), stats, lost

    outputs, live, stats, lost = loop.run(go())
    assert live == "1", stats
    assert outputs == "from a\nfrom b\n"
    assert lost.status == "ok" and lost.stdout == "still runs\n"
    assert "1 of 1 earlier runs could not be restored" in lost.stderr


def test_host_side_imports_stay_light() -> None:
    code = (
        "import sys, raysolve.sandbox as s\n"
        "s.LocalSandbox, s.SandboxConfig, s.ExecResult\n"
        "heavy = {'numpy', 'sympy', 'ray', 'RestrictedPython'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


async def _spinning(pid: int, ticks: int = 20) -> None:
    """Return once worker ``pid`` has used ``ticks`` more clock ticks of CPU (0.2 s): it is
    inside the busy loop of the cell just sent (an idle worker waits for requests and uses
    none), however slowly a busy host runs it."""
    start = cpu_ticks(pid)
    await await_until(lambda: cpu_ticks(pid) >= start + ticks, f"worker {pid} to run the cell")


def test_worker_search_path_keeps_packages_installed_by_path() -> None:
    # Offline GPU images and Ray runtime environments install packages through PYTHONPATH;
    # the worker's clean environment must still find them (seen on an H200: RestrictedPython
    # lived in /tmp/site, and every code call failed until the path was passed on).
    from raysolve.sandbox.process import _PACKAGE_ROOT, worker_env, worker_pythonpath

    assert worker_pythonpath("/tmp/site:/opt/x::/tmp/site").split(":") == [_PACKAGE_ROOT, "/tmp/site", "/opt/x"]
    assert worker_pythonpath("") == _PACKAGE_ROOT
    env = worker_env("/tmp/w")
    assert env["PYTHONPATH"].split(":")[0] == _PACKAGE_ROOT
    assert "HOME" in env and not any(k.startswith(("RAY_", "AWS_")) for k in env)


_ESCAPED = r"""
import json, os, signal, socket, sys, threading
from raysolve.sandbox.worker import DEFAULTS, apply_limits, drop_root
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as the fork server sets it for its workers
port, secret = int(sys.argv[1]), sys.argv[2]
out = {"dropped": drop_root(), "uid": os.getuid()}
apply_limits(DEFAULTS)
def attempt(name, fn):
    try:
        fn()
        out[name] = "allowed"
    except BaseException as exc:
        out[name] = type(exc).__name__
        out[name + "_why"] = str(exc)
def fork():
    if os.fork() == 0:
        os._exit(0)
def write():
    with open("written.txt", "w") as fh:
        fh.write("x" * 100)
        fh.flush()
attempt("fork", fork)
attempt("thread", lambda: threading.Thread(target=lambda: None).start())
attempt("write", write)
def connect():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))
attempt("connect", connect)
attempt("read_root_only", lambda: open(secret).read())
attempt("signal_parent", lambda: os.kill(os.getppid(), 0))
print(json.dumps(out))
"""


def test_os_limits_hold_for_code_that_escaped_the_filter(tmp_path) -> None:
    """Assume an escape from the language filter: raw Python with the worker's OS
    set-up (clean env, network namespace, dropped root, rlimits) still cannot fork,
    start threads, write file contents, reach a listening host port, read root-only
    files, or signal the host."""
    import json
    import socket

    from raysolve.sandbox.process import network_prefix, worker_env

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    secret = tmp_path / "secret"
    secret.write_text("hunter2")
    secret.chmod(0o600)
    workdir = tmp_path / "work"
    workdir.mkdir()
    prefix = asyncio.run(network_prefix(True))
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, "-c", _ESCAPED, str(server.getsockname()[1]), str(secret)],
            cwd=workdir, env=worker_env(str(workdir)), capture_output=True, text=True, timeout=60,
        )
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    unprivileged = out["uid"] != 0 or bool(prefix)  # real root ignores RLIMIT_NPROC
    if unprivileged:
        assert out["fork"] == "BlockingIOError" and out["thread"] == "RuntimeError", out
    assert out["write"] in ("OSError", "PermissionError"), out  # EFBIG, or no write access at all
    assert not (workdir / "written.txt").exists() or (workdir / "written.txt").stat().st_size == 0
    if prefix:
        assert out["connect"] == "OSError", out  # no route out of an empty network namespace
    if out["dropped"]:
        assert out["read_root_only"] == "PermissionError" and out["signal_parent"] == "PermissionError", out


def test_worker_killed_from_outside_is_reported_and_rebuilt(loop: LoopThread, box: LocalSandbox, run) -> None:
    # What the kernel's OOM killer or an operator does: SIGKILL mid-run.
    assert ok(run("import numpy as np\nv = np.arange(5)")) == ""
    pid = box._sessions[run.sid].worker.pid  # type: ignore[attr-defined]

    async def kill_midway() -> ExecResult:
        task = asyncio.ensure_future(box.run(run.sid, "while True:\n    pass", 120))  # type: ignore[attr-defined]
        await _spinning(pid)
        os.kill(pid, 9)
        return await task

    res = loop.run(kill_midway())
    assert res.status == "killed" and "killed (out of memory or stopped from outside)" in res.stderr
    assert "Variables from earlier runs are kept" in res.stderr
    assert ok(run("print(v.sum())")) == "10\n"


def test_fork_server_death_is_survived(loop: LoopThread) -> None:
    async def go() -> tuple[str, str, int, dict[str, int]]:
        async with LocalSandbox(SandboxConfig(warm_workers=1)) as sb:
            sid = await sb.open_session()
            await sb.run(sid, "kept = 'yes'")
            session = sb._sessions[sid]
            worker = session.worker.pid
            os.kill(sb.fork_server_pid, 9)  # its workers die with it (parent-death signal)
            # The sandbox has seen the death (control socket closed) and the worker is gone.
            await await_until(lambda: sb.fork_server_pid is None and not session.worker.alive, "the death noticed")
            gone = await await_until(lambda: is_gone(worker), f"worker {worker} to exit")
            after = await sb.run(sid, "print(kept)")  # new fork server, state replayed
            fresh = await sb.run(await sb.open_session(), "print('new session')")
            return after.stdout, fresh.stdout, gone, sb.stats()

    after, fresh, gone, stats = loop.run(go())
    assert gone and after == "yes\n" and fresh == "new session\n"
    assert stats["fork_server_starts"] == 2


def test_isolation_report(loop: LoopThread, box: LocalSandbox) -> None:
    report = loop.run(box.isolation())
    assert report["limits"]["file_size_bytes"] == "0" and report["limits"]["core_bytes"] == "0"
    assert report["limits"]["processes"] == "0" and report["limits"]["open_files"] == "32"
    assert report["limits"]["address_space_bytes"] == str(1536 * 2**20)
    assert set(report["env"]) <= _ALLOWED_ENV and report["cwd_entries"] == 0
    if os.geteuid() == 0:
        assert report["uid"] == 65534

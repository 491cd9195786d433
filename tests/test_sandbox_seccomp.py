"""The seccomp program itself: evaluated by a small BPF interpreter on synthetic syscalls
(every rule, both architectures), and its syscall numbers checked against the kernel
headers where they are installed. The filter in a real worker is tested in
``test_sandbox_escaped.py``."""

from __future__ import annotations

import errno
import os
import re
import struct
from pathlib import Path

import pytest

from raysolve.sandbox import seccomp

ALLOW, KILL = 0x7FFF0000, 0x80000000
EPERM, ENOSYS = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS


def run_bpf(program, nr: int, arch: int, args=(0, 0, 0, 0, 0, 0)) -> int:
    """Evaluate a classic-BPF seccomp program on one ``struct seccomp_data``."""
    padded = [a & 0xFFFFFFFFFFFFFFFF for a in args] + [0] * (6 - len(args))
    data = struct.pack("=iIQ6Q", nr, arch, 0, *padded)
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x20:  # ld [k]
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == 0x05:  # ja
            pc += 1 + k
        elif code in (0x15, 0x25, 0x35, 0x45):
            taken = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unknown opcode {code:#x}")


@pytest.fixture(params=["x86_64", "aarch64"])
def arch(request, monkeypatch):
    monkeypatch.setattr(seccomp, "arch", lambda: request.param)
    return request.param


def call(arch: str, name: str, *args: int, pid: int = 4242, fd_limit: int | None = None) -> int:
    program = seccomp.program(pid, fd_limit)
    assert len(program) < 4096
    return run_bpf(program, seccomp.SYSCALLS[arch][name], seccomp.AUDIT_ARCH[arch], args or (0,))


def test_denied_syscalls_are_refused_and_ordinary_ones_allowed(arch):
    for name in ("execve", "ptrace", "socket", "mount", "unshare", "bpf", "clone", "mkdirat", "unlinkat", "symlinkat"):
        assert call(arch, name) == EPERM, name
    assert call(arch, "clone3") == ENOSYS and call(arch, "openat2") == ENOSYS  # libc falls back, then is refused
    for name in ("read", "close", "write", "fcntl", "dup"):
        assert call(arch, name, 5, 1) == ALLOW, name  # (fcntl 1: F_GETFD)


def test_a_foreign_architecture_is_killed(arch):
    other = next(a for a in seccomp.AUDIT_ARCH if a != arch)
    assert run_bpf(seccomp.program(1), 0, seccomp.AUDIT_ARCH[other]) == KILL


def test_x32_numbers_are_refused():
    program = seccomp.program(1) if seccomp.arch() == "x86_64" else None
    if program is None:
        pytest.skip("x86_64 only")
    assert run_bpf(program, 0x40000000 | 1, seccomp.AUDIT_ARCH["x86_64"]) == EPERM


def test_signals_only_to_itself(arch):
    assert call(arch, "kill", 4242, 9) == ALLOW
    assert call(arch, "kill", 0, 9) == ALLOW  # its own process group: itself alone
    for pid in (1, 4243, -1, -4242):
        assert call(arch, "kill", pid, 0) == EPERM, pid
    assert call(arch, "tgkill", 4242, 4243, 9) == ALLOW
    assert call(arch, "tgkill", 1, 1, 9) == EPERM
    assert call(arch, "tkill", 4242, 9) == EPERM


def test_opening_for_writing_is_refused_reading_is_not(arch):
    assert call(arch, "openat", -100, 0, os.O_RDONLY | os.O_CLOEXEC) == ALLOW
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC, os.O_APPEND, os.O_WRONLY | os.O_CREAT):
        assert call(arch, "openat", -100, 0, flags) == EPERM, flags
    if "open" in seccomp.SYSCALLS[arch]:
        assert call(arch, "open", 0, os.O_RDONLY) == ALLOW and call(arch, "open", 0, os.O_CREAT) == EPERM


def test_descriptor_duplication_by_fcntl_is_refused(arch):
    assert call(arch, "fcntl", 3, 0) == EPERM and call(arch, "fcntl", 3, 1030) == EPERM  # F_DUPFD(_CLOEXEC)
    assert call(arch, "fcntl", 3, 1) == ALLOW  # F_GETFD


def test_limits_of_other_processes_cannot_be_touched(arch):
    assert call(arch, "prlimit64", 0, 0, 0x1000, 0) == ALLOW  # the main thread arms its own CPU limit
    assert call(arch, "prlimit64", 4242, 0, 0x1000, 0) == ALLOW
    assert call(arch, "prlimit64", 1, 0, 0, 0x1000) == EPERM


def test_the_cell_thread_writes_only_to_stdio_and_cannot_change_limits(arch):
    cell = dict(fd_limit=2)
    assert call(arch, "write", 1, **cell) == ALLOW and call(arch, "write", 2, **cell) == ALLOW
    assert call(arch, "write", 3, **cell) == EPERM and call(arch, "writev", 7, **cell) == EPERM
    assert call(arch, "write", -1, **cell) == EPERM
    for name in ("sendto", "sendmsg", "dup", "dup3", "setrlimit"):
        assert call(arch, name, 1, **cell) == EPERM, name
    assert call(arch, "prlimit64", 0, 0, 0, 0x7FFD0000, **cell) == ALLOW  # reading a limit
    assert call(arch, "prlimit64", 0, 0, 0x7FFD0000, 0, **cell) == EPERM  # setting one
    assert call(arch, "prlimit64", 0, 0, 0x7F_00000000, 0, **cell) == EPERM  # a pointer with a zero low half


HEADERS = {"x86_64": "/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "aarch64": "/usr/include/asm-generic/unistd.h"}


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_syscall_numbers_match_the_kernel_headers(name):
    path = Path(HEADERS[name])
    if not path.exists():
        pytest.skip(f"{path} not installed")
    text = path.read_text()
    defined = {m.group(1): int(m.group(2)) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)\b", text)}
    for m in re.finditer(r"#define __NR_(\w+)\s+__NR3264_(\w+)", text):  # aarch64's 64-bit aliases
        alias = re.search(rf"#define __NR3264_{m.group(2)}\s+(\d+)", text)
        if alias:
            defined.setdefault(m.group(1), int(alias.group(1)))
    checked = 0
    for syscall, number in seccomp.SYSCALLS[name].items():
        if syscall in defined:
            assert defined[syscall] == number, syscall
            checked += 1
    assert checked >= len(seccomp.SYSCALLS[name]) - 3  # the newest calls may be missing from older headers

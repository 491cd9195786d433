"""Landlock for sandbox workers: read-only access to the libraries, nothing else; no
signals or abstract sockets outside the worker (raw syscalls through ctypes).

Seccomp (``seccomp.py``) refuses whole syscalls; it cannot see paths. Landlock, an
unprivileged Linux security module (5.13+), restricts what a process may do with the
filesystem by path. A worker's domain allows reading (files and directory listings)
only beneath the interpreter's and the libraries' directories, the system's shared
libraries, ``/dev/null``, ``/dev/urandom`` and the worker's own ``/proc`` entry. So
code that escaped the language filter cannot read other users' files, the host's
configuration or another process's ``/proc`` entry, and cannot create, write or remove
anything anywhere (no write right is granted at all). On ABI 4+ it also refuses TCP
bind/connect, and on ABI 6+ it scopes signals and abstract unix sockets to the domain:
a worker cannot signal its siblings, the fork server or the host.

``abi()`` tells the kernel's Landlock version (0: not available); ``restrict`` applies
the domain to the calling thread and the threads it starts later.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys
import sysconfig
from pathlib import Path

_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
"""landlock_create_ruleset, landlock_add_rule, landlock_restrict_self (same on both)."""

_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# fs access rights, by the ABI that introduced them
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_ABI1_ALL = (1 << 13) - 1  # execute .. make_sym
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1

SYSTEM_READ_PATHS = ("/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib", "/lib64", "/usr/share/zoneinfo",
                     "/etc/ld.so.cache", "/dev/null", "/dev/zero", "/dev/urandom", "/sys/devices/system/cpu")
"""Read by the dynamic loader and numeric libraries at run time."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi() -> int:
    """The kernel's Landlock ABI version, or 0 where Landlock is missing or disabled."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return 0
    try:
        version = _libc().syscall(numbers[0], None, 0, _CREATE_RULESET_VERSION)
    except (OSError, AttributeError):
        return 0
    return max(0, int(version))


def handled_fs(version: int) -> int:
    rights = _ABI1_ALL
    if version >= 2:
        rights |= _REFER
    if version >= 3:
        rights |= _TRUNCATE
    if version >= 5:
        rights |= _IOCTL_DEV
    return rights


def default_read_paths(extra: tuple[str, ...] = ()) -> list[str]:
    """The interpreter, its standard library and site-packages, the library directories of
    ``sys.path`` (the raysolve package rather than the whole checkout holding it), the system's
    shared libraries, and ``extra``; only those that exist."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, *SYSTEM_READ_PATHS, *extra}
    paths |= {p for p in sysconfig.get_paths().values() if p}
    package_root = str(Path(__file__).resolve().parents[2])
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        resolved = str(Path(entry).resolve())
        paths.add(str(Path(package_root) / "raysolve") if resolved == package_root else resolved)
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    return sorted(p for p in paths if os.path.exists(p))


def restrict(read_paths: list[str]) -> int:
    """Apply a domain that allows only reading beneath ``read_paths`` (and this process's own
    ``/proc`` entry) to the calling thread. Returns the ABI used; raises ``OSError`` when the
    kernel refuses. Sets ``no_new_privs`` (required). Irreversible."""
    version = abi()
    if version < 1:
        raise OSError(errno.ENOSYS, "Landlock is not available on this kernel")
    create, add_rule, restrict_self = _SYSCALLS[platform.machine()]
    libc = _libc()
    fs = handled_fs(version)
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if version >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if version >= 6 else 0
    attr = struct.pack("QQQ", fs, net, scoped)[: 8 if version < 4 else (16 if version < 6 else 24)]
    attr_buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(create, attr_buf, len(attr), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        readable = (_READ_FILE | _READ_DIR) & fs
        for path in [*read_paths, f"/proc/{os.getpid()}"]:
            _allow(libc, add_rule, ruleset, path, readable)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(restrict_self, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return version


def _allow(libc: ctypes.CDLL, add_rule: int, ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # gone since the list was made: nothing to allow
    try:
        if not os.path.isdir(path):
            access &= _READ_FILE  # directory rights on a file are refused (EINVAL)
        rule = struct.pack("=Qi", access, fd)
        buf = ctypes.create_string_buffer(rule, len(rule))
        if libc.syscall(add_rule, ruleset, _RULE_PATH_BENEATH, buf, 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule({path}) failed")
    finally:
        os.close(fd)

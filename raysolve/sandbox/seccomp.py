"""A seccomp-BPF filter for sandbox workers, built in Python (no compiled dependency).

The language filter (RestrictedPython and the guards) is assumed to be escapable: code
that gets past it runs as raw Python, or native code, in the worker. This filter is
the OS layer that still holds then. Installed in each worker after its set-up, it makes
the kernel refuse (``EPERM``):

- running programs (``execve``, ``execveat``) and creating processes or threads
  (``fork``, ``vfork``, ``clone``, ``clone3``);
- signals to any process but the worker itself, ``ptrace`` and reading or writing other
  processes' memory;
- new sockets, connections and listeners;
- changing credentials, namespaces, mounts, keys, kernel modules, the clock, or another
  process's limits;
- creating, writing, renaming, linking or removing anything on a filesystem (``open`` with
  a write or create flag, ``mkdir``, ``mknod``, ``symlink``, ``unlink``, ``chmod``, …);
- with ``fd_writes_up_to=2`` (the thread that runs cells), changing any limit at all, and
  writing to, sending on or duplicating any descriptor but 0–2: only the worker's
  trusted main thread can arm the next run's CPU limit and answer the host on its
  channel, so escaped code can neither raise its limits nor forge a reply.

A filter applies to the thread that installs it and to threads it starts later; the
worker installs one on each of its two threads. Syscall numbers are those of the Linux
UAPI headers for x86_64 and aarch64 (checked against the headers in
``tests/test_sandbox_escaped.py`` where they are installed); other architectures get no
filter and ``supported()`` says so.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from dataclasses import dataclass

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "read": 0, "write": 1, "open": 2, "close": 3, "pwrite64": 18, "writev": 20, "dup": 32, "dup2": 33,
        "sendfile": 40, "socket": 41, "connect": 42, "accept": 43, "sendto": 44, "sendmsg": 46, "bind": 49,
        "listen": 50, "socketpair": 53, "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "kill": 62,
        "fcntl": 72, "truncate": 76, "rename": 82, "mkdir": 83, "rmdir": 84, "creat": 85, "link": 86,
        "unlink": 87, "symlink": 88, "chmod": 90, "fchmod": 91, "chown": 92, "fchown": 93, "lchown": 94,
        "ptrace": 101, "syslog": 103, "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114,
        "setgroups": 116, "setresuid": 117, "setresgid": 119, "setfsuid": 122, "setfsgid": 123,
        "rt_sigqueueinfo": 129, "utime": 132, "mknod": 133, "uselib": 134, "personality": 135, "ustat": 136,
        "sysfs": 139, "vhangup": 153, "modify_ldt": 154, "pivot_root": 155, "adjtimex": 159,
        "setrlimit": 160, "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166,
        "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173, "init_module": 175,
        "delete_module": 176, "quotactl": 179, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190,
        "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199, "tkill": 200, "lookup_dcookie": 212,
        "clock_settime": 227, "tgkill": 234, "utimes": 235, "mbind": 237, "set_mempolicy": 238,
        "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "migrate_pages": 256,
        "openat": 257, "mkdirat": 258, "mknodat": 259, "fchownat": 260, "futimesat": 261, "unlinkat": 263,
        "renameat": 264, "linkat": 265, "symlinkat": 266, "fchmodat": 268, "unshare": 272, "splice": 275,
        "tee": 276, "vmsplice": 278, "move_pages": 279, "utimensat": 280, "accept4": 288, "dup3": 292,
        "pwritev": 296, "rt_tgsigqueueinfo": 297, "perf_event_open": 298, "fanotify_init": 300,
        "prlimit64": 302, "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305,
        "sendmmsg": 307, "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
        "finit_module": 313, "renameat2": 316, "memfd_create": 319, "kexec_file_load": 320, "bpf": 321,
        "execveat": 322, "userfaultfd": 323, "copy_file_range": 326, "pwritev2": 328,
        "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "pidfd_open": 434, "clone3": 435, "openat2": 437, "pidfd_getfd": 438, "mount_setattr": 442,
        "quotactl_fd": 443, "memfd_secret": 447, "fchmodat2": 452,
    },
    "aarch64": {
        "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14, "lremovexattr": 15,
        "fremovexattr": 16, "lookup_dcookie": 18, "dup": 23, "dup3": 24, "fcntl": 25, "mknodat": 33,
        "mkdirat": 34, "unlinkat": 35, "symlinkat": 36, "linkat": 37, "renameat": 38, "umount2": 39,
        "mount": 40, "pivot_root": 41, "truncate": 45, "chroot": 51, "fchmod": 52, "fchmodat": 53,
        "fchownat": 54, "fchown": 55, "openat": 56, "close": 57, "vhangup": 58, "quotactl": 60, "read": 63,
        "write": 64, "writev": 66, "pwrite64": 68, "pwritev": 70, "sendfile": 71, "vmsplice": 75,
        "splice": 76, "tee": 77, "utimensat": 88, "acct": 89, "personality": 92, "unshare": 97,
        "kexec_load": 104, "init_module": 105, "delete_module": 106, "clock_settime": 112, "syslog": 116,
        "ptrace": 117, "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138, "reboot": 142,
        "setregid": 143, "setgid": 144, "setreuid": 145, "setuid": 146, "setresuid": 147, "setresgid": 149,
        "setfsuid": 151, "setfsgid": 152, "setgroups": 159, "setrlimit": 164, "settimeofday": 170,
        "adjtimex": 171, "socket": 198, "socketpair": 199, "bind": 200, "listen": 201, "accept": 202,
        "connect": 203, "sendto": 206, "sendmsg": 211, "add_key": 217, "request_key": 218, "keyctl": 219,
        "clone": 220, "execve": 221, "swapon": 224, "swapoff": 225, "mbind": 235, "set_mempolicy": 237,
        "migrate_pages": 238, "move_pages": 239, "rt_tgsigqueueinfo": 240, "perf_event_open": 241,
        "accept4": 242, "prlimit64": 261, "fanotify_init": 262, "name_to_handle_at": 264,
        "open_by_handle_at": 265, "clock_adjtime": 266, "setns": 268, "sendmmsg": 269,
        "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "finit_module": 273,
        "renameat2": 276, "memfd_create": 279, "bpf": 280, "execveat": 281, "userfaultfd": 282,
        "copy_file_range": 285, "pwritev2": 287, "kexec_file_load": 294, "pidfd_send_signal": 424,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_open": 434,
        "clone3": 435, "openat2": 437, "pidfd_getfd": 438, "mount_setattr": 442, "quotactl_fd": 443,
        "memfd_secret": 447, "fchmodat2": 452,
    },
}
"""Syscall numbers per architecture (only the ones the filter names)."""

DENIED = (
    # programs, processes, threads
    "execve", "execveat", "fork", "vfork", "clone", "clone3",
    # other processes
    "ptrace", "tkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_send_signal", "pidfd_open",
    "pidfd_getfd", "process_vm_readv", "process_vm_writev", "kcmp",
    # network
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # credentials, namespaces, mounts, keys, modules, clocks, the kernel
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
    "setgroups", "setfsuid", "setfsgid", "personality", "unshare", "setns", "mount", "umount2",
    "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "syslog", "vhangup", "fanotify_init", "lookup_dcookie", "iopl",
    "ioperm", "modify_ldt", "uselib", "ustat", "sysfs", "mbind", "set_mempolicy", "migrate_pages",
    "move_pages", "io_uring_setup", "io_uring_enter", "io_uring_register",
    # the filesystem: nothing created, written, moved or removed
    "creat", "truncate", "mknod", "mknodat", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat",
    "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod",
    "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes", "utimensat",
    "futimesat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    "name_to_handle_at", "open_by_handle_at", "memfd_create", "memfd_secret",
)
"""Refused outright, on every thread of a worker."""

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | getattr(os, "O_TMPFILE", 0)
_F_DUPFD, _F_DUPFD_CLOEXEC = 0, 1030
_FD_WRITERS = ("write", "writev", "pwrite64", "pwritev", "pwritev2", "sendfile", "splice", "tee",
               "vmsplice", "copy_file_range")
_SENDERS = ("sendto", "sendmsg", "sendmmsg")
_LIMITS = ("setrlimit",)
"""On the cell thread; ``prlimit64`` there may only read (its new-limit pointer must be NULL)."""
_DUPS = ("dup", "dup2", "dup3")

# BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h)
_LD_W_ABS, _JA, _JEQ, _JGE, _JGT, _JSET, _RET = 0x20, 0x05, 0x15, 0x35, 0x25, 0x45, 0x06
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_NR, _ARCH = 0, 4
_PR_SET_NO_NEW_PRIVS, _PR_GET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 39, 22, 2
_X32_BIT = 0x40000000


def _arg(index: int) -> int:
    """Offset of the low 32 bits of syscall argument ``index`` in ``struct seccomp_data``."""
    return 16 + 8 * index


@dataclass(frozen=True)
class Rule:
    """Refuse syscall ``name`` when its argument ``arg`` (low 32 bits) is ``op`` ``values``:
    ``in`` (one of the values), ``not_in``, ``gt`` (above values[0]) or ``any_bit`` (shares a
    bit with values[0]); or, with ``op="non_null"``, when the 64-bit argument is not 0."""

    name: str
    arg: int
    op: str
    values: tuple[int, ...] = ()


def arch() -> str:
    return platform.machine()


def supported() -> bool:
    return arch() in SYSCALLS and hasattr(ctypes, "CDLL")


def rules(own_pid: int, fd_writes_up_to: int | None) -> list[Rule]:
    """The conditional rules of a worker's filter (on top of ``DENIED``)."""
    table = SYSCALLS[arch()]
    out = [
        Rule("kill", 0, "not_in", (own_pid, 0)),  # 0: its own process group, itself alone
        Rule("tgkill", 0, "not_in", (own_pid,)),
        Rule("prlimit64", 0, "not_in", (own_pid, 0)),  # its own limits only (0: itself)
        Rule("fcntl", 1, "in", (_F_DUPFD, _F_DUPFD_CLOEXEC)),
    ]
    if "open" in table:
        out.append(Rule("open", 1, "any_bit", (_WRITE_FLAGS,)))
    out.append(Rule("openat", 2, "any_bit", (_WRITE_FLAGS,)))
    if fd_writes_up_to is not None:
        out += [Rule(name, 0, "gt", (fd_writes_up_to,)) for name in _FD_WRITERS]
        out.append(Rule("prlimit64", 2, "non_null"))  # reading limits is fine, setting is not
    return [r for r in out if r.name in table]


def program(own_pid: int, fd_writes_up_to: int | None = None) -> list[tuple[int, int, int, int]]:
    """The filter as BPF instructions ``(code, jt, jf, k)``."""
    name = arch()
    table = SYSCALLS[name]
    eperm = _RET_ERRNO | errno.EPERM
    ins: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _ARCH),
        (_JEQ, 1, 0, AUDIT_ARCH[name]),
        (_RET, 0, 0, _RET_KILL_PROCESS),  # a foreign ABI (e.g. 32-bit calls on a 64-bit host)
        (_LD_W_ABS, 0, 0, _NR),
    ]
    if name == "x86_64":  # the x32 ABI shares the arch value: refuse its numbers outright
        ins += [(_JGE, 0, 1, _X32_BIT), (_RET, 0, 0, eperm)]
    denied = DENIED + ((_SENDERS + _DUPS + _LIMITS) if fd_writes_up_to is not None else ())
    for syscall in denied:
        if syscall in table:
            errno_ = errno.ENOSYS if syscall in ("clone3", "openat2") else errno.EPERM  # libc then falls back
            ins += [(_JEQ, 0, 1, table[syscall]), (_RET, 0, 0, _RET_ERRNO | errno_)]
    if "openat2" in table:  # its flags sit in a struct the filter cannot read: make libc use openat
        ins += [(_JEQ, 0, 1, table["openat2"]), (_RET, 0, 0, _RET_ERRNO | errno.ENOSYS)]
    for rule in rules(own_pid, fd_writes_up_to):
        ins += _rule(rule, table[rule.name], eperm)
    ins.append((_RET, 0, 0, _RET_ALLOW))
    return ins


def _rule(rule: Rule, nr: int, deny: int) -> list[tuple[int, int, int, int]]:
    """``if nr == rule's syscall and the condition holds: return deny``; otherwise fall through to
    the next rule with the syscall number reloaded (several rules may name one syscall)."""
    reload = (_LD_W_ABS, 0, 0, _NR)
    refuse = (_RET, 0, 0, deny)
    load = (_LD_W_ABS, 0, 0, _arg(rule.arg))
    if rule.op == "non_null":  # either half of the 64-bit argument set
        return [(_JEQ, 0, 5, nr), load, (_JEQ, 0, 2, 0), (_LD_W_ABS, 0, 0, _arg(rule.arg) + 4),
                (_JEQ, 1, 0, 0), refuse, reload]
    if rule.op in ("gt", "any_bit"):
        test = (_JGT if rule.op == "gt" else _JSET, 0, 1, rule.values[0])  # true: refuse, false: next rule
        return [(_JEQ, 0, 3, nr), load, test, refuse, reload]
    k = len(rule.values)
    compares = [(_JEQ, k - j, 0, value & 0xFFFFFFFF) for j, value in enumerate(rule.values)]
    if rule.op == "in":  # equal to one: refuse; none: jump over the refusal
        return [(_JEQ, 0, k + 3, nr), load, *compares, (_JA, 0, 0, 1), refuse, reload]
    if rule.op == "not_in":  # equal to one: next rule; none: refuse
        return [(_JEQ, 0, k + 2, nr), load, *compares, refuse, reload]
    raise ValueError(f"unknown rule operator {rule.op!r}")


def install(fd_writes_up_to: int | None = None) -> None:
    """Set ``no_new_privs`` and install the filter on the calling thread (and the threads it
    starts later). Raises ``OSError`` when the kernel refuses; irreversible."""
    if not supported():
        raise OSError(errno.ENOSYS, f"no seccomp filter for architecture {arch()!r}")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    ins = program(os.getpid(), fd_writes_up_to)
    raw = b"".join(struct.pack("HBBI", *i) for i in ins)
    buf = ctypes.create_string_buffer(raw, len(raw))

    class _Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = _Prog(len(ins), ctypes.addressof(buf))
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def no_new_privs() -> bool:
    """Whether the calling thread has ``no_new_privs`` set (setuid binaries gain nothing)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1
    except (OSError, AttributeError):
        return False

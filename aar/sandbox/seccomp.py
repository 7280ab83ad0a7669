"""The seccomp filter every bubblewrap sandbox gets (`bwrap --seccomp FD`): no new user namespaces.

Why: the kernel lets an unprivileged process create a user namespace and gives it every capability
inside (mount, netfilter, raw sockets ...), which is a large, bug-prone kernel surface, and in the
root mode (bwrap as root, setpriv drop) nothing else stops it. The filter:

* unshare(2) and clone(2) with CLONE_NEWUSER -> EPERM (everything else about them is allowed);
* clone3(2) -> ENOSYS: its flags live in a struct seccomp cannot read, and glibc falls back to clone;
* a few syscalls that sandboxed research code never needs and that keep producing kernel privilege
  escalations (io_uring -> ENOSYS so libraries fall back; bpf, userfaultfd, perf_event_open and the
  kernel keyring -> EPERM);
* a foreign audit arch (e.g. i386 `int 0x80` from an x86_64 process) or x32 syscall numbers: the
  numbers above would not match there, so the process is killed (SIGSYS) instead.

Hand-assembled classic BPF rather than a library: the PyPI bindings to libseccomp are either
unmaintained (pyseccomp, 2021) or need the C library and headers at build time, and the program
is twenty instructions. Only x86_64 and aarch64 (little-endian, 64-bit) are known; elsewhere
`seccomp_program()` returns None and the sandbox runs without the filter (logged by the caller).
"""

from __future__ import annotations

import os
import platform
import struct

# linux/filter.h, linux/bpf_common.h
_BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_BPF_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
_BPF_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
_BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K

# linux/seccomp.h
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

# struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
_OFF_NR, _OFF_ARCH, _OFF_ARG0_LO = 0, 4, 16  # args[0] low word: both arches are little-endian

CLONE_NEWUSER = 0x10000000
_X32_SYSCALL_BIT = 0x40000000
_EPERM, _ENOSYS = 1, 38

# (audit arch, x32 bit to refuse?, syscall numbers). Numbers: asm/unistd_64.h (x86_64) and
# asm-generic/unistd.h (aarch64).
_ARCHES: dict[str, tuple[int, bool, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        True,
        {
            "unshare": 272,
            "clone": 56,
            "clone3": 435,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "bpf": 321,
            "userfaultfd": 323,
            "perf_event_open": 298,
            "add_key": 248,
            "request_key": 249,
            "keyctl": 250,
        },
    ),
    "aarch64": (
        0xC00000B7,
        False,
        {
            "unshare": 97,
            "clone": 220,
            "clone3": 435,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "bpf": 280,
            "userfaultfd": 282,
            "perf_event_open": 241,
            "add_key": 217,
            "request_key": 218,
            "keyctl": 219,
        },
    ),
}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}
_ENOSYS_CALLS = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register")
_EPERM_CALLS = ("bpf", "userfaultfd", "perf_event_open", "add_key", "request_key", "keyctl")


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)  # struct sock_filter, native byte order


def seccomp_program(machine: str | None = None) -> bytes | None:
    """The filter as bytes for `bwrap --seccomp`, or None when this architecture is not known."""
    name = (machine or platform.machine()).lower()
    spec = _ARCHES.get(_ALIASES.get(name, name))
    if spec is None:
        return None
    arch, x32, nr = spec
    # Straight-line program; every jump lands on one of the four returns at the end.
    body: list[tuple[int, int, str | None, str | None]] = []  # (code, k, jt label, jf label)
    body.append((_BPF_LD_W_ABS, _OFF_ARCH, None, None))
    body.append((_BPF_JEQ_K, arch, None, "kill"))
    body.append((_BPF_LD_W_ABS, _OFF_NR, None, None))
    if x32:
        body.append((_BPF_JGE_K, _X32_SYSCALL_BIT, "kill", None))
    for call in _ENOSYS_CALLS:
        body.append((_BPF_JEQ_K, nr[call], "enosys", None))
    for call in _EPERM_CALLS:
        body.append((_BPF_JEQ_K, nr[call], "eperm", None))
    body.append((_BPF_JEQ_K, nr["unshare"], "flags", None))
    body.append((_BPF_JEQ_K, nr["clone"], "flags", "allow"))
    labels = {"flags": len(body)}
    body.append((_BPF_LD_W_ABS, _OFF_ARG0_LO, None, None))
    body.append((_BPF_JSET_K, CLONE_NEWUSER, "eperm", "allow"))
    returns = [
        ("allow", _RET_ALLOW),
        ("eperm", _RET_ERRNO | _EPERM),
        ("enosys", _RET_ERRNO | _ENOSYS),
        ("kill", _RET_KILL_PROCESS),
    ]
    for i, (label, _) in enumerate(returns):
        labels[label] = len(body) + i

    def offset(at: int, label: str | None) -> int:
        if label is None:
            return 0  # fall through to the next instruction
        jump = labels[label] - at - 1
        assert 0 <= jump < 256, "BPF conditional jumps are 8-bit and forward"
        return jump

    out = b"".join(_insn(code, k, offset(i, jt), offset(i, jf)) for i, (code, k, jt, jf) in enumerate(body))
    return out + b"".join(_insn(_BPF_RET_K, value) for _, value in returns)


def seccomp_fd() -> int | None:
    """A readable fd (offset 0) holding the program, for `bwrap --seccomp FD`; the caller closes it.
    None when this architecture has no program."""
    program = seccomp_program()
    if program is None:
        return None
    fd = os.memfd_create("aar-seccomp", os.MFD_CLOEXEC)  # no size limit, unlike a pipe; Popen un-CLOEXECs
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd

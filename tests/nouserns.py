"""Run a command the way Docker's default seccomp profile runs a container's: no user namespaces.

    python tests/nouserns.py COMMAND [ARG ...]

Installs a seccomp filter (inherited by every child) that fails unshare() and clone() with
CLONE_NEWUSER with EPERM and clone3() with ENOSYS (glibc then falls back to clone), as that
profile does for a container without CAP_SYS_ADMIN, then execs COMMAND. Written with ctypes:
the filter is nine instructions, and libseccomp's Python binding exists only for Debian's own
Python, not a venv's.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import sys

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
EPERM, ENOSYS = 1, 38
CLONE_NEWUSER = 0x10000000
# (AUDIT_ARCH, unshare, clone, clone3) per machine
SYSCALLS = {
    "x86_64": (0xC000003E, 272, 56, 435),
    "aarch64": (0xC00000B7, 97, 220, 435),
}
# classic BPF opcodes
LD_W_ABS, JEQ_K, JSET_K, RET_K = 0x20, 0x15, 0x45, 0x06


def _program() -> tuple[bytes, int]:
    arch, unshare, clone, clone3 = SYSCALLS[platform.machine()]
    allow, deny = SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    code = [
        (LD_W_ABS, 0, 0, 4),  # 0: A = arch
        (JEQ_K, 0, 6, arch),  # 1: another ABI: allow (8)
        (LD_W_ABS, 0, 0, 0),  # 2: A = syscall number
        (JEQ_K, 6, 0, clone3),  # 3: clone3: ENOSYS (10)
        (JEQ_K, 1, 0, unshare),  # 4: unshare: look at the flags (6)
        (JEQ_K, 0, 2, clone),  # 5: neither: allow (8)
        (LD_W_ABS, 0, 0, 16),  # 6: A = the low word of args[0], the flags
        (JSET_K, 1, 0, CLONE_NEWUSER),  # 7: CLONE_NEWUSER: EPERM (9)
        (RET_K, 0, 0, allow),  # 8
        (RET_K, 0, 0, deny),  # 9
        (RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),  # 10
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in code), len(code)


def install() -> None:
    """Install the filter in this process (and so in everything it runs from now on)."""
    program, count = _program()
    buffer = ctypes.create_string_buffer(program)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(count, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


if __name__ == "__main__":
    install()
    os.execvp(sys.argv[1], sys.argv[1:])

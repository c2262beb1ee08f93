"""Run model-generated code away from the pipeline: a child process with a time limit, no network, a scratch folder.

Generated code is never executed in the pipeline's own process. The child runs an isolated interpreter (`-I -S`: no
site packages, no environment variables, no current-directory imports) in a fresh temporary directory, with
CPU-time and memory limits, and with the network blocked before the code runs:

- On Linux x86_64 and aarch64 the child installs a seccomp-BPF filter (through ctypes; `PR_SET_NO_NEW_PRIVS` makes
  that unprivileged) under which the kernel refuses, with EPERM, `socket()` for every family but AF_UNIX, and
  `io_uring_setup` (io_uring can open sockets too). The kernel keeps a filter across fork and exec and never lifts
  it, so it binds whatever the program reaches or starts: `_socket`, ctypes, a compiler, the binary it builds, any
  subprocess. If the filter cannot be installed the program exits nonzero with a message, never running unfiltered.
- Other platforms get only a Python-level block (`socket.socket` and `socket.create_connection` raise
  PermissionError), which `_socket`, ctypes or a subprocess get around.

AF_UNIX stays open because the standard library needs it (`socket.socketpair`, multiprocessing); a program can still
reach a local daemon listening on a socket file. This is a network block, not a jail: the filesystem outside the
scratch folder and other processes of the same user are not hidden.
"""

from __future__ import annotations

import errno
import platform
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Runs first in the child. Set here rather than in a `preexec_fn`, which would force a full fork() of the (large)
# parent process for every program: that measured 30 ms of system time per sample, a third of a toy evaluation.
_LIMITS = """\
import resource as _resource
_resource.setrlimit(_resource.RLIMIT_CPU, ({cpu_seconds}, {cpu_seconds}))
_resource.setrlimit(_resource.RLIMIT_AS, ({memory_bytes}, {memory_bytes}))
del _resource
"""

# seccomp-BPF constants, from <linux/bpf_common.h>, <linux/seccomp.h>, <linux/audit.h> and <asm/unistd*.h>.
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, ...
_KILL_PROCESS, _ALLOW, _DENY = 0x80000000, 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_*; ERRNO | EPERM
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data; args[0]'s low 32 bits (little-endian)
_X32_SYSCALL_BIT, _NR_IO_URING_SETUP, _AF_UNIX = 0x40000000, 425, 1
_NATIVE = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}  # machine: AUDIT_ARCH_*, __NR_socket

# prctl(PR_SET_NO_NEW_PRIVS=38, 1) then prctl(PR_SET_SECCOMP=22, SECCOMP_MODE_FILTER=2, &struct sock_fprog).
_SECCOMP_BLOCK = """\
import ctypes as _ctypes
class _Program(_ctypes.Structure):
    _fields_ = [("len", _ctypes.c_ushort), ("filter", _ctypes.c_char_p)]
_filter = {filter!r}
_libc = _ctypes.CDLL(None, use_errno=True)
_zero, _program = _ctypes.c_ulong(0), _Program(len(_filter) // 8, _filter)
if _libc.prctl(38, _ctypes.c_ulong(1), _zero, _zero, _zero) or _libc.prctl(
    22, _ctypes.c_ulong(2), _ctypes.byref(_program), _zero, _zero
):
    import os as _os
    raise SystemExit({failed!r} + _os.strerror(_ctypes.get_errno()))
del _ctypes, _Program, _filter, _libc, _zero, _program
"""

_FILTER_FAILED = "sandbox: cannot install the seccomp network filter: "

# Only where there is no filter: `import socket` costs the child about 7 ms, and it would refuse nothing more.
_PYTHON_BLOCK = """\
import socket as _socket
def _refuse(*args, **kwargs):
    raise PermissionError("network access is disabled in the sandbox")
_socket.socket = _refuse
_socket.create_connection = _refuse
del _socket, _refuse
"""


def _network_filter(arch: int, socket_nr: int) -> bytes:
    """The seccomp program as the kernel reads it: struct sock_filter {u16 code; u8 jt; u8 jf; u32 k} in a row.

    A jump's jt/jf count the instructions skipped after it. A foreign arch (i386 entry points on x86_64) numbers
    syscalls differently, so it is killed rather than checked; x32 calls carry the native arch and a high bit.
    """
    program = [
        (_LD_W_ABS, 0, 0, _ARCH),
        (_JEQ_K, 1, 0, arch),
        (_RET_K, 0, 0, _KILL_PROCESS),
        (_LD_W_ABS, 0, 0, _NR),
        (_JGE_K, 5, 0, _X32_SYSCALL_BIT),  # -> deny
        (_JEQ_K, 4, 0, _NR_IO_URING_SETUP),  # -> deny
        (_JEQ_K, 0, 2, socket_nr),  # other syscalls -> allow
        (_LD_W_ABS, 0, 0, _ARG0),
        (_JEQ_K, 0, 1, _AF_UNIX),
        (_RET_K, 0, 0, _ALLOW),
        (_RET_K, 0, 0, _DENY),
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def _network_block() -> str:
    """The kernel-level block where this platform's syscall ABI is known (64-bit Linux), else the Python-level one."""
    native = _NATIVE.get(platform.machine()) if sys.platform == "linux" and sys.maxsize > 2**32 else None
    return _SECCOMP_BLOCK.format(filter=_network_filter(*native), failed=_FILTER_FAILED) if native else _PYTHON_BLOCK


_NETWORK_BLOCK = _network_block()


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    timed_out: bool
    output: str


def run_python(code: str, timeout: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Execute `code` (a program, tests included) in a sandboxed child; it passes if it exits 0 within `timeout`.

    Raises RuntimeError where the kernel refuses the network filter, rather than score every program as failed.
    """
    with tempfile.TemporaryDirectory(prefix="onmerge-sandbox-") as scratch:
        program = Path(scratch) / "program.py"
        limits = _LIMITS.format(cpu_seconds=int(timeout) + 1, memory_bytes=memory_mb * 2**20)
        program.write_text(limits + _NETWORK_BLOCK + code)
        try:
            completed = subprocess.run(
                [sys.executable, "-I", "-S", str(program)],
                cwd=scratch,
                env={"PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return SandboxResult(passed=False, timed_out=True, output="")
        if completed.returncode != 0 and completed.stderr.startswith(_FILTER_FAILED):
            raise RuntimeError(f"{completed.stderr.strip()}; generated code cannot run without it on this machine")
        return SandboxResult(completed.returncode == 0, False, (completed.stdout + completed.stderr)[-2000:])

"""Run model-generated code away from the pipeline: a child process with a time limit, no network, a scratch folder.

Generated code is never executed in the pipeline's own process. The child runs an isolated interpreter (`-I -S`: no
site packages, no environment variables, no current-directory imports) in a fresh temporary directory, with
CPU-time and memory limits, and with socket creation disabled before the code runs.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Runs first in the child: CPU and memory limits, and no sockets, so generated code cannot reach a network even
# where one exists. Set here rather than in a `preexec_fn`, which would force a full fork() of the (large) parent
# process for every program: that measured 30 ms of system time per sample, a third of a toy evaluation.
_PRELUDE = """\
import resource as _resource
_resource.setrlimit(_resource.RLIMIT_CPU, ({cpu_seconds}, {cpu_seconds}))
_resource.setrlimit(_resource.RLIMIT_AS, ({memory_bytes}, {memory_bytes}))
del _resource
import socket as _socket
def _refuse(*args, **kwargs):
    raise PermissionError("network access is disabled in the sandbox")
_socket.socket = _refuse
_socket.create_connection = _refuse
del _socket, _refuse
"""


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    timed_out: bool
    output: str


def run_python(code: str, timeout: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Execute `code` (a program, tests included) in a sandboxed child; it passes if it exits 0 within `timeout`."""
    with tempfile.TemporaryDirectory(prefix="onmerge-sandbox-") as scratch:
        program = Path(scratch) / "program.py"
        program.write_text(_PRELUDE.format(cpu_seconds=int(timeout) + 1, memory_bytes=memory_mb * 2**20) + code)
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
        return SandboxResult(completed.returncode == 0, False, (completed.stdout + completed.stderr)[-2000:])

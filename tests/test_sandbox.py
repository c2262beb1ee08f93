"""The sandbox keeps its limits, and its network block holds below Python: raw sockets, ctypes, compiled code, children.

Each network test's program passes only if the kernel refused it, so without the seccomp filter they fail.
"""

import ctypes
import os
import platform
import shutil
import socket
import sys

import pytest

from onmerge import sandbox
from onmerge.sandbox import run_python

kernel_block = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() not in {"x86_64", "aarch64"},
    reason="the seccomp network filter is installed on Linux x86_64 and aarch64 only",
)


def test_limits_scratch_and_verdicts():
    assert run_python("assert 1 + 1 == 2").passed
    assert not run_python("assert 1 + 1 == 3").passed
    slow = run_python("while True:\n    pass", timeout=1.0)
    assert slow.timed_out and not slow.passed
    scratch = "import os\nassert os.path.basename(os.getcwd()).startswith('onmerge-sandbox-')\n"
    assert run_python(scratch + "assert os.listdir() == ['program.py']").passed  # a fresh folder, not the checkout


@kernel_block
@pytest.mark.parametrize("family", ["AF_INET", "AF_INET6", "AF_NETLINK"])
def test_raw_socket_module_is_refused(family):
    program = f"""\
import errno, _socket
try:
    _socket.socket(_socket.{family}, _socket.SOCK_DGRAM)
except PermissionError as error:
    assert error.errno == errno.EPERM, error
else:
    raise SystemExit("socket created")
"""
    result = run_python(program)
    assert result.passed, result.output


@kernel_block
def test_libc_socket_through_ctypes_is_refused():
    program = """\
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
assert libc.socket(2, 1, 0) == -1 and ctypes.get_errno() == errno.EPERM  # AF_INET, SOCK_STREAM
"""
    result = run_python(program)
    assert result.passed, result.output


@kernel_block
def test_unix_sockets_still_work():
    program = """\
import socket
left, right = socket.socketpair()
left.sendall(b"ok")
assert right.recv(2) == b"ok"
socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()
"""
    result = run_python(program)
    assert result.passed, result.output


@kernel_block
def test_a_compiled_program_is_refused():
    compiler = shutil.which("cc") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C compiler on PATH")
    source = """\
#include <errno.h>
#include <sys/socket.h>
int main(void) { return socket(AF_INET, SOCK_STREAM, 0) == -1 && errno == EPERM ? 0 : 1; }
"""
    program = f"""\
import subprocess
open("probe.c", "w").write({source!r})
subprocess.run([{compiler!r}, "-x", "c", "probe.c", "-o", "probe"], check=True)
assert subprocess.run(["./probe"]).returncode == 0, "the compiled program opened an AF_INET socket"
"""
    result = run_python(program, timeout=60, memory_mb=2048)
    assert result.passed, result.output


@kernel_block
def test_a_subprocess_is_refused():
    program = """\
import subprocess, sys
child = "import _socket; _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)"
run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
assert run.returncode != 0 and "PermissionError" in run.stderr, run.stderr
"""
    result = run_python(program, timeout=20)
    assert result.passed, result.output


@kernel_block
def test_no_connection_reaches_a_listening_server():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        program = f"""\
import socket, subprocess, sys
attempts = [
    lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2),
    lambda: subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', {port}))"]),
    lambda: subprocess.run(["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/{port}"]),
]
for attempt in attempts:
    try:
        attempt()
    except OSError:
        pass
"""
        result = run_python(program, timeout=20)
        assert result.passed, result.output  # every attempt ran
        server.settimeout(0.5)
        with pytest.raises(TimeoutError):
            server.accept()
        with socket.create_connection(("127.0.0.1", port)):  # the server was reachable all along
            server.accept()[0].close()


@kernel_block
def test_io_uring_is_refused():
    libc = ctypes.CDLL(None, use_errno=True)
    ring = libc.syscall(425, 1, ctypes.create_string_buffer(120))  # io_uring_setup(1 entry, zeroed params)
    if ring < 0:
        pytest.skip("io_uring is unavailable here, so a refusal would prove nothing")
    os.close(ring)
    program = """\
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
assert libc.syscall(425, 1, ctypes.create_string_buffer(120)) == -1 and ctypes.get_errno() == errno.EPERM
"""
    result = run_python(program)
    assert result.passed, result.output


@pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64", reason="x32 is an x86_64 ABI")
def test_x32_syscalls_are_refused():
    program = """\
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
assert libc.syscall(0x40000000 + 39) == -1 and ctypes.get_errno() == errno.EPERM  # x32 getpid
"""
    result = run_python(program)
    assert result.passed, result.output


@kernel_block
def test_a_filter_that_fails_to_install_stops_the_program_and_the_evaluation():
    block = sandbox._SECCOMP_BLOCK.format(filter=bytes(8), failed=sandbox._FILTER_FAILED)  # no return: rejected
    with pytest.raises(RuntimeError, match="cannot install the seccomp network filter: Invalid argument") as error:
        run_python(block + "print('ran unfiltered')\n")
    assert "ran unfiltered" not in str(error.value)

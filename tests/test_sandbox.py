"""The sandbox contains hostile programs: it keeps them in their scratch folder, away from the evaluator, its
secrets and its processes, kills all they start, bounds what they print, and passes only programs that ran to the
end; its network block holds below Python (raw sockets, ctypes, compiled code, children).

Each hostile program passes only if it was refused, or the test checks from outside that it was contained. The
network tests' programs pass only if the kernel refused them, so without the seccomp filter they fail.
"""

import ctypes
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from onmerge import sandbox
from onmerge.sandbox import run_python

REPO = Path(__file__).resolve().parents[1]

kernel_block = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() not in {"x86_64", "aarch64"},
    reason="the seccomp network filter is installed on Linux x86_64 and aarch64 only",
)


def test_limits_scratch_and_verdicts():
    assert run_python("assert 1 + 1 == 2").passed
    assert not run_python("assert 1 + 1 == 3").passed
    slow = run_python("while True:\n    pass", timeout=1.0)
    assert slow.timed_out and not slow.passed
    scratch = "import os\nassert os.getcwd() == '/sandbox' and os.listdir() == ['program.py'], os.listdir()\n"
    assert run_python(scratch + "open('left-over', 'w').write('x')").passed
    assert run_python(scratch).passed  # a fresh folder each run, not the checkout


def test_tracebacks_show_the_program_and_its_output():
    result = run_python("print('before')\ndef f():\n    raise ValueError('wrong')\nf()\n")
    assert not result.passed
    assert result.output.index("before") < result.output.index('File "/sandbox/program.py", line 4')
    assert "raise ValueError('wrong')" in result.output and "ValueError: wrong" in result.output


# ---------------------------------------------------------------------------------------------------------------
# Nothing outside the scratch folder can be written.


@pytest.mark.parametrize("where", ["repository", "results", "source", "site-packages", "home", "host tmp"])
def test_writing_outside_the_scratch_folder_is_refused(where, tmp_path):
    name = f"sandbox-escape-{secrets.token_hex(4)}"
    target = {
        "repository": REPO / name,
        "results": REPO / "results" / name,
        "source": REPO / "src" / "onmerge" / f"{name}.py",
        "site-packages": Path(sysconfig.get_paths()["purelib"]) / f"{name}.pth",
        "home": Path.home() / name,
        "host tmp": tmp_path / name,  # the sandbox's /tmp is its own tmpfs: the write lands there
    }[where]
    program = f"""\
import os
try:
    os.makedirs(os.path.dirname({str(target)!r}), exist_ok=True)
    open({str(target)!r}, "w").write("escaped")
except OSError as error:
    print("refused:", error)
"""
    result = run_python(program)
    assert result.passed, result.output
    assert not target.exists()
    assert ("refused" in result.output) == (where != "host tmp"), result.output


# ---------------------------------------------------------------------------------------------------------------
# The evaluator's secrets and processes are out of reach.

SECRET_PREFIX = "sk-onmerge-test-"

SECRET_SEARCHES = {
    "its environment": "assert not any(PREFIX in v or k == 'OPENAI_API_KEY' for k, v in os.environ.items())",
    "every process's environment": """\
for entry in os.listdir("/proc"):
    for part in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{entry}/{part}", "rb").read()
        except OSError:
            continue
        assert PREFIX.encode() not in data and b"OPENAI_API_KEY" not in data, entry""",
    "the evaluator's and its parent's environ": """\
for pid in (EVALUATOR, os.getppid()):
    try:
        data = open(f"/proc/{pid}/environ", "rb").read()
    except OSError as error:
        print(pid, error)
    else:
        assert PREFIX.encode() not in data, pid""",
}

# An evaluator started with the key in its environment, as a judge run is: /proc/<pid>/environ shows the environment
# a process started with, so setting the variable in this test process would prove nothing.
EVALUATOR = """\
import json, os, sys
from onmerge.sandbox import run_python
result = run_python(f"import os\\nPREFIX, EVALUATOR = {sys.argv[1]!r}, {os.getpid()}\\n" + sys.argv[2])
print(json.dumps([result.passed, result.output]))
"""


@pytest.mark.parametrize("search", SECRET_SEARCHES)
def test_the_evaluators_secret_is_not_visible(search):
    environment = {**os.environ, "OPENAI_API_KEY": SECRET_PREFIX + secrets.token_hex(8)}  # the program knows the prefix
    command = [sys.executable, "-c", EVALUATOR, SECRET_PREFIX, SECRET_SEARCHES[search]]
    evaluator = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60, check=True)
    passed, output = json.loads(evaluator.stdout)
    assert passed, output


SIGNALS = {
    "its parent": "os.kill(os.getppid(), signal.SIGKILL)",
    "the evaluator's pid": f"os.kill({os.getpid()}, signal.SIGUSR1)",
    "every process": "os.kill(-1, signal.SIGUSR1)\nos.kill(-1, signal.SIGKILL)",
    "kill -9 -1": "subprocess.run(['/bin/sh', '-c', 'kill -9 -1'])",
}


@pytest.mark.parametrize("target", SIGNALS)
def test_the_evaluator_cannot_be_signalled(target):
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: received.append(True))
    bystander = subprocess.Popen(["sleep", "30"])  # the evaluating user's other processes
    try:
        attempt = SIGNALS[target].replace("\n", "\n    ")
        program = f"import os, signal, subprocess\ntry:\n    {attempt}\nexcept OSError as error:\n    print(error)\n"
        run_python(program)  # may kill itself: what counts is that it reaches nobody else
        time.sleep(0.1)
        assert not received and bystander.poll() is None
    finally:
        signal.signal(signal.SIGUSR1, previous)
        bystander.kill()
        bystander.wait()


def test_it_runs_unprivileged():
    program = """\
import os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == 0, status["CapEff"]
assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() != "0"
print(os.getuid())
"""
    result = run_python(program)
    assert result.passed, result.output
    if os.geteuid() == 0:
        assert result.output.strip() == "65534"  # nobody, not root


# ---------------------------------------------------------------------------------------------------------------
# Every process a program starts dies with it; limits on processes, files, memory.


def _running(marker: str) -> bool:
    """Whether any process on this machine has `marker` in its command line."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                return True
        except OSError:
            pass
    return False


def _gone(marker: str, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while _running(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


LEFT_BEHIND = {
    "a background child": "child = subprocess.Popen(['sleep', MARKER])",
    "a daemon in its own session": (
        "child = subprocess.Popen(['sleep', MARKER], start_new_session=True, stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL)"
    ),
    "a double-forked grandchild": (
        "child = subprocess.Popen(['/bin/sh', '-c', f'(setsid sleep {MARKER} &) ; sleep {MARKER}'])\ntime.sleep(0.2)"
    ),
}


@pytest.mark.parametrize("ending", ["its end", "the timeout"])
@pytest.mark.parametrize("child", LEFT_BEHIND)
def test_processes_it_starts_die_with_it(child, ending):
    marker = f"300.{secrets.randbelow(10**9):09d}"  # a sleep of 300 s, told apart by its digits
    end = "" if ending == "its end" else "while True:\n    pass\n"
    program = f"import subprocess, time\nMARKER = {marker!r}\n{LEFT_BEHIND[child]}\nassert child.poll() is None\n{end}"
    result = run_python(program, timeout=1.0 if end else 5.0)
    assert result.passed == (ending == "its end") and result.timed_out == (ending == "the timeout"), result.output
    assert _gone(marker)


def test_a_fork_bomb_is_stopped_and_nothing_outlives_it():
    marker = f"300.{secrets.randbelow(10**9):09d}"
    program = f"""\
import subprocess
started = 0
while True:
    try:
        subprocess.Popen(["sleep", {marker!r}])
        started += 1
    except OSError:
        pass
"""
    result = run_python(program, timeout=1.0)
    assert result.timed_out
    assert _gone(marker)


def test_the_process_count_is_limited():
    program = """\
import os, time
started = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(10)
            os._exit(0)
        started += 1
except OSError as error:
    print(started, error.errno)
"""
    result = run_python(program, timeout=10.0)
    assert result.passed, result.output
    started, error = map(int, result.output.split())
    assert started < sandbox._PROCESSES and error == 11  # EAGAIN


def test_file_size_scratch_space_and_memory_are_limited():
    big_file = f"""\
import errno
try:
    with open("big", "wb") as file:
        file.write(b"x" * ({sandbox._FILE_BYTES} + 1))
except OSError as error:
    assert error.errno == errno.EFBIG, error
else:
    raise AssertionError("wrote past the file size limit")
"""
    fill = f"""\
import errno
try:
    for number in range({sandbox._SCRATCH_BYTES // sandbox._FILE_BYTES} + 1):
        with open(f"part{{number}}", "wb") as file:
            file.write(b"x" * ({sandbox._FILE_BYTES} - 1))
except OSError as error:
    assert error.errno == errno.ENOSPC, error
else:
    raise AssertionError("filled past the scratch folder's size")
"""
    for program in (big_file, fill, "try:\n    bytearray(2**30)\nexcept MemoryError:\n    pass\nelse:\n    1 / 0\n"):
        result = run_python(program, timeout=20.0, memory_mb=512)
        assert result.passed, result.output


# ---------------------------------------------------------------------------------------------------------------
# A program passes only when it ran to its end.

TESTS = "\nassert False, 'the tests ran'\n"
STOPS_EARLY = {
    "sys.exit(0)": "import sys\nsys.exit(0)" + TESTS,
    "raise SystemExit": "raise SystemExit" + TESTS,
    "exit in a function": "def main():\n    raise SystemExit(0)\nmain()" + TESTS,
    "os._exit(0)": "import os\nos._exit(0)" + TESTS,
    "a signal to itself": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)" + TESTS,
    "a thread exits the process": "import os, threading, time\nthreading.Thread(target=os._exit, args=(0,)).start()\n"
    "time.sleep(5)" + TESTS,
    "only a forked child reaches the end": "import os\nif os.fork():\n    os.wait()\n    os._exit(0)\n",
}


@pytest.mark.parametrize("stop", STOPS_EARLY)
def test_a_program_that_stops_before_its_end_fails(stop):
    result = run_python(STOPS_EARLY[stop])
    assert not result.passed and not result.timed_out
    assert "the tests ran" not in result.output


@pytest.mark.parametrize(
    "program",
    [
        "from __future__ import annotations\ndef f(x: Undefined) -> Undefined:\n    return x\nassert f(1) == 1\n",
        "café = 'naïve ✓'\nassert len(café) == 7\nprint(café)\n",
        "import sys\nassert __name__ == '__main__' and sys.argv == [__file__] and __file__ == '/sandbox/program.py'\n",
        "import os, subprocess\nassert subprocess.run(['true']).returncode == 0\nif os.fork() == 0:\n    os._exit(0)\n",
    ],
)
def test_a_program_that_runs_to_its_end_passes(program):
    result = run_python(program)
    assert result.passed, result.output


@pytest.mark.parametrize("source", ["x = 1\x00", "x = '\ud800'", "def f(:\n"])
def test_unreadable_source_fails_without_stopping_the_evaluation(source):
    assert not run_python(source).passed


# ---------------------------------------------------------------------------------------------------------------
# Output: bounded, decoded whatever it is.


def _rss_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


def test_printing_300_mib_neither_grows_the_evaluator_nor_hangs_it():
    program = (
        "import sys\nline = b'x' * 1023 + b'\\n'\nfor _ in range(300 * 1024):\n    sys.stdout.buffer.write(line)\n"
    )
    before = _rss_bytes()
    result = run_python(program + "\nprint('the end')\n", timeout=60.0)
    assert result.passed, result.output
    assert _rss_bytes() - before < 32 * 2**20
    assert len(result.output) <= sandbox._OUTPUT_CHARS and result.output.endswith("the end\n")


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        ("import os\nos.write(1, b'\\xff\\xfe half \\xe2\\x82')", "\ufffd\ufffd half \ufffd"),
        ("import os\nos.write(2, b'\\x80 on stderr')\nraise SystemExit(3)", "\ufffd on stderr"),
        ("for n in range(200_000):\n    print(n)", "199998\n199999\n"),
    ],
)
def test_output_of_any_bytes_and_length_is_returned(program, expected):
    result = run_python(program, timeout=20.0)
    assert expected in result.output and len(result.output) <= sandbox._OUTPUT_CHARS


def test_endless_output_is_cut_at_the_timeout():
    started = time.monotonic()
    result = run_python("while True:\n    print('again and again')\n", timeout=1.0)
    assert result.timed_out and time.monotonic() - started < 1.0 + sandbox._TEARDOWN_SECONDS + 2
    assert "again and again" in result.output and len(result.output) <= sandbox._OUTPUT_CHARS


# ---------------------------------------------------------------------------------------------------------------
# Where the sandbox cannot be built, the evaluation stops before any program runs.


@pytest.fixture
def fresh_check():
    sandbox._jail.cache_clear()
    yield
    sandbox._jail.cache_clear()


def test_without_bubblewrap_the_evaluation_stops(fresh_check, monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "_TOOL_DIRS", ())
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"`bwrap` \(Debian package bubblewrap\) is not installed.*apt-get"):
        sandbox.check_available()  # what an evaluation calls before it generates
    with pytest.raises(RuntimeError, match="bubblewrap"):
        run_python("print('ran unisolated')\n")


def test_a_kernel_that_refuses_namespaces_stops_the_evaluation(fresh_check, monkeypatch, tmp_path):
    refusing = tmp_path / "bwrap"
    refusing.write_text("#!/bin/sh\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n")
    refusing.chmod(0o755)
    monkeypatch.setattr(sandbox, "_TOOL_DIRS", (str(tmp_path), *sandbox._TOOL_DIRS))
    with pytest.raises(RuntimeError, match=r"No permissions to create a new namespace.*user namespaces"):
        run_python("print('ran unisolated')\n")


@kernel_block
def test_a_filter_that_fails_to_install_stops_the_evaluation(fresh_check, monkeypatch):
    monkeypatch.setattr(sandbox, "_FILTER", bytes(8))  # no return instruction: the kernel rejects it
    with pytest.raises(RuntimeError, match=r"PR_SET_SECCOMP\) reported EINVAL") as error:
        run_python("print('ran unfiltered')\n")
    assert "ran unfiltered" not in str(error.value)


# ---------------------------------------------------------------------------------------------------------------
# As an ordinary user (a cluster login) too.

ORDINARY_USER_SCRIPT = """\
import json, os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from onmerge.sandbox import run_python
bystander = subprocess.Popen(["sleep", "30"])
results = {
    "passes": run_python("assert 1 + 1 == 2").passed,
    "fails": run_python("assert 1 + 1 == 3").passed,
    "stops early": run_python("import os\\nos._exit(0)\\nassert False").passed,
    "kill -9 -1": run_python("import subprocess\\nsubprocess.run(['/bin/sh', '-c', 'kill -9 -1'])").passed,
    "reads the key": run_python("import os\\nprint(open('/proc/1/environ').read())").output,
    "forks": run_python("import os, time\\nn = 0\\ntry:\\n    while True:\\n        if os.fork() == 0:\\n"
                        "            time.sleep(10)\\n            os._exit(0)\\n        n += 1\\n"
                        "except OSError:\\n    print(n)\\n").output,
    "writes": run_python(f"import os\\nos.makedirs(os.path.dirname({sys.argv[2]!r}), exist_ok=True)\\n"
                         f"open({sys.argv[2]!r}, 'w')").passed,
    "uid": run_python("import os\\nprint(os.getuid())").output,
}
results["bystander alive"] = bystander.poll() is None
bystander.kill()
print(json.dumps(results))
"""


# setpriv starts the interpreter with root's capabilities still in effect: check what it can read once started.
CAN_READ = """\
import os, sys, sysconfig
for path in (os.path.realpath(sys.executable), sysconfig.get_paths()["stdlib"], sys.argv[1]):
    assert os.access(path, os.R_OK), path
"""


def _as_nobody(*command: str, **options) -> subprocess.CompletedProcess[str]:
    drop = [shutil.which("setpriv") or "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return subprocess.run([*drop, *command], capture_output=True, text=True, **options)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to become nobody")
def test_it_works_as_an_ordinary_user():
    """The evaluator itself runs as `nobody`: bwrap then builds the sandbox in an unprivileged user namespace."""
    src = REPO / "src"
    usable = [
        python
        for python in dict.fromkeys([os.path.realpath(sys.executable), "/usr/bin/python3"])
        if _as_nobody(python, "-c", CAN_READ, str(src / "onmerge")).returncode == 0
    ]
    if not usable:
        pytest.skip("no Python here that nobody can run with this checkout readable")
    escape = Path("/var/tmp") / f"onmerge-sandbox-escape-{secrets.token_hex(4)}"  # writable by nobody, outside
    environment = {"PATH": os.environ["PATH"], "OPENAI_API_KEY": SECRET_PREFIX + secrets.token_hex(8)}
    run = _as_nobody(usable[0], "-B", "-c", ORDINARY_USER_SCRIPT, str(src), str(escape), env=environment, timeout=120)
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    escaped = escape.exists()
    escape.unlink(missing_ok=True)
    assert results["passes"] and not results["fails"] and not results["stops early"]
    assert results["bystander alive"] and not results["writes"] and not escaped
    assert SECRET_PREFIX not in results["reads the key"] and "OPENAI" not in results["reads the key"]
    assert int(results["forks"]) < sandbox._PROCESSES
    assert results["uid"].strip() == "65534"


# ---------------------------------------------------------------------------------------------------------------
# The network block.


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

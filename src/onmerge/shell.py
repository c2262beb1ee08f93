"""The shell prologue of every workflow job, with every path quoted: a checkout under `/home/a b/$(x)` is a path."""

from __future__ import annotations

import shlex
from pathlib import Path

# glibc's malloc hands every freed block above its mmap threshold back to the OS and trims the heap's top above
# 128 KiB, so a training step's activations are page-faulted in again at every step: a 64-step toy training job took
# 2.2 million minor faults and 4.4 s of system time, against 0.6 million and 1.6 s with these (and 15% more peak
# memory). A value the user exported wins.
GLIBC_MALLOC = {"MALLOC_MMAP_THRESHOLD_": 256 << 20, "MALLOC_TRIM_THRESHOLD_": 512 << 20}


def job_prologue(interpreter_dir: Path | None, checkout: Path) -> str:
    """Strict mode; `python` from `interpreter_dir` when given (None: the job's conda env); this checkout's package
    first on PYTHONPATH; the FSDP launch config's path; the vLLM environment's interpreter (`ONMERGE_VLLM_PYTHON` if
    set, else the checkout's `.venv-vllm`, which `envs/setup-venv.sh --vllm` makes); glibc's malloc kept from
    returning memory that the next training step asks for again (GLIBC_MALLOC).

    Prepended to each job rather than passed as a param, so that moving the checkout reruns nothing.
    """
    path = f'export PATH={shlex.quote(str(interpreter_dir))}:"$PATH"; ' if interpreter_dir else ""
    package = shlex.quote(str(checkout / "src"))
    fsdp = shlex.quote(str(checkout / "workflow" / "accelerate" / "fsdp.yaml"))
    vllm_python = shlex.quote(str(checkout / ".venv-vllm" / "bin" / "python"))
    return (
        "set -euo pipefail; "
        + path
        + f'export PYTHONPATH={package}"${{PYTHONPATH:+:$PYTHONPATH}}"; '
        + f"export ONMERGE_FSDP_CONFIG={fsdp}; "
        + f'[ -n "${{ONMERGE_VLLM_PYTHON:-}}" ] || ONMERGE_VLLM_PYTHON={vllm_python}; export ONMERGE_VLLM_PYTHON; '
        + "".join(f'export {name}="${{{name}:-{value}}}"; ' for name, value in GLIBC_MALLOC.items())
    )

#!/usr/bin/env bash
# Create (or update) .venv with the project and its pinned dependencies.
# torch is installed first and pinned, so that no later requirement pulls another build: on CPU-only machines
# `torch==2.13.0` resolves to the local CPU wheel, on a GPU machine to PyPI's normal wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "error: $python is not Python 3.11 (set PYTHON=...)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install --quiet torch==2.13.0
.venv/bin/pip install --quiet -e ".[test,slurm]"  # slurm: tests/test_slurm_profile.py drives the executor plugin

# Model-written code runs only inside bubblewrap (src/onmerge/sandbox.py refuses to run it otherwise).
if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; } \
            || echo "warning: apt-get could not install bubblewrap; generated code will not run without it" >&2
    else
        echo "note: install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)" \
            "and allow unprivileged user namespaces: the sandbox for generated code needs both" >&2
    fi
fi

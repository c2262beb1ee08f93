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

#!/usr/bin/env bash
# Create (or update) .venv with the project and its pinned dependencies.
# torch is installed first and pinned, so that no later requirement pulls another build: on CPU-only machines
# `torch==2.13.0` resolves to the local CPU wheel, on a GPU machine to PyPI's normal wheel.
#
# With --vllm, create (or update) .venv-vllm instead, for a GPU node whose preset sets `evaluation.backend: vllm`: vLLM
# pins its own torch and transformers, so it gets an environment of its own, and .venv is left as it is. It holds the
# pins of envs/vllm.yaml (one list for conda and pip), then this package without its dependencies (.venv's pins would
# replace vLLM's).
set -euo pipefail
cd "$(dirname "$0")/.."

vllm_requirements() {  # the pip pins of envs/vllm.yaml, one a line
    sed -n 's/^ *- \([A-Za-z0-9_.-]*==[^ #]*\).*$/\1/p' envs/vllm.yaml
}

case "${1:-}" in
    "") venv=.venv ;;
    --vllm) venv=.venv-vllm ;;
    *) echo "usage: $0 [--vllm]" >&2; exit 2 ;;
esac
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "error: $python is not Python 3.11 (set PYTHON=...)" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
if [ "$venv" = .venv-vllm ]; then
    mapfile -t requirements < <(vllm_requirements)
    .venv-vllm/bin/pip install --quiet "${requirements[@]}"
    .venv-vllm/bin/pip install --quiet --no-deps -e .
else
    .venv/bin/pip install --quiet torch==2.13.0
    .venv/bin/pip install --quiet -e ".[test,slurm]"  # slurm: tests/test_slurm_profile.py drives the executor plugin
fi

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

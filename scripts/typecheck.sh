#!/usr/bin/env bash
# Type-check longdoc with mypy (settings in pyproject.toml: strict on every source folder).
# The source folders become longdoc.<name> only through pyproject's package-dir, which mypy
# cannot map; so it checks a temporary longdoc/ tree of links to them.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/longdoc"
for f in longdoc/*; do ln -s "$repo/$f" "$tree/longdoc/$(basename "$f")"; done
for d in pipeline agents retrieval prompts app; do ln -s "$repo/$d" "$tree/longdoc/$d"; done
cd "$tree"
"$repo/.venv/bin/python" -m mypy --config-file "$repo/pyproject.toml" \
    --cache-dir "$repo/.mypy_cache" -p longdoc.pipeline -p longdoc.agents \
    -p longdoc.retrieval -p longdoc.prompts -p longdoc.app "$@"

#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the review app's browser test (tests/test_app_browser.py).
# Idempotent: does nothing when both are on PATH. Needs root or sudo for apt-get.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "setup_browser: install Chromium and ChromeDriver (no apt-get here)" >&2
    exit 2
fi
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo)
echo "setup_browser: installing Debian's chromium and chromium-driver" >&2
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null

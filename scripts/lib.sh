# Sourced by setup.sh and setup_vllm.sh (after `set -euo pipefail` and a cd to the repo root):
# what makes them idempotent. A script stamps its venv with the hash of the files that define
# it; a rerun with the same hash and the venv's key executable in place does nothing.

# setup_start NAME VENV EXECUTABLE FILE...: exit 0 if VENV is stamped with FILEs' hash and
# EXECUTABLE exists; otherwise check $PYTHON (exit 2 if older than 3.11), create VENV if it
# does not exist and set PIP to its quiet pip.
setup_start() {
    SETUP_NAME="$1" SETUP_VENV="$2"
    local executable="$3"
    shift 3
    SETUP_WANT="$(cat "$@" | sha256sum | cut -d' ' -f1)"
    local stamp="$SETUP_VENV/.longdoc-setup"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$SETUP_WANT" ] && [ -x "$executable" ]; then
        echo "$SETUP_NAME: $SETUP_VENV is up to date" >&2
        exit 0
    fi
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "$SETUP_NAME: needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
        exit 2
    fi
    [ -x "$SETUP_VENV/bin/python" ] || "$PYTHON" -m venv "$SETUP_VENV"
    PIP=("$SETUP_VENV/bin/python" -m pip --disable-pip-version-check -q)
}

# setup_done: stamp the venv of setup_start as built (a rerun then does nothing).
setup_done() {
    echo "$SETUP_WANT" > "$SETUP_VENV/.longdoc-setup"
    echo "$SETUP_NAME: done" >&2
}

"""The ``streamlit run`` command that serves the review app."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from longdoc.pipeline.errors import InputError, LongdocError

APP_SCRIPT = Path(__file__).with_name("review.py")
TOKEN_VARIABLE = "LONGDOC_APP_TOKEN"
LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")


def app_token() -> str | None:
    """The access token the app asks for (``longdoc app --token``), if any."""
    return os.environ.get(TOKEN_VARIABLE) or None


def check_exposure(address: str, token: str | None) -> None:
    """InputError if the app would listen beyond this machine without a token: Streamlit
    has no authentication, and the page runs models on the server's documents."""
    if address not in LOCAL_ADDRESSES and not token:
        raise InputError(f"--address {address} lets other machines reach the app: give "
                         f"--token (or {TOKEN_VARIABLE}) so the page asks for it")


def streamlit_command(
    documents: Sequence[Path] = (),
    *,
    port: int | None = None,
    address: str = "127.0.0.1",
    browser: bool = True,
) -> list[str]:
    """``python -m streamlit run review.py ...`` with usage statistics (and the cloud
    deploy button) off; ``documents`` are preselected in the app. Raises if Streamlit is
    missing or a document is."""
    if importlib.util.find_spec("streamlit") is None:
        raise LongdocError("the review app needs Streamlit: pip install 'longdoc[app]'")
    for path in documents:
        if not path.is_file():
            raise InputError(f"{path.name or path}: file not found ({path})")
    command = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
               "--server.address", address,
               "--server.headless", "false" if browser else "true"]
    if port is not None:
        command += ["--server.port", str(port)]
    if documents:
        command += ["--", *(str(p.resolve()) for p in documents)]
    return command


def documents_from_argv(argv: Sequence[str]) -> list[Path]:
    """The documents ``streamlit_command`` passed to the script (none when the script runs
    some other way, e.g. under a test runner whose arguments are not documents)."""
    if not argv or Path(argv[0]).resolve() != APP_SCRIPT.resolve():
        return []
    return [Path(a) for a in argv[1:]]

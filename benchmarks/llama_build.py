"""Prompt and generation speed of llama.cpp builds, on the embedded model, one after another.

Each build is the python of a venv with llama-cpp-python installed; its embedded server is
started as longdoc starts it and timed with the doctor's measurement (distinct prompts, so
no prompt cache helps). A build that crashes is reported with its signal.

    .venv/bin/python -m benchmarks.llama_build portable=.venv/bin/python \
        native=/tmp/builds/native/bin/python native-no-amx=/tmp/builds/native-noamx/bin/python
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from longdoc.pipeline.backends import EmbeddedServer
from longdoc.pipeline.doctor import cpu_check, measure_speed
from longdoc.pipeline.errors import LongdocError
from longdoc.pipeline.settings import Settings


class BuildServer(EmbeddedServer):
    """The embedded server, run by another venv's python."""

    name = "bench"

    def __init__(self, settings: Settings, python: str):
        super().__init__(settings)
        self.python = python

    def command(self) -> list[str]:
        command = super().command()
        return [self.python, *command[1:]]


def measure(label: str, python: str, repeats: int) -> str:
    """One Markdown table row for the build at ``python``."""
    settings = Settings(cache_dir=Path(tempfile.mkdtemp(prefix="llama-build-")))
    server = BuildServer(settings, python)
    try:
        endpoint = server.start()
        speed = measure_speed(endpoint, prompt_words=600, generate=64, repeats=repeats)
    except (LongdocError, OSError, ValueError) as exc:
        reason = server.exit_reason() or str(exc)
        return f"| {label} | — | — | {reason} |"
    except Exception as exc:  # a crash mid-request reads as an HTTP error
        reason = server.exit_reason() or f"{type(exc).__name__}: {exc}"
        return f"| {label} | — | — | {reason} |"
    finally:
        server.stop()
    return (f"| {label} | {speed.prompt_tokens_per_s:g} | {speed.generated_tokens_per_s:g} | "
            f"{speed.prompt_tokens} prompt / {speed.generated_tokens} generated tokens |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs="+", help="LABEL=PYTHON of a venv with llama-cpp-python")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(cpu_check().detail)
    print("| build | prompt tokens/s | generated tokens/s | notes |")
    print("|---|---|---|---|")
    for item in args.builds:
        label, _, python = item.partition("=")
        print(measure(label, python, args.repeats), flush=True)


if __name__ == "__main__":
    main()

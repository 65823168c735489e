"""The ``longdoc`` command line. Exit codes: 0 ok, 2 bad input, 3 model backend failure."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from longdoc.pipeline.errors import LongdocError
from longdoc.pipeline.settings import Backend, load_settings

app = typer.Typer(
    help="Answer questions about documents far longer than a model's context window.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)  # never hard-wrap quotes in piped output
err = Console(stderr=True)

PathsArg = Annotated[list[Path], typer.Argument(help="PDF, .txt or .md files", show_default=False)]
BackendOpt = Annotated[Backend | None, typer.Option(help="embedded, vllm or openai")]
PasswordOpt = Annotated[str | None, typer.Option(help="Password of encrypted PDFs")]


def _fail(error: LongdocError) -> None:
    err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(error.exit_code)


@app.command()
def ask(
    paths: PathsArg,
    question: Annotated[str, typer.Option("--question", "-q", help="The question to answer")],
    strategy: Annotated[str | None, typer.Option(help="Strategy, e.g. direct")] = None,
    backend: BackendOpt = None,
    password: PasswordOpt = None,
    truncate: Annotated[
        bool | None, typer.Option("--truncate", help="direct: cut what does not fit")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON")] = False,
    trace: Annotated[bool, typer.Option("--trace", help="Include the trace in --json")] = False,
) -> None:
    """Answer a question about the documents, with verified citations."""
    from longdoc.pipeline.api import Pipeline

    try:
        settings = load_settings(backend=backend, truncate=truncate)
        with Pipeline(settings) as pipeline:
            result = pipeline.ask(paths, question, strategy=strategy, password=password)
    except LongdocError as error:
        _fail(error)
    if as_json:
        exclude = None if trace else {"trace"}
        print(result.model_dump_json(exclude=exclude))
        return
    out.print(f"[bold]Answer[/bold] ({result.strategy}): {escape(result.answer)}")
    for i, c in enumerate(result.citations, 1):
        page = f", page {c.page}" if c.page else ""
        quote = " ".join(c.quote.split())
        out.print(f"[cyan][{i}][/cyan] {escape(c.source)}{page}, chars {c.start}-{c.end}: "
                  f"[italic]\"{escape(quote)}\"[/italic]")
    if not result.citations:
        out.print("[yellow]No verified citation.[/yellow]")
    u = result.usage
    out.print(
        f"[dim]{u.llm_calls} LLM call(s), {u.prompt_tokens} prompt + {u.completion_tokens} "
        f"completion tokens, {u.cache_hits} cache hit(s), {result.elapsed_s:.1f}s; "
        f"{result.dropped_quotes} unverifiable quote(s) dropped[/dim]"
    )


@app.command()
def extract(
    paths: PathsArg,
    password: PasswordOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Pages with start/end offsets")] = False,
) -> None:
    """Print the text longdoc extracts; citation offsets index this text."""
    from longdoc.pipeline.ingest import load_document

    try:
        settings = load_settings()
        docs = [
            load_document(p, password=password, max_file_mb=settings.max_file_mb,
                          max_pages=settings.max_pages)
            for p in paths
        ]
    except LongdocError as error:
        _fail(error)
    if as_json:
        payload: list[dict[str, Any]] = [
            {"source": d.source, "sha256": d.sha256, "metadata": d.metadata, "text": d.text,
             "pages": [p.model_dump() for p in d.pages]}
            for d in docs
        ]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, ensure_ascii=False))
        return
    for doc in docs:
        sys.stdout.write(doc.text)
        if len(docs) > 1:
            sys.stdout.write("\n")


@app.command()
def config() -> None:
    """Print the effective settings (defaults < longdoc.toml < LONGDOC_* environment)."""
    try:
        settings = load_settings()
    except LongdocError as error:
        _fail(error)
    print(settings.model_dump_json(indent=2))


@app.command()
def serve(backend: BackendOpt = None) -> None:
    """Keep a model server running so several commands can share it (Ctrl-C stops it)."""
    from longdoc.pipeline.backends import Backend as ModelBackend

    try:
        settings = load_settings(backend=backend)
        server = ModelBackend(settings)
        endpoint = server.start()
    except LongdocError as error:
        _fail(error)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    out.print(f"serving {endpoint.model} at {endpoint.base_url} (window {endpoint.context_window})")
    out.print(
        f"use it from other shells: LONGDOC_BACKEND=openai LONGDOC_BASE_URL={endpoint.base_url} "
        f"LONGDOC_MODEL={endpoint.model} LONGDOC_CONTEXT_WINDOW={endpoint.context_window}"
    )
    try:
        while server.server is None or server.server.process.poll() is None:  # type: ignore[union-attr]
            time.sleep(1)
        err.print("[red]error:[/red] the model server exited")
        raise typer.Exit(3)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def main() -> None:
    """Entry point of the ``longdoc`` script.

    Expected failures exit 2 or 3 from the commands. Ctrl-C exits 130 (servers are
    stopped by their context managers); an unexpected error prints one line and where
    to find the traceback (``LONGDOC_DEBUG=1``) instead of a bare traceback.
    """
    try:
        app(standalone_mode=True)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("LONGDOC_DEBUG"):
            raise
        err.print(f"[red]internal error:[/red] {escape(type(exc).__name__)}: {escape(str(exc))} "
                  "(rerun with LONGDOC_DEBUG=1 for the traceback; please report it)",
                  highlight=False, soft_wrap=True)
        sys.exit(1)

"""The ``longdoc`` command line. Exit codes: 0 ok, 2 bad input, 3 model backend failure."""

from __future__ import annotations

import inspect
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from longdoc.pipeline.errors import InputError, LongdocError
from longdoc.pipeline.models import DEFAULT_SUMMARY_WORDS, DEFAULT_WRITE_WORDS
from longdoc.pipeline.settings import Backend, load_settings

if TYPE_CHECKING:
    from longdoc.pipeline.api import Pipeline
    from longdoc.pipeline.models import Answer

app = typer.Typer(
    help="Answer questions about (and summarize) documents far longer than a model's "
    "context window.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)  # never hard-wrap quotes in piped output
err = Console(stderr=True)

PathsArg = Annotated[list[Path], typer.Argument(help="PDF, .txt or .md files", show_default=False)]
BackendOpt = Annotated[Backend | None, typer.Option(help="embedded, vllm or openai")]
PasswordOpt = Annotated[str | None, typer.Option(
    envvar="LONGDOC_PDF_PASSWORD", show_envvar=True,
    help="Password of encrypted PDFs (visible to other users in ps: prefer "
    "LONGDOC_PDF_PASSWORD or --password-stdin)")]
PasswordStdinOpt = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the PDF password from stdin (a prompt on a terminal)")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="Settings file to read (as LONGDOC_CONFIG); a longdoc.toml in the "
    "current folder is read only when named or trusted (longdoc config --trust)",
    show_default=False)]


def _password(password: str | None, from_stdin: bool) -> str | None:
    """The PDF password: ``--password``/LONGDOC_PDF_PASSWORD, or one line of stdin."""
    if not from_stdin:
        return password
    if password is not None:
        raise InputError("give the password with --password or --password-stdin, not both")
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("PDF password: ")
    line = sys.stdin.readline()
    if not line:
        raise InputError("--password-stdin: nothing on stdin")
    return line.rstrip("\r\n")


@app.callback()
def _main_options(config: ConfigOpt = None) -> None:
    """Answer questions about (and summarize) documents far longer than a model's context
    window."""
    if config is not None:
        if not config.is_file():
            err.print(f"[red]error:[/red] --config {escape(str(config))}: file not found",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        os.environ["LONGDOC_CONFIG"] = str(config)


def _fail(error: LongdocError) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(error.exit_code)


def _checked(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, a LongdocError reported as a one-line failure."""
    try:
        return function(*args)
    except LongdocError as error:
        _fail(error)


StrategyOpt = Annotated[str | None, typer.Option(help="Strategy, e.g. direct or mapreduce")]
TruncateOpt = Annotated[
    bool | None, typer.Option("--truncate", help="direct: cut what does not fit")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]
TraceOpt = Annotated[bool, typer.Option("--trace", help="Include the trace in --json")]
RunIdOpt = Annotated[
    str | None,
    typer.Option("--run-id", help="Checkpoint every step under this id; rerun to resume"),
]


def _run(request: Callable[[Pipeline], Any], **setting_flags: Any) -> Any:
    """Run one request on a pipeline built from the settings and the command's flags."""
    from longdoc.pipeline.api import Pipeline

    try:
        settings = load_settings(**setting_flags)
        with Pipeline(settings) as pipeline:
            return request(pipeline)
    except LongdocError as error:
        _fail(error)


def _print_answer(result: Answer, label: str, as_json: bool, trace: bool) -> None:
    """``--json``: one JSON line. Otherwise the text, then one line per citation.

    Citations that support a paragraph (summaries) are numbered after that paragraph.
    """
    if as_json:
        print(result.model_dump_json(exclude=None if trace else {"trace"}))
        return
    numbers = {id(c): i for i, c in enumerate(result.citations, 1)}
    strategy = result.strategy
    if result.route:
        strategy += f" → {result.route['chosen']}"
    if any(c.paragraph for c in result.citations):
        out.print(f"[bold]{label}[/bold] ({strategy}):")
        for n, paragraph in enumerate(result.answer.split("\n\n"), 1):
            marks = "".join(f"[{numbers[id(c)]}]" for c in result.citations if c.paragraph == n)
            out.print(escape(paragraph) + (f" [cyan]{escape(marks)}[/cyan]" if marks else ""))
            out.print()
    else:
        out.print(f"[bold]{label}[/bold] ({strategy}): {escape(result.answer)}")
    if result.route:
        out.print(f"[dim]auto: {escape(result.route['reason'])}[/dim]")
    if result.coverage and result.route:
        out.print(f"[dim]{escape(result.coverage.summary())}[/dim]")
    for c in result.citations:
        page = f", page {c.page}" if c.page else ""
        quote = " ".join(c.quote.split())
        out.print(f"[cyan]{escape(f'[{numbers[id(c)]}]')}[/cyan] {escape(c.source)}{page}, chars "
                  f"{c.start}-{c.end}: [italic]\"{escape(quote)}\"[/italic]")
    if not result.citations:
        out.print("[yellow]No verified citation.[/yellow]")
    if not result.supported:
        out.print("[yellow]Unsupported: no citation in the source supports this "
                  "answer.[/yellow]")
    u = result.usage
    out.print(
        f"[dim]{u.llm_calls} LLM call(s), {u.prompt_tokens} prompt + {u.completion_tokens} "
        f"completion tokens, {u.cache_hits} cache hit(s), {result.elapsed_s:.1f}s; "
        f"{result.dropped_quotes} unverifiable quote(s) dropped, "
        f"{result.unsupported_citations} not supporting the answer[/dim]"
    )


@app.command()
def ask(
    paths: PathsArg,
    question: Annotated[str, typer.Option("--question", "-q", help="The question to answer")],
    strategy: StrategyOpt = None,
    backend: BackendOpt = None,
    password: PasswordOpt = None,
    password_stdin: PasswordStdinOpt = False,
    truncate: TruncateOpt = None,
    retrieve: Annotated[
        int | None,
        typer.Option("--retrieve", min=1,
                     help="mapreduce/chain/memory: read only the top-K retrieved chunks"),
    ] = None,
    max_chunks: Annotated[int | None, typer.Option(
        "--max-chunks", min=1, help="auto: read at most N chunks (default 45)")] = None,
    max_calls: Annotated[int | None, typer.Option(
        "--max-calls", min=5, help="auto: widen no further once the run made N LLM calls")] = None,
    time_budget: Annotated[float | None, typer.Option(
        "--time-budget", min=0.001, help="auto: seconds of reading before it stops widening")
    ] = None,
    as_json: JsonOpt = False,
    trace: TraceOpt = False,
    run_id: RunIdOpt = None,
) -> None:
    """Answer a question about the documents, with verified citations."""
    password = _checked(_password, password, password_stdin)
    result = _run(lambda p: p.ask(paths, question, strategy=strategy, password=password,
                                  run_id=run_id),
                  backend=backend, truncate=truncate, retrieve_k=retrieve,
                  max_chunks=max_chunks, max_calls=max_calls, time_budget_s=time_budget)
    _print_answer(result, "Answer", as_json, trace)


@app.command()
def summarize(
    paths: PathsArg,
    words: Annotated[int, typer.Option(help="About how many words the summary has")] = \
        DEFAULT_SUMMARY_WORDS,
    strategy: Annotated[
        str | None, typer.Option(help="Strategy (default mapreduce; direct to compare)")
    ] = None,
    backend: BackendOpt = None,
    password: PasswordOpt = None,
    password_stdin: PasswordStdinOpt = False,
    truncate: TruncateOpt = None,
    as_json: JsonOpt = False,
    trace: TraceOpt = False,
    run_id: RunIdOpt = None,
) -> None:
    """Summarize the documents in about N words, each paragraph with verified citations."""
    password = _checked(_password, password, password_stdin)
    result = _run(lambda p: p.summarize(paths, words=words, strategy=strategy,
                                        password=password, run_id=run_id),
                  backend=backend, truncate=truncate)
    _print_answer(result, "Summary", as_json, trace)


class _StageProgress:
    """``write``'s progress on stderr: one bar per stage (digest, plan, sections ...) and
    the tokens so far; started by the first report, so bad input prints only its error."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar: Any = None
        self.task: Any = None
        self.stage: str | None = None

    def __call__(self, stage: str, total: int | None, advance: int, tokens: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from rich.progress import TextColumn

            from longdoc.pipeline.runs import progress_bar

            self.bar = progress_bar(err, TextColumn("{task.fields[tokens]:,} tok"),
                                    disable=False)
            self.bar.start()
        if stage != self.stage:
            if self.task is not None:
                self.bar.update(self.task, completed=self.bar.tasks[-1].total)
            self.task = self.bar.add_task(stage, total=total, tokens=tokens)
            self.stage = stage
        self.bar.update(self.task, advance=advance, tokens=tokens)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print_article(article: Any, out_file: Path | None) -> None:
    """The Markdown (to ``out_file``, or stdout), then what the checks did, per section."""
    c = article.counts
    lines = [f"{c.words} words for a target of {c.target_words} "
             f"({(c.words - c.target_words) / c.target_words:+.1%}) in {c.sections} "
             f"section(s) (plan: {c.plan_origin}, {c.revisions_accepted} revision(s) "
             "accepted):"]
    lines += [f"  {s.title}: {s.words} / {s.target_words}" for s in article.sections]
    lines.append(
        f"{c.citations} citation(s) from {c.sources_cited} of {c.sources} source(s); "
        f"{c.citations_unsupported} unsupported citation(s) dropped, {c.citations_invalid} "
        f"marker(s) naming no evidence, {c.citations_located} citation(s) found in code; "
        f"{c.sentences_rewritten} sentence(s) with untraceable figures rewritten "
        f"({c.rewrites_kept} kept), {c.sentences_removed} removed; {c.conflicts} "
        f"conflict(s) stated; {c.sentences_from_evidence} evidence sentence(s) added, "
        f"{c.sentences_trimmed} trimmed; left: {c.unsupported_left} unsupported, "
        f"{c.untraced_left} untraced")
    u = article.usage
    lines.append(f"{u.llm_calls} LLM call(s), {u.prompt_tokens} prompt + "
                 f"{u.completion_tokens} completion tokens, {u.cache_hits} cache hit(s), "
                 f"{article.elapsed_s:.1f}s")
    if out_file is None:
        sys.stdout.write(article.answer)
        for line in lines:
            err.print(escape(line), highlight=False, soft_wrap=True)
        return
    out.print(f"article written to {escape(str(out_file))}", highlight=False)
    for line in lines:
        out.print(escape(line), highlight=False)


@app.command()
def write(
    paths: PathsArg,
    topic: Annotated[str, typer.Option("--topic", "-t", help="What the article is about")],
    words: Annotated[int, typer.Option(help="About how many words the article has")] = \
        DEFAULT_WRITE_WORDS,
    out_file: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the Markdown here (default: stdout)")] = None,
    backend: BackendOpt = None,
    password: PasswordOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print sections, paragraphs, citations and counts as JSON")] = False,
    trace: TraceOpt = False,
    run_id: RunIdOpt = None,
) -> None:
    """Write a planned article on a topic from the documents: Markdown with headings,
    inline citations checked against the sources, every figure traceable."""
    password = _checked(_password, password, password_stdin)
    if out_file is not None and out_file.is_dir():
        _fail(InputError(f"--out {out_file} is a folder; give a .md file"))
    progress = _StageProgress(enabled=not as_json)
    try:
        article = _run(lambda p: p.write(paths, topic, words=words, password=password,
                                         run_id=run_id, progress=progress), backend=backend)
    finally:
        progress.close()
    if out_file is not None:
        try:
            out_file.write_text(article.answer, encoding="utf-8")
        except OSError as exc:
            _fail(InputError(f"cannot write {out_file}: {exc.strerror or exc}"))
    if as_json:
        print(article.model_dump_json(exclude=None if trace else {"trace"}))
    else:
        _print_article(article, out_file)


@app.command()
def extract(
    paths: PathsArg,
    password: PasswordOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Pages with start/end offsets")] = False,
) -> None:
    """Print the text longdoc extracts; citation offsets index this text."""
    from longdoc.pipeline.ingest import load_document

    try:
        password = _password(password, password_stdin)
        budget = load_settings().budget
        docs = [load_document(p, password=password, budget=budget) for p in paths]
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
def config(
    trust: Annotated[bool, typer.Option(
        "--trust", help="Trust ./longdoc.toml as it is now (a later change untrusts it)")] = False,
    describe: Annotated[bool, typer.Option(
        "--describe", help="One line per setting: its path, variable, value and meaning")
    ] = False,
) -> None:
    """Print the effective settings tree as JSON (defaults < longdoc.toml < LONGDOC_*
    environment); API keys are masked."""
    from longdoc.pipeline.settings import DEFAULT_CONFIG_FILE
    from longdoc.pipeline.settings import trust as trust_file

    try:
        if trust:
            digest = trust_file(Path(DEFAULT_CONFIG_FILE))
            err.print(f"trusted ./{DEFAULT_CONFIG_FILE} (sha256 {digest[:12]}…)",
                      highlight=False)
        settings = load_settings()
    except LongdocError as error:
        _fail(error)
    if describe:
        for path, variable, value, description in settings.describe():
            print(f"{path} = {value}  ({variable}): {description}")
        return
    print(settings.model_dump_json(indent=2))


@app.command()
def doctor(
    backend: BackendOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list of the checks")] = False,
) -> None:
    """Check this machine, the install and the backend (starts it and times a completion).
    Exit 0 only if the backend answers."""
    from longdoc.pipeline.doctor import run_checks

    try:
        checks = run_checks(load_settings(backend=backend))
    except LongdocError as error:
        _fail(error)
    if as_json:
        print(json.dumps([c.model_dump() for c in checks]))
    else:
        for check in checks:
            mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
            out.print(f"{mark} [bold]{escape(check.name)}[/bold]: {escape(check.detail)}",
                      highlight=False)
    raise typer.Exit(0 if all(c.ok for c in checks) else 3)


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
    # Ctrl-C stops serve even when it was started with SIGINT ignored (a background job of
    # a non-interactive shell inherits that, and Python then never raises KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:  # from here on, Ctrl-C or SIGTERM at any moment stops the server
        out.print(f"serving {endpoint.model} at {endpoint.base_url} "
                  f"(window {endpoint.context_window})")
        out.print(
            f"use it from other shells: LONGDOC_BACKEND=openai LONGDOC_BASE_URL="
            f"{endpoint.base_url} LONGDOC_MODEL={endpoint.model} "
            f"LONGDOC_CONTEXT_WINDOW={endpoint.context_window}"
        )
        while server.server is None or server.server.process.poll() is None:  # type: ignore[union-attr]
            time.sleep(1)
        err.print(f"[red]error:[/red] {escape(server.exit_reason() or 'the model server exited')}",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(3)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@app.command(name="app")
def review_app(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Documents to preselect (default: the bundled sample)", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: Streamlit's, 8501)")] = None,
    address: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    browser: Annotated[bool, typer.Option(help="Open the app in a browser tab")] = True,
    token: Annotated[str | None, typer.Option(
        envvar="LONGDOC_APP_TOKEN", show_envvar=True,
        help="Access token the page asks for (required to listen beyond localhost)")] = None,
) -> None:
    """Start the review app (Streamlit): answers with highlighted citations, traces,
    strategies side by side and reviewer verdicts. Needs the app extra."""
    from longdoc.app.launch import TOKEN_VARIABLE, check_exposure, streamlit_command

    try:
        check_exposure(address, token)
        command = streamlit_command(paths or [], port=port, address=address, browser=browser)
    except LongdocError as error:
        _fail(error)
    if token:  # to the app through its environment, not its command line (ps shows that)
        os.environ[TOKEN_VARIABLE] = token
    os.execv(command[0], command)


batch_app = typer.Typer(
    help="Run one task over many documents; one JSON line per document, a rerun resumes. "
    "Exit codes: 0 all done, 1 some failed (rerun retries them), 2 bad usage, 3 backend down.",
    no_args_is_help=True,
)
app.add_typer(batch_app, name="batch")
InputsArg = Annotated[list[Path], typer.Argument(
    help='Files, folders (searched for .pdf/.txt/.md) or JSONL files of {"id", "input"} lines',
    show_default=False)]
OutOpt = Annotated[Path, typer.Option(
    "--out", "-o", help="Results JSONL; documents already done there are skipped")]
JobsOpt = Annotated[int | None, typer.Option(
    "--jobs", "-j", min=1, help="Documents in flight (default 4; --ray: the cluster's CPUs)")]
RayOpt = Annotated[bool, typer.Option("--ray", help="Run documents as Ray tasks (ray extra)")]
QuietJsonOpt = Annotated[bool, typer.Option("--json", help="No progress; a JSON summary line")]


def _batch(as_json: bool, backend: Backend | None, **request: Any) -> None:
    """Run a batch with the settings and ``backend``; print its summary; exit 1 on failures."""
    from longdoc.pipeline.batch import run_batch

    try:
        request["password"] = _password(request["password"], request.pop("password_stdin"))
        summary = run_batch(settings=load_settings(backend=backend), progress=not as_json,
                            console=err, **request)
    except LongdocError as error:
        _fail(error)
    if as_json:
        print(summary.model_dump_json())
    else:
        out.print(summary.line(), highlight=False)
    raise typer.Exit(summary.exit_code)


def _batch_options(
    inputs: InputsArg,
    output: OutOpt,
    jobs: JobsOpt = None,
    use_ray: RayOpt = False,
    backend: BackendOpt = None,
    password: PasswordOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: QuietJsonOpt = False,
) -> None:
    """The arguments and options every ``batch`` command has (a signature, never called)."""


def _batch_command(name: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., None]]:
    """Register ``batch <name>`` from a function of the command's own options that returns
    its part of the request: the command takes the inputs and ``--out``, then those options,
    then the ones every batch command has, and runs the batch."""

    def register(own: Callable[..., dict[str, Any]]) -> Callable[..., None]:
        shared = list(inspect.signature(_batch_options, eval_str=True).parameters.values())
        mine = list(inspect.signature(own, eval_str=True).parameters.values())

        def command(**values: Any) -> None:
            request = own(**{p.name: values.pop(p.name) for p in mine})
            _batch(values.pop("as_json"), values.pop("backend"), **values, **request)

        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
             for p in (*shared[:2], *mine, *shared[2:])])
        command.__doc__ = own.__doc__
        return batch_app.command(name=name)(command)

    return register


@_batch_command("summarize")
def batch_summarize(
    words: Annotated[int, typer.Option(help="About how many words each summary has")] = \
        DEFAULT_SUMMARY_WORDS,
    strategy: Annotated[str | None, typer.Option(help="Strategy (default mapreduce)")] = None,
) -> dict[str, Any]:
    """Summarize every document, each summary with verified citations."""
    return {"task": "summary", "words": words, "strategy": strategy}


@_batch_command("ask")
def batch_ask(
    question: Annotated[str, typer.Option("--question", "-q", help="The question to answer")],
    strategy: StrategyOpt = None,
) -> dict[str, Any]:
    """Ask the same question about every document, each answer with verified citations."""
    return {"task": "qa", "question": question, "strategy": strategy}


@_batch_command("write")
def batch_write(
    topic: Annotated[str, typer.Option("--topic", "-t", help="What each article is about")],
    words: Annotated[int, typer.Option(help="About how many words each article has")] = \
        DEFAULT_WRITE_WORDS,
) -> dict[str, Any]:
    """Write an article on the topic from every document, each with verified citations."""
    return {"task": "write", "question": topic, "words": words}


def _csv(value: str, name: str, parse: Callable[[str], Any] = str) -> list[Any]:
    """Comma-separated values of option ``name``; InputError for a bad one."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    try:
        return [parse(v) for v in items]
    except ValueError as exc:
        raise InputError(f"--{name}: cannot read {value!r} ({exc})") from exc


@app.command(name="eval")
def eval_(
    tasks: Annotated[str, typer.Option(
        help="Comma-separated: single_needle, multi_key, multi_value, two_hop, distractor, "
             "conflict, qa, summary")] = "single_needle,multi_key,multi_value,two_hop,distractor",
    conflict_split: Annotated[str, typer.Option(
        help="conflict tasks: phrasings of the 'dev' half (tune on these) or 'heldout' (report "
             "on these)")] = "dev",
    conflict_kinds: Annotated[str, typer.Option(
        help="conflict tasks: comma-separated kinds of unreliable statement")] =
        "hedged,unconfirmed,superseded,sibling",
    strategies: Annotated[str, typer.Option(help="Comma-separated strategies")] =
        "direct,rag,mapreduce,chain,memory,auto",
    lengths: Annotated[str, typer.Option(help="Document lengths in tokens, e.g. 4k,32k,128k")] =
        "4k,8k,16k",
    depths: Annotated[str, typer.Option(help="Needle depths in 0-1")] = "0.1,0.5,0.9",
    samples: Annotated[int, typer.Option(help="Samples per (task, length, depth)")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the task generator")] = 0,
    data: Annotated[Path | None, typer.Option(
        help="Folder of .txt/.md/.pdf haystack text (default ../shared/data)")] = None,
    glob: Annotated[list[str] | None, typer.Option(
        help="Haystack files under --data (repeatable; default every supported file)")] = None,
    reference: Annotated[list[Path] | None, typer.Option(
        help="JSONL of {input, instructions, outputs} for qa/summary (default: under --data)"),
    ] = None,
    results: Annotated[Path, typer.Option(help="Results JSONL; runs already there are skipped")]
        = Path("longdoc-eval/results.jsonl"),
    report_dir: Annotated[Path | None, typer.Option(
        help="Where report.md/.html and the PNGs go (default: beside --results)")] = None,
    report_only: Annotated[bool, typer.Option(
        "--report-only", help="Only write the report from --results")] = False,
    backend: BackendOpt = None,
    cache: Annotated[bool, typer.Option(help="Reuse cached responses (off: every run calls "
                                             "the model)")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Run generated tasks with each strategy, append scored results, write a report."""
    from longdoc.pipeline.evaluation import read_results, run_eval, write_report
    from longdoc.pipeline.evaluation.tasks import DEFAULT_DATA, parse_length

    try:
        if report_only:
            found = read_results(results)
            if not found:
                raise InputError(f"no results in {results}")
            report = write_report(found, report_dir or results.parent, source=str(results))
            out.print(f"report: {report.markdown} ({len(report.images)} plot(s))")
            return
        run = run_eval(
            tasks=_csv(tasks, "tasks"), strategies=_csv(strategies, "strategies"),
            lengths=_csv(lengths, "lengths", parse_length), depths=_csv(depths, "depths", float),
            samples=samples, seed=seed, data=data or DEFAULT_DATA, globs=glob,
            reference=reference, conflict_split=conflict_split,  # type: ignore[arg-type]
            conflict_kinds=_csv(conflict_kinds, "conflict-kinds"), results=results,
            report_dir=report_dir,
            settings=load_settings(backend=backend, use_cache=cache), progress=progress,
        )
    except LongdocError as error:
        _fail(error)
    counts = {s: sum(r.status == s for r in run.new) for s in ("ok", "refused", "error")}
    out.print(f"{run.tasks} task(s); {len(run.new)} new run(s) ({counts['ok']} answered, "
              f"{counts['refused']} refused, {counts['error']} failed), "
              f"{len(run.results)} in {results}")
    if run.report:
        out.print(f"report: {run.report.markdown} and {run.report.html.name} "
                  f"({len(run.report.images)} plot(s))")


def _is_a(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` is click's ``name`` exception (typer vendors click: match by name)."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def _usage_failure(error: Any) -> NoReturn:
    """One line for a bad command line (and where to look), instead of click's box."""
    ctx = getattr(error, "ctx", None)
    if _is_a(error, "NoArgsIsHelpError") and ctx is not None:  # bare `longdoc batch`
        print(ctx.get_help())
        sys.exit(0)
    hint = f" (see {ctx.command_path} --help)" if ctx is not None and _is_a(
        error, "UsageError") else ""
    err.print(f"[red]error:[/red] {escape(error.format_message())}{escape(hint)}",
              highlight=False, soft_wrap=True)
    sys.exit(error.exit_code)


def main() -> None:
    """Entry point of the ``longdoc`` script.

    Expected failures exit 2 or 3 from the commands. Ctrl-C exits 130 (servers are
    stopped by their context managers); an unexpected error prints one line and where
    to find the traceback (``LONGDOC_DEBUG=1``) instead of a bare traceback.
    """
    try:
        code = app(standalone_mode=False, prog_name="longdoc")
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if _is_a(exc, "ClickException"):
            _usage_failure(exc)
        if os.environ.get("LONGDOC_DEBUG"):
            raise
        err.print(f"[red]internal error:[/red] {escape(type(exc).__name__)}: {escape(str(exc))} "
                  "(rerun with LONGDOC_DEBUG=1 for the traceback; please report it)",
                  highlight=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)

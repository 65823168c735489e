"""Batch jobs: one task (a summary, or the same question) over many documents.

Inputs are files, folders (searched recursively for .pdf/.txt/.md) and JSONL files whose
lines hold ``{"id": ..., "input": <document text>}`` (``id`` optional: the line number
then). Each document's result is appended to the output JSONL as soon as it finishes
(flushed and synced), so a killed job loses nothing finished. A rerun with the same
output skips the documents whose (id, content hash, request) already has an ``ok`` line
and retries the failed ones; one bad document never stops the batch.

Documents run K at a time in one process, sharing the pipeline's limit on LLM requests in
flight, or as Ray tasks (``use_ray``) against the one endpoint the driver starts (or is
configured with); either way only the driver writes the output.

>>> from longdoc.pipeline.batch import run_batch                   # doctest: +SKIP
>>> summary = run_batch(["reports/"], "summaries.jsonl", words=200, jobs=4)
>>> summary.ok, summary.failed
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, TextColumn

from longdoc.agents import DEFAULT_STRATEGY
from longdoc.pipeline.api import (
    BackendStreak,
    FailureKind,
    Outcome,
    Pipeline,
    answer_config,
    check_request,
)
from longdoc.pipeline.backends import endpoint_settings
from longdoc.pipeline.errors import InputError
from longdoc.pipeline.ingest import SUPPORTED_SUFFIXES, text_document
from longdoc.pipeline.llm import Endpoint
from longdoc.pipeline.models import (
    DEFAULT_SUMMARY_WORDS,
    Citation,
    Document,
    Task,
    Usage,
    text_sha256,
)
from longdoc.pipeline.runs import JsonLog, progress_bar
from longdoc.pipeline.settings import Settings, load_settings

JSONL_SUFFIX = ".jsonl"
DEFAULT_JOBS = 4


class BatchItem(BaseModel):
    """One document of a batch: a file to read, or the text of a JSONL line."""

    id: str = Field(description="The file's path as found, or the JSONL line's id")
    source: str = Field(description="The file's path, or '<jsonl file>:<line number>'")
    sha256: str = Field(description="Hash of the file's bytes or of the line's text")
    path: Path | None = Field(default=None, description="Absolute path of a file input")
    text: str | None = Field(default=None, description="The document text of a JSONL line")


class BatchJob(BaseModel):
    """What to do with every document, and what its answer depends on (``key``)."""

    task: Task
    strategy: str
    question: str = ""
    words: int = DEFAULT_SUMMARY_WORDS
    password: str | None = None
    model: str
    config: dict[str, Any] = Field(description="Model, context window and Settings.answer_values()")

    @property
    def key(self) -> str:
        """Hash of everything a result depends on besides the document."""
        request: dict[str, Any] = {"task": self.task, "strategy": self.strategy,
                                   "model": self.model, "config": self.config}
        request.update({"question": self.question} if self.task == "qa" else
                       {"words": self.words} if self.task == "summary" else
                       {"question": self.question, "words": self.words})
        blob = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class BatchResult(BaseModel):
    """One line of the output JSONL: a document's answer, or why it failed."""

    id: str
    source: str
    sha256: str = Field(description="Hash of the input file's bytes or the JSONL line's text")
    task: Task
    strategy: str
    route: str | None = Field(default=None, description="auto: the strategy it chose")
    question: str | None = None
    words: int | None = None
    model: str
    request_key: str = Field(description="BatchJob.key: a rerun reuses results with the same")
    status: Literal["ok", "error"]
    error: str | None = None
    error_kind: FailureKind | None = None
    answer: str = ""
    citations: list[Citation] = Field(default_factory=list)
    dropped_quotes: int = 0
    supported: bool | None = Field(default=None, description="A citation supports the answer")
    counts: dict[str, Any] | None = Field(default=None, description="write: the article's "
                                          "counts (words, dropped citations, removed sentences)")
    usage: Usage = Field(default_factory=Usage)
    elapsed_s: float = 0.0
    finished_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(
        timespec="seconds"))

    @property
    def key(self) -> tuple[str, str, str]:
        return self.id, self.sha256, self.request_key


class BatchSummary(BaseModel):
    """What ``run_batch`` did (``--json`` prints it)."""

    output: str
    task: Task
    documents: int = Field(description="Documents in the inputs")
    skipped: int = Field(description="Already done (an ok line in the output)")
    ok: int = Field(description="Done by this run")
    failed: int = Field(description="Failed in this run (retried by a rerun)")
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    elapsed_s: float = 0.0
    failures: list[dict[str, str]] = Field(default_factory=list,
                                           description="{'id', 'error'} of each failure")

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def line(self) -> str:
        """One line for people."""
        tokens = self.prompt_tokens + self.completion_tokens
        text = (f"{self.documents} document(s): {self.ok} done, {self.failed} failed, "
                f"{self.skipped} already done; {self.llm_calls} LLM call(s), {tokens:,} "
                f"tokens, {self.elapsed_s:.1f}s; results in {self.output}")
        return text + (" (rerun to retry the failed ones)" if self.failed else "")


# --- inputs ---------------------------------------------------------------------------------


def collect_inputs(inputs: Sequence[str | Path]) -> list[BatchItem]:
    """The documents of ``inputs``: files, folders (recursively, hidden entries skipped) and
    JSONL files. Raises InputError for a missing input, an unsupported file type, a bad
    JSONL line, an id used for two different documents, or no document at all."""
    items: dict[str, BatchItem] = {}
    for given in inputs:
        path = Path(given)
        if not path.exists():
            raise InputError(f"{given}: not found")
        if path.is_dir():
            found = [_file_item(f) for f in _documents_under(path)]
        elif path.suffix.lower() == JSONL_SUFFIX:
            found = list(_jsonl_items(path))
        elif path.suffix.lower() in SUPPORTED_SUFFIXES:
            found = [_file_item(path)]
        else:
            raise InputError(f"{given}: unsupported input (give .pdf, .txt, .md files, folders "
                             f"or {JSONL_SUFFIX} files of {{\"id\", \"input\"}} lines)")
        for item in found:
            earlier = items.setdefault(item.id, item)
            if earlier.sha256 != item.sha256:
                raise InputError(f"id {item.id!r} names two different documents "
                                 f"({earlier.source} and {item.source})")
    if not items:
        raise InputError(f"no documents ({', '.join(SUPPORTED_SUFFIXES)}) found in "
                         f"{', '.join(map(str, inputs)) or 'the inputs'}")
    return list(items.values())


def _documents_under(folder: Path) -> list[Path]:
    return sorted(
        f for f in folder.rglob("*")
        if f.suffix.lower() in SUPPORTED_SUFFIXES and f.is_file()
        and not any(part.startswith(".") for part in f.relative_to(folder).parts)
    )


def _file_item(path: Path) -> BatchItem:
    """A file input; an unreadable file gets an empty hash and fails when it is run."""
    name = os.path.normpath(path)
    try:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        digest = ""
    return BatchItem(id=name, source=name, sha256=digest, path=path.resolve())


def _jsonl_items(path: Path) -> Iterator[BatchItem]:
    """One item per non-blank line of ``{"input": text, "id": optional}``.

    Lines end at ``\n`` only: U+2028, U+0085 and the like are valid inside JSON strings.
    """
    try:
        lines = path.read_bytes().decode("utf-8-sig").split("\n")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not a JSON line ({exc.msg})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("input"), str):
            raise InputError(f'{where}: a line must be an object with an "input" string')
        given = record.get("id")
        doc_id = str(given) if isinstance(given, str | int) and str(given) else \
            f"{path.name}:{number}"
        text = record["input"]
        yield BatchItem(id=doc_id, source=where, sha256=text_sha256(text), text=text)


# --- one document -----------------------------------------------------------------------------


def make_job(task: Task, settings: Settings, endpoint: Endpoint, *, strategy: str,
             question: str = "", words: int = DEFAULT_SUMMARY_WORDS,
             password: str | None = None) -> BatchJob:
    """The job for ``task`` on ``endpoint``, with the settings its answers depend on."""
    config = answer_config(settings, endpoint)
    del config["model"]  # a field of its own (keys of earlier outputs stay as they were)
    return BatchJob(task=task, strategy=strategy, question=question, words=words,
                    password=password, model=endpoint.model, config=config)


async def run_item(pipeline: Pipeline, item: BatchItem, job: BatchJob) -> BatchResult:
    """Run ``job`` on one document; any failure becomes an error result, never an exception.

    A JSONL line's text is read as a text file named ``<id>.txt`` would be (the name the
    model sees); citations name the item's source either way.
    """
    try:
        source = item.path or item_document(item, pipeline.settings)
    except InputError as exc:
        outcome = Outcome.failed(exc)
    else:
        outcome = await pipeline.aattempt(job.task, source, question=job.question,
                                          words=job.words, strategy=job.strategy,
                                          password=job.password)
    answer = outcome.answer
    if answer is None:
        return result_of(item, job, status="error", error=outcome.error,
                         error_kind=outcome.failure, elapsed_s=outcome.elapsed_s)
    from longdoc.agents.write import Article

    return result_of(
        item, job, status="ok", answer=answer.answer,
        route=(answer.route or {}).get("chosen"),
        citations=[c.model_copy(update={"source": item.source}) for c in answer.citations],
        dropped_quotes=answer.dropped_quotes, supported=answer.supported, usage=answer.usage,
        counts=answer.counts.model_dump() if isinstance(answer, Article) else None,
        elapsed_s=outcome.elapsed_s,
    )


def item_document(item: BatchItem, settings: Settings) -> Document:
    """A JSONL line's text as the document of a text file ``<id>.txt`` (the id made safe
    for a file name), within the settings' size limit."""
    name = re.sub(r"[^\w.-]+", "_", item.id)[:80] + ".txt"
    return text_document(item.text or "", name, budget=settings.budget)


def result_of(item: BatchItem, job: BatchJob, **fields: Any) -> BatchResult:
    """A result line for ``item`` under ``job`` with ``fields`` (status, answer or error...)."""
    return BatchResult(
        id=item.id, source=item.source, sha256=item.sha256, task=job.task,
        strategy=job.strategy, model=job.model, request_key=job.key,
        question=job.question if job.task in ("qa", "write") else None,
        words=job.words if job.task in ("summary", "write") else None, **fields,
    )


# --- the run ----------------------------------------------------------------------------------


class _Recorder:
    """Writes each result, keeps the counts, drives the progress bar; stops the batch when
    the backend keeps failing (``BackendStreak``)."""

    def __init__(self, log: JsonLog[BatchResult], bar: Progress, bar_id: Any, *, verbose: bool):
        self.log, self.bar, self.bar_id, self.verbose = log, bar, bar_id, verbose
        self.results: list[BatchResult] = []
        self.streak = BackendStreak(unit="documents")

    def expect(self, in_flight: int) -> None:
        """Documents run ``in_flight`` at a time: one outage may fail that many at once."""
        self.streak = BackendStreak(in_flight, unit="documents")

    def __call__(self, result: BatchResult) -> None:
        self.log.append(result)
        self.results.append(result)
        failed = sum(r.status == "error" for r in self.results)
        tokens = sum(r.usage.prompt_tokens + r.usage.completion_tokens for r in self.results)
        self.bar.update(self.bar_id, advance=1, failed=failed, tokens=tokens)
        if result.status == "error" and self.verbose:
            self.bar.console.print(f"[red]failed[/red] {escape(result.id)}: "
                                   f"{escape(result.error or '')}", highlight=False,
                                   soft_wrap=True)
        ok = sum(r.status == "ok" for r in self.results)
        self.streak.record(result.error_kind, result.error or "",
                           f"{ok} done, {failed} failed in this run are in {self.log.path}")


def run_batch(
    inputs: Sequence[str | Path],
    output: str | Path,
    *,
    task: Task = "summary",
    question: str = "",
    words: int = DEFAULT_SUMMARY_WORDS,
    strategy: str | None = None,
    jobs: int | None = None,
    use_ray: bool = False,
    password: str | None = None,
    settings: Settings | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> BatchSummary:
    """Run ``task`` on every document of ``inputs`` not yet done in ``output``.

    ``jobs`` documents are in flight at once (default 4; with ``use_ray`` the Ray
    cluster's CPUs). ``strategy`` defaults to mapreduce for summaries and to the settings'
    strategy for questions; articles (``task="write"``, ``question`` the topic) have one.
    Raises InputError for bad parameters or inputs before any work, BackendError if the
    backend cannot start or fails on several documents in a row (the results so far are
    kept: rerun to resume).
    """
    started = time.perf_counter()
    settings = settings or load_settings()
    strategy = "write" if task == "write" else strategy or (
        DEFAULT_STRATEGY["summary"] if task == "summary" else settings.strategy)
    check_request(task, strategy, question=question, words=words)
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be at least 1 (got {jobs})")
    items = collect_inputs(inputs)
    console = console or Console(stderr=True)
    with JsonLog(Path(output), BatchResult) as log, Pipeline(settings) as pipeline:
        done = log.done(lambda r: r.status == "ok")
        endpoint = pipeline.backend.start()
        job = make_job(task, settings, endpoint, strategy=strategy, question=question,
                       words=words, password=password)
        pending = [i for i in items if (i.id, i.sha256, job.key) not in done]
        skipped = len(items) - len(pending)
        if progress and not pending:
            console.print(f"all {len(items)} document(s) already done in {log.path}")
        bar = progress_bar(console, TextColumn("{task.fields[failed]} failed"),
                           TextColumn("{task.fields[tokens]:,} tok"),
                           disable=not progress or not pending)
        label = f"batch {task}" + (f" ({skipped} done before)" if skipped else "")
        with bar:
            bar_id = bar.add_task(label, total=len(pending), failed=0, tokens=0)
            record = _Recorder(log, bar, bar_id, verbose=progress)
            if pending and use_ray:
                _run_ray(pending, job, worker_settings(settings, endpoint), jobs, record)
            elif pending:
                asyncio.run(_run_local(pipeline, pending, job, jobs or DEFAULT_JOBS, record))
    results = record.results
    usage = [r.usage for r in results]
    return BatchSummary(
        output=str(output), task=task, documents=len(items), skipped=skipped,
        ok=sum(r.status == "ok" for r in results),
        failed=sum(r.status == "error" for r in results),
        llm_calls=sum(u.llm_calls for u in usage),
        prompt_tokens=sum(u.prompt_tokens for u in usage),
        completion_tokens=sum(u.completion_tokens for u in usage),
        elapsed_s=round(time.perf_counter() - started, 3),
        failures=[{"id": r.id, "error": r.error or ""} for r in results if r.status == "error"],
    )


async def _run_local(pipeline: Pipeline, items: list[BatchItem], job: BatchJob, jobs: int,
                     record: _Recorder) -> None:
    """``jobs`` workers take the next document until none is left; the first exception
    (the recorder's backend stop, Ctrl-C) cancels the documents in flight."""
    queue = iter(items)
    record.expect(jobs)

    async def worker() -> None:
        for item in queue:
            record(await run_item(pipeline, item, job))

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(jobs, len(items))):
                group.create_task(worker())
    except ExceptionGroup as errors:  # run_item returns failures: this is the recorder's
        raise errors.exceptions[0] from None


# --- Ray ----------------------------------------------------------------------------------------


def worker_settings(settings: Settings, endpoint: Endpoint) -> Settings:
    """Settings for Ray workers: the driver's endpoint as an ``openai`` backend."""
    return endpoint_settings(settings, endpoint)


_worker_pipelines: dict[str, Pipeline] = {}


def _ray_task(item: BatchItem, job: BatchJob, settings: Settings) -> BatchResult:
    """One document in a Ray worker; the worker keeps one pipeline per settings."""
    pipeline = _worker_pipelines.get(key := settings.model_dump_json())
    if pipeline is None:
        pipeline = _worker_pipelines[key] = Pipeline(settings)
    return asyncio.run(run_item(pipeline, item, job))


def _run_ray(items: list[BatchItem], job: BatchJob, settings: Settings, jobs: int | None,
             record: _Recorder) -> None:
    """Run the documents as Ray tasks, at most ``jobs`` in flight (default: the cluster's
    CPUs), recording each result as it arrives. Uses the running Ray instance, or starts
    one (``RAY_ADDRESS`` to join a cluster) and shuts it down afterwards."""
    try:
        import ray
    except ImportError as exc:
        raise InputError("--ray needs Ray: pip install 'longdoc[ray]'") from exc
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    pending: dict[Any, BatchItem] = {}
    try:
        resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
        limit = jobs or max(1, int(resources.get("CPU", 1)))
        record.expect(limit)
        task = ray.remote(_ray_task)
        job_ref, settings_ref = ray.put(job), ray.put(settings)
        queue = iter(items)

        def submit() -> None:
            item = next(queue, None)
            if item is not None:
                pending[task.remote(item, job_ref, settings_ref)] = item

        for _ in range(limit):
            submit()
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                item = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    result = _lost(item, job, exc)
                record(result)
                submit()
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started_here:
            ray.shutdown()


def _lost(item: BatchItem, job: BatchJob, exc: Exception) -> BatchResult:
    """The error result of a document whose Ray task died (e.g. its worker was killed)."""
    message = " ".join(str(exc).split())[:300]
    return result_of(item, job, status="error", error_kind="internal",
                     error=f"ray task failed: {type(exc).__name__}: {message}")

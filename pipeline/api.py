"""Python API: ``ask``/``summarize`` for one-off requests, ``Pipeline`` to keep a server alive."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from longdoc.agents import DEFAULT_STRATEGY, STRATEGIES
from longdoc.pipeline.backends import Backend
from longdoc.pipeline.errors import BackendError, InputError, OverBudgetError
from longdoc.pipeline.graph import build_graph, compiled_graph
from longdoc.pipeline.ingest import load_document
from longdoc.pipeline.llm import Endpoint, LLMClient, RejectedRequest, ResponseCache
from longdoc.pipeline.models import (
    DEFAULT_SUMMARY_WORDS,
    DEFAULT_WRITE_WORDS,
    MAX_SUMMARY_WORDS,
    MAX_WRITE_WORDS,
    MIN_SUMMARY_WORDS,
    MIN_WRITE_WORDS,
    Answer,
    Document,
    Task,
    Usage,
)
from longdoc.pipeline.settings import Settings, load_settings, private_dir, private_file
from longdoc.pipeline.state import CompiledGraph, Request, RunContext

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from longdoc.agents.write import Article

PathLike = str | Path
Source = PathLike | Document  # a file to read, or a document already in memory
RUNS_DB = "runs.sqlite"
RUN_STEP_LIMIT = 100_000  # sequential strategies take a few steps per chunk
DYING_WAIT_S = 0.5  # after a backend error, how long to wait for a managed server to die
LOADED_KEPT = 16  # documents a pipeline keeps read (the app runs several strategies on them)
BACKEND_STREAK = 2  # backend failures in a row, beyond the requests in flight, that stop a run
FailureKind = Literal["input", "over_budget", "request", "backend", "internal"]
_FAILURE_PREFIX: dict[FailureKind, str] = {
    "input": "", "over_budget": "over budget: ", "request": "model backend: ",
    "backend": "model backend: ", "internal": "internal error: "}


def failure_kind(exc: BaseException) -> FailureKind:
    """What a request's exception says about it: bad input (``over_budget``: the input is
    over a strategy's window), a request the model server refused (this request's fault,
    not an outage), a backend failure, or a bug (``internal``)."""
    if isinstance(exc, OverBudgetError):
        return "over_budget"
    if isinstance(exc, InputError):
        return "input"
    if isinstance(exc, RejectedRequest):
        return "request"
    if isinstance(exc, BackendError):
        return "backend"
    return "internal"


@dataclass(frozen=True)
class Outcome:
    """One request's result as batch, eval and the review app record it: its answer, or
    the kind of failure and a one-line message (``exception`` for a traceback)."""

    answer: Answer | None = None
    failure: FailureKind | None = None
    error: str = ""
    elapsed_s: float = 0.0
    exception: BaseException | None = None

    @classmethod
    def failed(cls, exc: BaseException, elapsed_s: float = 0.0) -> Outcome:
        """The outcome of a request that raised ``exc``."""
        kind = failure_kind(exc)
        message = f"{type(exc).__name__}: {exc}" if kind == "internal" else str(exc)
        return cls(failure=kind, error=_FAILURE_PREFIX[kind] + message,
                   elapsed_s=round(elapsed_s, 3), exception=exc)


class BackendStreak:
    """Backend failures in a row over a series of requests: a BackendError once they reach
    ``BACKEND_STREAK`` more than the requests in flight (one outage fails those at once);
    any other outcome ends the streak."""

    def __init__(self, in_flight: int = 1, unit: str = "requests") -> None:
        self.count = 0
        self.limit = in_flight + BACKEND_STREAK
        self.unit = unit  # what the message counts ("documents", "runs")

    def record(self, failure: FailureKind | None, error: str = "", done: str = "") -> None:
        """Count one outcome; raise when the backend keeps failing (``done``: what was kept,
        for the message)."""
        self.count = self.count + 1 if failure == "backend" else 0
        if self.count >= self.limit:
            raise BackendError(f"the model backend failed on {self.count} {self.unit} in a row; "
                               f"stopped{f' ({done})' if done else ''}; rerun to resume: "
                               f"{error}")


def answer_config(settings: Settings, endpoint: Endpoint) -> dict[str, Any]:
    """What an answer depends on besides the documents and the request: the model, its
    window and the settings marked as answer settings (``Settings.answer_values``)."""
    return {**settings.answer_values(), "model": endpoint.model,
            "context_window": endpoint.context_window}


def run_key(documents: Sequence[Document], config: dict[str, Any]) -> str:
    """Hash of the documents' texts and ``answer_config``: what a checkpoint belongs to."""
    blob = json.dumps({"documents": [d.sha256 for d in documents], "config": config},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def checkpoint_serde() -> JsonPlusSerializer:
    """LangGraph's checkpoint serializer with longdoc's state types registered: every
    pydantic model of a ``longdoc`` module (the strategies' included). Other types are
    refused on resume, and these load without LangGraph's "unregistered type" warning."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from longdoc.agents import import_all

    import_all()  # defines the strategies' state types

    found: set[type[BaseModel]] = set()
    pending: list[type[BaseModel]] = [BaseModel]
    while pending:
        for cls in pending.pop().__subclasses__():
            if cls not in found:
                found.add(cls)
                pending.append(cls)
    ours = sorted((c for c in found if c.__module__.startswith("longdoc.")),
                  key=lambda c: (c.__module__, c.__qualname__))
    return JsonPlusSerializer(allowed_msgpack_modules=ours)


_loaded: OrderedDict[tuple[Any, ...], Document] = OrderedDict()
_loaded_lock = threading.Lock()


def read_documents(paths: Sequence[PathLike], settings: Settings,
                   password: str | None = None) -> list[Document]:
    """The documents at ``paths`` within the settings' budget (``Budget``), each file parsed
    once while it is unchanged (same size and modification time; the last
    ``LOADED_KEPT`` are kept): several strategies or questions on one PDF, as the review
    app runs them, do not pay for its extraction again."""
    budget = settings.budget
    documents = []
    for path in paths:
        try:
            stat = Path(path).stat()
            key: tuple[Any, ...] | None = (
                str(Path(path).resolve()), str(path), stat.st_size, stat.st_mtime_ns,
                password, budget.model_dump_json())
        except OSError:
            key = None  # load_document names the problem
        with _loaded_lock:
            document = _loaded.get(key) if key else None
            if document is not None:
                _loaded.move_to_end(key)  # type: ignore[arg-type]
        if document is None:
            document = load_document(path, password=password, budget=budget)
            if key:
                with _loaded_lock:
                    _loaded[key] = document
                    while len(_loaded) > LOADED_KEPT:
                        _loaded.popitem(last=False)
        documents.append(document)
    return documents


_heap_settled = False


def settle_heap() -> None:
    """Once per process: collect, then freeze what start-up left (modules, clients, the
    backend) out of later collections. A long document's run allocates enough to set off
    full collections, and each one walked the ~200k start-up objects (~0.13 s on the
    event loop, measured with the simulated server) for nothing."""
    global _heap_settled
    if not _heap_settled:
        gc.collect()
        gc.freeze()
        _heap_settled = True


class Pipeline:
    """A model backend, a response cache and the graph, reused across questions.

    >>> with Pipeline() as p:                             # doctest: +SKIP
    ...     print(p.ask("report.pdf", "Who wrote it?").answer)
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any):
        self.settings = settings or load_settings(**overrides)
        self.backend = Backend(self.settings)
        self.cache = (
            ResponseCache(self.settings.cache_dir / "responses.sqlite")
            if self.settings.llm.use_cache
            else None
        )
        self._limit: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def __enter__(self) -> Pipeline:
        """The backend starts with the first request, after the request's own checks (a
        bad question or file is reported before a model server spends time starting)."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the model server this pipeline started, if any."""
        self.backend.stop()
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def read_sources(self, sources: Sequence[Source], password: str | None = None
                     ) -> list[Document]:
        """The documents of ``sources``, in order: files read (``load_documents``),
        ``Document`` objects as they are (InputError for one without text)."""
        out = []
        for source in sources:
            if isinstance(source, Document):
                if not source.text.strip():
                    raise InputError(f"{source.source}: empty document")
                out.append(source)
            else:
                out.extend(self.load_documents([source], password))
        return out

    def load_documents(self, paths: Sequence[PathLike], password: str | None = None
                       ) -> list[Document]:
        """``read_documents`` with this pipeline's settings."""
        return read_documents(paths, self.settings, password)

    async def aask(
        self,
        paths: Source | Sequence[Source],
        question: str,
        *,
        strategy: str | None = None,
        password: str | None = None,
        run_id: str | None = None,
    ) -> Answer:
        """Answer ``question`` about the documents at ``paths`` (file paths, or ``Document``
        objects such as ``Document.from_text(text)``), with verified citations.

        With ``run_id`` the run is checkpointed after every step and resumable.
        """
        return await self._run(paths, "qa", strategy or self.settings.strategy,
                               question=question, password=password, run_id=run_id)

    def ask(self, paths: Source | Sequence[Source], question: str, **kwargs: Any) -> Answer:
        """Synchronous ``aask``."""
        return asyncio.run(self.aask(paths, question, **kwargs))

    async def asummarize(
        self,
        paths: Source | Sequence[Source],
        *,
        words: int = DEFAULT_SUMMARY_WORDS,
        strategy: str | None = None,
        password: str | None = None,
        run_id: str | None = None,
    ) -> Answer:
        """Summarize the documents in about ``words`` words; citations name their paragraph."""
        return await self._run(paths, "summary", strategy or DEFAULT_STRATEGY["summary"],
                               words=words, password=password, run_id=run_id)

    def summarize(self, paths: Source | Sequence[Source], **kwargs: Any) -> Answer:
        """Synchronous ``asummarize``."""
        return asyncio.run(self.asummarize(paths, **kwargs))

    async def awrite(
        self,
        paths: Source | Sequence[Source],
        topic: str,
        *,
        words: int = DEFAULT_WRITE_WORDS,
        password: str | None = None,
        run_id: str | None = None,
        progress: Callable[..., None] | None = None,
    ) -> Article:
        """Write an article of about ``words`` words on ``topic`` from the documents: a
        planned outline, sections with verified citations, every figure traceable.
        ``progress(stage, total, advance, tokens)`` is called as the stages go on."""
        from longdoc.agents.write import article_from_state

        state, answer = await self._run_state(paths, "write", "write", question=topic,
                                              words=words, password=password, run_id=run_id,
                                              progress=progress)
        return article_from_state(state, answer)

    def write(self, paths: Source | Sequence[Source], topic: str, **kwargs: Any) -> Article:
        """Synchronous ``awrite``."""
        return asyncio.run(self.awrite(paths, topic, **kwargs))

    async def arun(
        self,
        task: Task,
        paths: Source | Sequence[Source],
        *,
        question: str = "",
        words: int | None = None,
        strategy: str | None = None,
        password: str | None = None,
    ) -> Answer:
        """One request of any task, as batch, eval and the review app run them: ``aask``
        (``question``), ``asummarize`` (``words``) or ``awrite`` (``question`` is the topic;
        it has no strategy). ``words`` None: the task's default length."""
        if task == "write":
            return await self.awrite(paths, question, password=password,
                                     words=words or DEFAULT_WRITE_WORDS)
        if task == "summary":
            return await self.asummarize(paths, words=words or DEFAULT_SUMMARY_WORDS,
                                         strategy=strategy, password=password)
        return await self.aask(paths, question, strategy=strategy, password=password)

    def run(self, task: Task, paths: Source | Sequence[Source], **kwargs: Any) -> Answer:
        """Synchronous ``arun``."""
        return asyncio.run(self.arun(task, paths, **kwargs))

    async def aattempt(self, task: Task, paths: Source | Sequence[Source],
                       **kwargs: Any) -> Outcome:
        """``arun`` (same arguments) that never raises for the request's own failure: its
        answer, or the failure's kind and message (``Outcome.failed``). Interruptions
        (Ctrl-C, cancellation) still raise."""
        started = time.perf_counter()
        try:
            answer = await self.arun(task, paths, **kwargs)
        except Exception as exc:  # one request's failure, bug included, is its outcome
            return Outcome.failed(exc, time.perf_counter() - started)
        return Outcome(answer=answer, elapsed_s=round(time.perf_counter() - started, 3))

    def attempt(self, task: Task, paths: Source | Sequence[Source], **kwargs: Any) -> Outcome:
        """Synchronous ``aattempt``."""
        return asyncio.run(self.aattempt(task, paths, **kwargs))

    async def _run(self, paths: Source | Sequence[Source], task: Task, strategy: str,
                   **request: Any) -> Answer:
        """Run the graph for one request (``_run_state``'s keywords: question, words,
        password, run_id) and package its result as an ``Answer``."""
        state, answer = await self._run_state(paths, task, strategy, **request)
        draft = state["draft"]
        return answer.model_copy(update=dict(
            answer=draft.answer,
            citations=state["citations"],
            dropped_quotes=state["dropped_quotes"],
            unsupported_citations=state.get("unsupported_citations", 0),
            supported=state.get("supported", False),
            route=state.get("route"),
            coverage=state.get("coverage"),
        ))

    async def _run_state(
        self,
        paths: Source | Sequence[Source],
        task: Task,
        strategy: str,
        *,
        question: str = "",
        words: int = DEFAULT_SUMMARY_WORDS,
        password: str | None = None,
        run_id: str | None = None,
        progress: Callable[..., None] | None = None,
    ) -> tuple[dict[str, Any], Answer]:
        """Run the graph for one request: its final state, and an ``Answer`` with the
        run's usage, time and trace (the caller fills in the rest)."""
        check_request(task, strategy, question=question, words=words)
        sources = [paths] if isinstance(paths, str | Path | Document) else list(paths)
        if not sources:
            raise InputError("no input files given")
        started = time.perf_counter()
        documents = self.read_sources(sources, password)
        endpoint = self.backend.start()
        settle_heap()
        llm = LLMClient(endpoint, self.settings, self.cache, limit=self._request_limit())
        request = Request(task=task, question=question, words=words, strategy=strategy,
                          paths=[d.source if isinstance(p, Document) else str(p)
                                 for p, d in zip(sources, documents, strict=True)],
                          documents=documents)
        context = RunContext(settings=self.settings, llm=llm, password=password,
                             progress=progress)
        try:
            if run_id is None:
                graph = _compiled(task, strategy)
                state = await graph.ainvoke(request, context=context)
            else:
                request["run_key"] = run_key(documents, answer_config(self.settings, endpoint))
                state = await self._run_durably(run_id, strategy, request, context)
        except BackendError as error:
            # A crashed managed server reads as a connection error: say that it died.
            reason = self.backend.exit_reason(wait_s=DYING_WAIT_S)
            if reason is None:
                raise
            raise BackendError(reason) from error
        finally:
            await llm.close()
        return state, Answer(
            answer="",
            strategy=strategy,
            usage=Usage.from_calls(llm.calls),
            elapsed_s=round(time.perf_counter() - started, 3),
            trace=state["trace"],
        )

    def _request_limit(self) -> asyncio.Semaphore:
        """The bound on LLM requests in flight (``concurrency``) that every run of this
        pipeline on the running event loop shares, so concurrent runs stay within it."""
        loop = asyncio.get_running_loop()
        if self._limit is None or self._limit[0] is not loop:
            self._limit = (loop, asyncio.Semaphore(self.settings.llm.concurrency))
        return self._limit[1]

    async def _run_durably(
        self, run_id: str, strategy: str, request: Request, context: RunContext,
    ) -> dict[str, Any]:
        """Run with a SQLite checkpoint after every step, keyed by ``run_id``.

        A run id seen before resumes that run from its last completed step (a finished
        run returns its stored result without any LLM call); it must name the same request
        on the same document texts with the same answer settings (``request["run_key"]``).
        """
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        private_dir(self.settings.cache_dir)
        config: RunnableConfig = {"configurable": {"thread_id": run_id},
                                  "recursion_limit": RUN_STEP_LIMIT}
        database = self.settings.cache_dir / RUNS_DB
        async with aiosqlite.connect(str(database)) as connection:
            private_file(database)
            saver = AsyncSqliteSaver(connection, serde=checkpoint_serde())
            graph = _compiled(request["task"], strategy, checkpointer=saver)
            saved = await graph.aget_state(config)
            if not saved.values:
                state: dict[str, Any] = await graph.ainvoke(request, config, context=context)
                return state
            asked = {k: v for k, v in request.items() if k != "documents"}
            earlier = {key: saved.values.get(key) for key in asked}
            if {k: v for k, v in earlier.items() if k != "run_key"} != \
                    {k: v for k, v in asked.items() if k != "run_key"}:
                raise InputError(f"run id {run_id!r} belongs to another request "
                                 f"({earlier['task']} of {earlier['paths']}); use a new run id")
            if earlier["run_key"] != asked["run_key"]:
                raise InputError(f"run id {run_id!r} was started on other document contents or "
                                 "settings (a file changed since, or the model, chunking or "
                                 "sampling did); its answer would not match: use a new run id")
            if not saved.next:
                done: dict[str, Any] = saved.values
                return done
            resumed: dict[str, Any] = await graph.ainvoke(None, config, context=context)
            return resumed


def _compiled(task: Task, strategy: str,
              checkpointer: BaseCheckpointSaver[Any] | None = None) -> CompiledGraph:
    """The graph of a request: the write graph for articles, else the strategy's."""
    if task == "write":
        from longdoc.agents.write import build_write_graph, compiled_write_graph

        return compiled_write_graph() if checkpointer is None else \
            build_write_graph(checkpointer=checkpointer)
    return compiled_graph(strategy) if checkpointer is None else \
        build_graph(strategy, checkpointer=checkpointer)


def check_request(task: Task, strategy: str, *, question: str = "",
                  words: int = DEFAULT_SUMMARY_WORDS) -> None:
    """InputError for an unknown strategy (or one that does not serve ``task``), an empty
    question or topic, or a summary or article length out of range."""
    if task == "write":
        if not question.strip():
            raise InputError("the topic is empty")
        if not MIN_WRITE_WORDS <= words <= MAX_WRITE_WORDS:
            raise InputError(f"--words must be between {MIN_WRITE_WORDS} and "
                             f"{MAX_WRITE_WORDS} (got {words})")
        return
    if strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {strategy!r} (choose from {sorted(STRATEGIES)})")
    if task not in STRATEGIES[strategy].tasks:
        raise InputError(f"the {strategy} strategy answers questions; use another for "
                         "summaries")
    if task == "qa" and not question.strip():
        raise InputError("the question is empty")
    if task == "summary" and not MIN_SUMMARY_WORDS <= words <= MAX_SUMMARY_WORDS:
        raise InputError(f"--words must be between {MIN_SUMMARY_WORDS} and "
                         f"{MAX_SUMMARY_WORDS} (got {words})")


def ask(
    paths: Source | Sequence[Source],
    question: str,
    *,
    strategy: str | None = None,
    password: str | None = None,
    **settings: Any,
) -> Answer:
    """Answer one question: start the backend, run the graph, stop the backend."""
    with Pipeline(**settings) as pipeline:
        return pipeline.ask(paths, question, strategy=strategy, password=password)


def summarize(
    paths: Source | Sequence[Source],
    *,
    words: int = DEFAULT_SUMMARY_WORDS,
    strategy: str | None = None,
    password: str | None = None,
    **settings: Any,
) -> Answer:
    """Summarize documents once: start the backend, run the graph, stop the backend."""
    with Pipeline(**settings) as pipeline:
        return pipeline.summarize(paths, words=words, strategy=strategy, password=password)


def write(
    paths: Source | Sequence[Source],
    topic: str,
    *,
    words: int = DEFAULT_WRITE_WORDS,
    password: str | None = None,
    **settings: Any,
) -> Article:
    """Write one article: start the backend, run the write graph, stop the backend."""
    with Pipeline(**settings) as pipeline:
        return pipeline.write(paths, topic, words=words, password=password)

"""Domain models shared by every stage: documents, chunks, citations, usage, answers."""

from __future__ import annotations

import hashlib
from typing import Any, Literal
from uuid import uuid4

from pydantic import BaseModel, Field

from longdoc.pipeline.markup import is_markup, plain_text

Task = Literal["qa", "summary", "write"]


def text_sha256(text: str) -> str:
    """The hash a document's text is known by (``Document.sha256``)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

# Request lengths in words (the one home of their defaults and ranges).
DEFAULT_SUMMARY_WORDS = 300
MIN_SUMMARY_WORDS, MAX_SUMMARY_WORDS = 20, 5000
DEFAULT_WRITE_WORDS = 1500
MIN_WRITE_WORDS, MAX_WRITE_WORDS = 100, 20000


class Page(BaseModel):
    """One page of a document: ``text[start:end]`` of the document is the page's text."""

    number: int = Field(description="1-based page number")
    start: int
    end: int


class Document(BaseModel):
    """Extracted text of one source file, with page offsets and a content hash."""

    source: str = Field(description="The path the document was read from")
    text: str
    pages: list[Page] = Field(default_factory=list, description="Empty for plain text files")
    metadata: dict[str, str] = Field(default_factory=dict)
    sha256: str = Field(description="Hash of the extracted text")

    @classmethod
    def from_text(cls, text: str, source: str = "text", *, markup: bool | None = None
                  ) -> Document:
        """A document of ``text``, read from no file (unpaged; hashed as a file's extracted
        text is): pass it to ``Pipeline.ask``/``summarize``/``write`` instead of a path.
        Citations name ``source``. HTML markup becomes plain text with its structure
        (``markup.plain_text``) when ``markup`` is True, or when it is None and the text
        is mostly markup (``markup.is_markup``); otherwise the text is kept as given."""
        metadata = {}
        if markup or (markup is None and is_markup(text)):
            text, metadata = plain_text(text), {"converted": "html"}
        return cls(source=source, text=text, metadata=metadata,
                   sha256=text_sha256(text))

    def page_at(self, offset: int) -> int | None:
        """The page number holding character ``offset``, or None for unpaged text."""
        for page in self.pages:
            if page.start <= offset < page.end:
                return page.number
        return self.pages[-1].number if self.pages and offset >= self.pages[-1].end else None


class Chunk(BaseModel):
    """A contiguous span of one document: ``document.text[start:end] == text``."""

    id: str = Field(description="Stable id: '<document index>:<chunk index>'")
    source: str
    doc_index: int
    index: int
    start: int
    end: int
    text: str
    tokens: int
    page_start: int | None = None
    page_end: int | None = None


class Quote(BaseModel):
    """A quote a strategy offers as evidence, before it is located in the source."""

    text: str
    source: str | None = Field(default=None, description="Restrict the search to this source")
    origin: Literal["model", "located"] = Field(
        default="model", description="'model' if the model wrote it, 'located' if found in code"
    )


class Citation(BaseModel):
    """A verified quote: ``extract(source).text[start:end] == quote``."""

    source: str
    page: int | None
    start: int
    end: int
    quote: str
    origin: Literal["model", "located"] = "model"
    paragraph: int | None = Field(
        default=None, description="Summaries: the 1-based paragraph this citation supports"
    )


class CallRecord(BaseModel):
    """One LLM request: which graph node made it and what it cost."""

    node: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # served from the server's prefix cache (vLLM)
    latency_s: float = 0.0
    cached: bool = False


class NodeUsage(BaseModel):
    """LLM cost of one graph node (or of a whole run); cache hits cost no LLM call."""

    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    cached_prompt_tokens: int = Field(
        0, description="Prompt tokens the server took from its prefix cache (vLLM reports them)"
    )
    latency_s: float = 0.0

    def add(self, call: CallRecord) -> None:
        if call.cached:
            self.cache_hits += 1
            return
        self.llm_calls += 1
        self.prompt_tokens += call.prompt_tokens
        self.completion_tokens += call.completion_tokens
        self.cached_prompt_tokens += call.cached_prompt_tokens
        self.latency_s = round(self.latency_s + call.latency_s, 4)


class Usage(NodeUsage):
    """Totals over a run's LLM requests, and the same per graph node."""

    by_node: dict[str, NodeUsage] = Field(default_factory=dict)

    @classmethod
    def from_calls(cls, calls: list[CallRecord]) -> Usage:
        usage = cls()
        for call in calls:
            usage.add(call)
            usage.by_node.setdefault(call.node, NodeUsage()).add(call)
        return usage


class TraceEvent(BaseModel):
    """One step of a run, for reviewers: which node did what, with any details."""

    node: str
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
    id: str = Field(default_factory=lambda: uuid4().hex, description="Unique per event")


class Coverage(BaseModel):
    """How much of the documents a run read, and why it stopped reading."""

    chunks_read: int
    chunks_total: int
    pages_read: int | None = Field(None, description="Pages the chunks read touch (PDFs)")
    pages_total: int | None = None
    share: float = Field(description="Share of the chunks' tokens that were read, 0-1")
    rounds: list[int] = Field(
        default_factory=list, description="auto: chunks read in each widening round"
    )
    stopped: str = Field(
        description="answer (a supported answer), whole (everything read at once), exhausted "
        "(every chunk read in rounds, no supported answer), max_chunks, max_calls or "
        "time_budget"
    )
    reason: str = ""
    chunks_failed: int = Field(0, description="mapreduce: chunks whose model call failed "
                               "after its retries (the answer was made without them)")
    pages_failed: list[int] = Field(default_factory=list,
                                    description="Pages of the failed chunks (PDFs)")

    def summary(self) -> str:
        """One line: what was read and why reading stopped."""
        pages = (f", {self.pages_read} of {self.pages_total} pages"
                 if self.pages_total else "")
        return (f"read {self.chunks_read} of {self.chunks_total} chunks ({self.share:.1%} of "
                f"the text{pages}); {self.reason or self.stopped}")


class Answer(BaseModel):
    """What ``ask``/``summarize`` return, and what ``--json`` prints."""

    answer: str
    strategy: str
    citations: list[Citation] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    elapsed_s: float = 0.0
    dropped_quotes: int = Field(default=0, description="Quotes that could not be located")
    unsupported_citations: int = Field(
        default=0, description="Quotes located in the source that do not support the answer")
    supported: bool = Field(
        default=False, description="A citation supports the answer (summaries: every "
        "paragraph has one); false: the answer stands on nothing verified")
    route: dict[str, str] | None = Field(
        default=None, description="auto: the strategy it chose ('chosen') and why ('reason')"
    )
    coverage: Coverage | None = Field(
        default=None, description="auto: how much of the documents was read, why it stopped"
    )
    trace: list[TraceEvent] = Field(default_factory=list)

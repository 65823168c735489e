"""The typed state every strategy reads and writes, and the per-run context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, Field

from longdoc.pipeline.grounding import Similarity
from longdoc.pipeline.llm import LLMClient
from longdoc.pipeline.models import Chunk, Citation, Coverage, Document, Quote, Task, TraceEvent
from longdoc.pipeline.settings import Settings

CompiledGraph = CompiledStateGraph[Any, Any, Any, Any]  # a compiled graph, whatever its state
NOT_FOUND_ANSWER = "Not found: no part of the document supports an answer."


class Draft(BaseModel):
    """A strategy's answer before citation verification."""

    answer: str
    quotes: list[Quote] = Field(default_factory=list)
    found: bool = True
    paragraph_quotes: list[list[Quote]] = Field(
        default_factory=list,
        description="Summaries: the quotes supporting each paragraph of the answer, in order",
    )


class Evidence(BaseModel):
    """A verified evidence span: ``document.text[start:end] == text`` (absolute offsets)."""

    source: str
    start: int
    end: int
    text: str
    origin: Literal["model", "located"] = Field(
        description="'model' if the model quoted it, 'located' if found in code"
    )


class MapRecord(BaseModel):
    """What one chunk said about the question, and whether its text supports it."""

    chunk_id: str
    source: str
    parsed: bool = Field(description="False if no answer could be read from the reply")
    found: bool = Field(False, description="The reply offers an answer (not 'none')")
    answer: str = ""
    answer_key: list[str] = Field(
        default_factory=list,
        description="Normalized key strings of the answer (numbers, else names, else words)",
    )
    confidence: Literal["high", "medium", "low"] | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    verified: bool = Field(
        False, description="The answer key occurs in evidence located in the chunk's text"
    )
    relevance: float = Field(0.0, description="How much the evidence is about the question "
                             "(grounding.relevance, 0-1)")
    second_look: bool = Field(
        False, description="From a second look at a question-matching passage, not a chunk"
    )
    status: str = Field("", description="Why the record is (not) verified, for the trace")
    failed: bool = Field(False, description="The model call failed after its retries: the "
                         "run went on without this chunk (coverage.chunks_failed)")
    chunk_tokens: int = 0
    evidence_tokens: int = 0
    reply: str = ""


class KeyPoint(BaseModel):
    """One key point of a summary record, with the source spans that support it."""

    text: str
    evidence: list[Evidence] = Field(default_factory=list)
    verified: bool = Field(False, description="A quote of it was located in the source text")


class SummaryRecord(BaseModel):
    """Summary protocol: the key points of one chunk, or of a collapsed group of records."""

    chunk_ids: list[str]
    points: list[KeyPoint] = Field(default_factory=list)
    parsed: bool = Field(False, description="False if no key point could be read")
    level: int = Field(0, description="0 for a map record, n after n collapse rounds")
    tokens: int = Field(0, description="cl100k tokens of the record as the reducer sees it")


def add_events(left: list[TraceEvent], right: list[TraceEvent]) -> list[TraceEvent]:
    """Trace reducer: append the events not seen yet (by id).

    A strategy subgraph hands back the whole trace it was given plus its own events;
    appending only new ids keeps every event once.
    """
    seen = {event.id for event in left}
    return left + [event for event in right if event.id not in seen]


class Request(TypedDict):
    """The graph's input: what was asked, of which documents. Every field is required
    (``Pipeline`` fills them; nodes read them without defaults)."""

    task: Task
    question: str  # the question, the article's topic, or "" for a summary
    words: int  # summary or article length (DEFAULT_SUMMARY_WORDS for a question: unused)
    strategy: str  # a name in ``agents.STRATEGIES``, or "write"
    paths: list[str]
    documents: list[Document]  # read by the caller; ``ingest`` reads ``paths`` if empty
    run_key: NotRequired[str]  # --run-id: hash of the documents' texts and answer settings


class GraphState(Request, total=False):
    """Shared state: the request, documents and chunks, a draft, verified citations. Keys
    private to one strategy live in its subgraph's state (``MapReduceState``,
    ``SequentialState``, ``RagState``, ...)."""

    chunks: list[Chunk]
    selected_chunks: list[str]
    route: dict[str, str]  # auto: the chosen strategy and why
    coverage: Coverage  # auto: how much was read and why reading stopped
    draft: Draft
    citations: list[Citation]
    dropped_quotes: int
    unsupported_citations: int  # located in the source, but not supporting the answer
    supported: bool  # some citation supports the answer (summaries: every paragraph's)
    trace: Annotated[list[TraceEvent], add_events]


class StrategyOutput(TypedDict, total=False):
    """What a strategy subgraph passes back to the shared graph."""

    draft: Draft
    trace: Annotated[list[TraceEvent], add_events]
    coverage: Coverage  # mapreduce: chunks whose map call failed


def strategy_graph(state_schema: type[GraphState] = GraphState) -> StateGraph[Any, Any, Any, Any]:
    """A strategy's graph: reads the shared state, returns only ``StrategyOutput``."""
    return StateGraph(state_schema, context_schema=RunContext, output_schema=StrategyOutput)


@dataclass
class RunContext:
    """What nodes need besides state: settings, the LLM client, a PDF password."""

    settings: Settings
    llm: LLMClient
    password: str | None = None
    progress: Callable[..., None] | None = None  # write: (stage, total, advance, tokens)
    _similarities: dict[str, Similarity | None] = field(default_factory=dict, repr=False)

    def similarity(self, question: str) -> Similarity | None:
        """How close texts are in meaning to ``question`` under the configured embedder
        (``retrieval.question_similarity``; one per question and run), or None."""
        if question not in self._similarities:
            from longdoc.retrieval import question_similarity

            self._similarities[question] = question_similarity(question, self.settings)
        return self._similarities[question]

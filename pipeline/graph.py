"""The shared graph: ingest -> chunk -> strategy -> verify citations."""

from __future__ import annotations

import asyncio
from functools import cache

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from longdoc.pipeline.chunking import chunk_documents
from longdoc.pipeline.citations import CitationVerifier
from longdoc.pipeline.ingest import load_documents
from longdoc.pipeline.models import Citation, Quote, TraceEvent
from longdoc.pipeline.state import GraphState, RunContext


async def ingest(state: GraphState, runtime: Runtime[RunContext]) -> dict:
    """Read every input file into a ``Document`` (unless the caller already has)."""
    settings = runtime.context.settings
    documents = state.get("documents") or load_documents(
        state["paths"],
        password=runtime.context.password,
        max_file_mb=settings.max_file_mb,
        max_pages=settings.max_pages,
    )
    data: dict = {"documents": [
        {"source": d.source, "chars": len(d.text), "pages": len(d.pages)} for d in documents
    ]}
    # Budgets count cl100k tokens; where the server tokenizes, measure its model's ratio.
    llm = runtime.context.llm
    ratio = await llm.calibrate([d.text for d in documents])
    if ratio is not None:
        data["served_tokens_per_cl100k"] = round(ratio, 4)
        data["token_margin"] = round(llm.token_margin, 4)
    return {
        "documents": documents,
        "trace": [TraceEvent(node="ingest", message=f"read {len(documents)} document(s)",
                             data=data)],
    }


async def chunk(state: GraphState, runtime: Runtime[RunContext]) -> dict:
    """Split the documents into token-bounded chunks with source spans."""
    settings = runtime.context.settings
    chunks = chunk_documents(
        state["documents"], chunk_tokens=settings.chunk_tokens, overlap=settings.chunk_overlap
    )
    return {
        "chunks": chunks,
        "trace": [
            TraceEvent(
                node="chunk",
                message=f"{len(chunks)} chunk(s) of <= {settings.chunk_tokens} tokens",
                data={"tokens": sum(c.tokens for c in chunks)},
            )
        ],
    }


async def verify(state: GraphState, runtime: Runtime[RunContext]) -> dict:
    """Keep the quotes found in the sources; if none, find the evidence sentence in code."""
    draft = state["draft"]
    if not draft.found:
        return {"citations": [], "dropped_quotes": 0, "trace": [TraceEvent(
            node="verify", message="no answer found: nothing to cite")]}
    verifier = CitationVerifier(state["documents"])
    if draft.paragraph_quotes:
        citations, dropped = verify_paragraphs(verifier, draft.paragraph_quotes)
        return {
            "citations": citations,
            "dropped_quotes": dropped,
            "trace": [TraceEvent(
                node="verify",
                message=f"{len(citations)} citation(s) verified for "
                        f"{len(draft.paragraph_quotes)} paragraph(s), {dropped} quote(s) dropped",
                data={"offered": sum(map(len, draft.paragraph_quotes)),
                      "paragraphs_cited": len({c.paragraph for c in citations})},
            )],
        }
    citations, dropped = verifier.verify_all(draft.quotes)
    located = 0
    if not citations and state.get("task", "qa") == "qa":
        citations, _ = verifier.verify_all(
            verifier.locate_evidence(draft.answer, state["question"])
        )
        located = len(citations)
    return {
        "citations": citations,
        "dropped_quotes": dropped,
        "trace": [
            TraceEvent(
                node="verify",
                message=f"{len(citations)} citation(s) verified, {dropped} quote(s) dropped",
                data={"offered": len(draft.quotes), "located_in_code": located},
            )
        ],
    }


def verify_paragraphs(
    verifier: CitationVerifier, paragraph_quotes: list[list[Quote]]
) -> tuple[list[Citation], int]:
    """Verified citations of each paragraph's quotes, numbered by paragraph (from 1).

    De-duplicated within a paragraph only: one quote may support several paragraphs.
    """
    citations: list[Citation] = []
    dropped = 0
    for number, quotes in enumerate(paragraph_quotes, 1):
        verified, lost = verifier.verify_all(quotes)
        citations += [c.model_copy(update={"paragraph": number}) for c in verified]
        dropped += lost
    return citations, dropped


RETRIEVAL_FILTERED = ("mapreduce", "chain", "memory")


async def select(state: GraphState, runtime: Runtime[RunContext]) -> dict:
    """With ``retrieve_k`` set, restrict a question's reading to the top retrieved chunks."""
    from longdoc.retrieval import retrieve

    settings = runtime.context.settings
    if (not settings.retrieve_k or state.get("task", "qa") != "qa"
            or state["strategy"] not in RETRIEVAL_FILTERED):
        return {}
    retrieval = await asyncio.to_thread(
        retrieve, state["documents"], state["chunks"], state["question"], settings,
        k=settings.retrieve_k, neighbours=settings.retrieve_neighbours,
    )
    return {"selected_chunks": retrieval.selected_chunks,
            "trace": [retrieval.trace_event("select")]}


def build_graph(strategy: str, checkpointer: BaseCheckpointSaver | None = None
                ) -> CompiledStateGraph:
    """The full pipeline with ``strategy``'s subgraph in the middle.

    ``auto`` puts a router there instead, with an edge to each strategy it may choose.
    """
    from longdoc.agents import STRATEGIES
    from longdoc.agents.auto import ROUTES, chosen_route, route

    graph = StateGraph(GraphState, context_schema=RunContext)
    graph.add_node("ingest", ingest)
    graph.add_node("chunk", chunk)
    graph.add_node("verify", verify)
    graph.add_edge(START, "ingest")
    graph.add_edge("ingest", "chunk")
    if strategy == "auto":
        graph.add_node("route", route)
        graph.add_edge("chunk", "route")
        graph.add_conditional_edges("route", chosen_route, list(ROUTES))
        targets = list(ROUTES)
    else:
        graph.add_node("select", select)
        graph.add_edge("chunk", "select")
        graph.add_edge("select", strategy)
        targets = [strategy]
    for name in targets:
        graph.add_node(name, STRATEGIES[name]())
        graph.add_edge(name, "verify")
    graph.add_edge("verify", END)
    return graph.compile(checkpointer=checkpointer)


@cache
def compiled_graph(strategy: str) -> CompiledStateGraph:
    """``build_graph(strategy)`` without a checkpointer, compiled once per process (a
    compiled graph keeps no run state, so runs share it)."""
    return build_graph(strategy)

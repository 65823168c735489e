"""Retrieval-augmented answering: the best chunks of the documents, one answer call.

LongRAG-style long retrieval units: chunks are long (``chunk_tokens``), each is scored
by its best embedded window, and with ``neighbours`` a hit brings the chunks around it;
adjacent or overlapping chunks are merged into one passage before they reach the model.
Citations are verified by the graph's verify node from ``Draft.quotes``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from langgraph.graph import END, START
from langgraph.runtime import Runtime

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.injection import strip_protocol_echo
from longdoc.pipeline.llm import message_tokens
from longdoc.pipeline.models import Chunk, Document, Quote, TraceEvent
from longdoc.pipeline.protocol import parse_answer
from longdoc.pipeline.state import CompiledGraph, Draft, GraphState, RunContext, strategy_graph
from longdoc.pipeline.tokens import count_tokens, encoding
from longdoc.prompts import document_block, get_prompt
from longdoc.prompts.direct import answer_format
from longdoc.retrieval import RetrievalConfig, retrieve

RETRIEVE_NODE = "rag.retrieve"
ANSWER_NODE = "rag.answer"


@dataclass(frozen=True)
class Passage:
    """A contiguous span of one document made of one or more retrieved chunks."""

    doc_index: int
    start: int
    end: int
    chunk_ids: tuple[str, ...]
    best_rank: int  # the best retrieval rank among its chunks (1 = best)


def merge_passages(chunks: list[Chunk], ranks: dict[str, int],
                   documents: list[Document]) -> list[Passage]:
    """The chunks named in ``ranks`` (chunk id -> rank), merged where they overlap or
    only whitespace separates them in the same document, in document order."""
    chosen = sorted((c for c in chunks if c.id in ranks), key=lambda c: (c.doc_index, c.start))
    passages: list[Passage] = []
    for chunk in chosen:
        last = passages[-1] if passages else None
        if last and last.doc_index == chunk.doc_index and (
            chunk.start <= last.end
            or not documents[chunk.doc_index].text[last.end:chunk.start].strip()
        ):
            passages[-1] = Passage(last.doc_index, last.start, max(last.end, chunk.end),
                                   (*last.chunk_ids, chunk.id),
                                   min(last.best_rank, ranks[chunk.id]))
        else:
            passages.append(Passage(chunk.doc_index, chunk.start, chunk.end, (chunk.id,),
                                    ranks[chunk.id]))
    return passages


def fit_passages(passages: list[Passage], documents: list[Document],
                 budget: int) -> tuple[list[tuple[Passage, str]], list[str]]:
    """Passages (with their text) that fit ``budget`` tokens, best-ranked first, returned
    in document order; the ids of chunks left out. If not even the best passage fits, it
    is cut to the budget."""
    kept: list[tuple[Passage, str]] = []
    left_out: list[str] = []
    used = 0
    for passage in sorted(passages, key=lambda p: p.best_rank):
        doc = documents[passage.doc_index]
        text = doc.text[passage.start:passage.end]
        tokens = count_tokens(document_block(doc.source, text))
        if used + tokens <= budget:
            kept.append((passage, text))
            used += tokens
        else:
            left_out.extend(passage.chunk_ids)
    if not kept and passages:
        best = min(passages, key=lambda p: p.best_rank)
        doc = documents[best.doc_index]
        ids = encoding().encode(doc.text[best.start:best.end], disallowed_special=())
        kept = [(best, encoding().decode(ids[:max(0, budget - 30)]))]
        left_out = [cid for cid in left_out if cid not in best.chunk_ids]
    kept.sort(key=lambda pt: (pt[0].doc_index, pt[0].start))
    return kept, left_out


async def retrieve_chunks(state: GraphState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Pick the chunks to read: the best ``k`` for the question (and neighbours)."""
    if state.get("selected_chunks"):
        return {"trace": [TraceEvent(
            node=RETRIEVE_NODE,
            message=f"using {len(state['selected_chunks'])} chunk(s) selected upstream")]}
    settings = runtime.context.settings
    config = RetrievalConfig.from_settings(settings)
    t = time.perf_counter()
    retrieval = await asyncio.to_thread(
        retrieve, state["documents"], state["chunks"], state["question"], settings, config
    )
    event = retrieval.trace_event(RETRIEVE_NODE)
    event.data["elapsed_s"] = round(time.perf_counter() - t, 3)
    return {"selected_chunks": retrieval.selected_chunks, "trace": [event],
            "retrieval_ranks": {h.chunk_id: h.rank for h in retrieval.hits}}


async def answer(state: RagState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Answer from the selected chunks, merged into passages that fit the window."""
    settings, llm = runtime.context.settings, runtime.context.llm
    question = state["question"]
    template = get_prompt(ANSWER_NODE)
    fmt = answer_format(question)
    selected = state.get("selected_chunks") or []
    ranks = state.get("retrieval_ranks") or {cid: i for i, cid in enumerate(selected, 1)}
    window = llm.endpoint.context_window
    fixed = template.render(documents="", question=question, answer_format=fmt)
    budget = llm.prompt_room(fixed, settings.llm.max_answer_tokens)
    if budget <= 0:
        raise InputError(f"the prompt alone (~{message_tokens(fixed)} tokens) leaves no room "
                         f"in the {window}-token window")
    passages = merge_passages(
        state["chunks"], {c: ranks.get(c, len(ranks) + 1) for c in selected},
        state["documents"])
    kept, left_out = fit_passages(passages, state["documents"], budget)
    documents = state["documents"]
    blocks = "\n\n".join(document_block(documents[p.doc_index].source, text) for p, text in kept)
    if not kept:
        return {"draft": Draft(answer="not found", found=False), "trace": [TraceEvent(
            node=ANSWER_NODE, message="nothing retrieved: no answer")]}
    reply = await llm.chat(template.render(documents=blocks, question=question,
                                           answer_format=fmt),
                           node=ANSWER_NODE)
    parsed = parse_answer(strip_protocol_echo(reply, "\n\n".join(t for _, t in kept)))
    sources = {documents[p.doc_index].source for p, _ in kept}
    # A quote is looked for in its passage's document when there is only one.
    only = next(iter(sources)) if len(sources) == 1 else None
    quotes = [Quote(text=q.text, source=q.source or only, origin=q.origin)
              for q in parsed.quotes]
    return {
        "draft": Draft(answer=parsed.answer, quotes=quotes, found=parsed.found),
        "trace": [TraceEvent(
            node=ANSWER_NODE,
            message=f"answered from {len(kept)} passage(s) of "
                    f"{sum(len(p.chunk_ids) for p, _ in kept)} chunk(s)",
            data={"reply": reply,
                  "passages": [{"source": documents[p.doc_index].source, "start": p.start,
                                "end": p.end, "chunks": list(p.chunk_ids)} for p, _ in kept],
                  "left_out_for_budget": left_out,
                  "quotes_offered": len(parsed.quotes)},
        )],
    }


class RagState(GraphState, total=False):
    """The shared state plus the retrieval ranks passed from retrieve to answer."""

    retrieval_ranks: dict[str, int]


def build_rag() -> CompiledGraph:
    """retrieve -> answer."""
    graph = strategy_graph(RagState)
    graph.add_node("retrieve", retrieve_chunks)
    graph.add_node("answer", answer)
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "answer")
    graph.add_edge("answer", END)
    return graph.compile()

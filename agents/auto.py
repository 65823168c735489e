"""The ``auto`` strategy: a router that picks how to read each request, with a reason, and
a reader that widens step by step instead of reading everything.

- a question over 2 to ``full_read_chunks`` chunks: ``mapreduce`` over every chunk, even
  when the whole input fits the direct prompt (on the real-QA development table, reading
  such documents chunk by chunk beat one call; ``benchmarks/realqa.py routes``);
- any other input that fits the direct prompt: ``direct`` (one call, nothing lost);
- a summary that does not fit: ``mapreduce`` over every chunk;
- a question over a larger document: the chunks ranked by retrieval are read with
  ``mapreduce`` in widening rounds (the best 5, then the next 10, then the next 30, ...),
  stopping at the first round whose draft is a supported answer (``answered``) or at the
  budget: ``max_chunks``, ``max_calls`` (LLM calls of the run), ``time_budget_s`` (reading
  time; each round is sized to the time left at the speed measured so far).

The run's ``coverage`` says how much was read (chunks, pages, share of the text) and why
reading stopped. Retrieval's cross-check (dense and BM25 agree on a top chunk) is reported
in the route's reason; an unsure retrieval no longer means reading everything.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any, Literal, cast

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from longdoc.agents.direct import build_direct, direct_budget
from longdoc.agents.mapreduce import build_mapreduce
from longdoc.pipeline.citations import CitationVerifier
from longdoc.pipeline.graph import check_answer
from longdoc.pipeline.grounding import Similarity
from longdoc.pipeline.models import Chunk, Coverage, Document, TraceEvent
from longdoc.pipeline.settings import Settings
from longdoc.pipeline.state import CompiledGraph, GraphState, RunContext, StrategyOutput
from longdoc.retrieval import Hit, Retrieval, retrieve

NODE = "auto.route"
WIDEN_NODE = "auto.widen"
AGREEMENT_RANK = 3


def retrieval_confident(retrieval: Retrieval) -> tuple[bool, str]:
    """Whether dense and BM25 search agree on ``retrieval``'s selection, and why."""
    if retrieval.mode != "hybrid":
        return True, f"{retrieval.mode} retrieval only (no cross-check available)"
    for hit in retrieval.hits:
        if (hit.dense_rank or 99) <= AGREEMENT_RANK and (hit.bm25_rank or 99) <= AGREEMENT_RANK:
            return True, (f"dense and BM25 agree on chunk {hit.chunk_id} (ranks "
                          f"{hit.dense_rank} and {hit.bm25_rank})")
    return False, f"dense and BM25 share no chunk in their top {AGREEMENT_RANK}"


def widths(first: int, limit: int, growth: int) -> list[int]:
    """Cumulative chunks read after each round: ``first``, ×``growth`` each round, ending
    at ``limit`` (5, 15, 45 for 5, 45 and 3)."""
    out = [min(first, limit)]
    while out[-1] < limit:
        out.append(min(out[-1] * growth, limit))
    return out


def round_widths(settings: Settings, limit: int) -> list[int]:
    """``widths`` from the settings: ``retrieval.k`` (else ``retrieval.default_k``) first,
    growing by ``auto.growth``."""
    return widths(settings.retrieval.k or settings.retrieval.default_k, limit,
                  settings.auto.growth)


def round_extra_calls(settings: Settings) -> int:
    """Calls a round may make besides one per chunk: the second look's passages and a
    resolve."""
    return settings.mapreduce.second_look_passages + 1


def reading_order(hits: list[Hit]) -> list[str]:
    """Chunk ids best first, each hit's neighbours (if any were added) right after it."""
    neighbours: dict[str, list[str]] = {}
    for hit in hits:
        if hit.neighbour_of:
            neighbours.setdefault(hit.neighbour_of, []).append(hit.chunk_id)
    order: list[str] = []
    for hit in hits:
        if not hit.neighbour_of:
            order += [hit.chunk_id, *neighbours.get(hit.chunk_id, [])]
    return order


def coverage(documents: list[Document], chunks: list[Chunk], read: set[str] | None,
             stopped: str, reason: str, rounds: list[int] | None = None) -> Coverage:
    """What share of ``chunks`` (all if ``read`` is None) was read, and why it stopped."""
    chosen = chunks if read is None else [c for c in chunks if c.id in read]
    total_tokens = sum(c.tokens for c in chunks) or 1
    pages_total = sum(len(d.pages) for d in documents)
    pages = {(c.doc_index, p) for c in chosen if c.page_start is not None
             for p in range(c.page_start, (c.page_end or c.page_start) + 1)}
    return Coverage(
        chunks_read=len(chosen), chunks_total=len(chunks),
        pages_read=len(pages) if pages_total else None, pages_total=pages_total or None,
        share=round(sum(c.tokens for c in chosen) / total_tokens, 4),
        rounds=rounds or [], stopped=stopped, reason=reason,
    )


def reads_every_chunk(chunk_count: int, settings: Settings) -> bool:
    """Whether a question over ``chunk_count`` chunks reads every one (2 to
    ``auto.full_read_chunks``), even when the input fits the direct prompt."""
    return 1 < chunk_count <= settings.auto.full_read_chunks


async def route(state: GraphState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Choose how to read: direct, every chunk, or widening rounds over ranked chunks (put
    best first in ``selected_chunks``)."""
    settings = runtime.context.settings
    budget = direct_budget(state, settings, runtime.context.llm.window_tokens)
    chunks = state["chunks"]
    update: dict[str, Any] = {}
    data: dict[str, Any] = {"doc_tokens": budget.doc_tokens, "direct_room": budget.room,
                  "chunks": len(chunks)}
    few = reads_every_chunk(len(chunks), settings)
    if budget.fits and not (few and state["task"] == "qa"):
        chosen = "direct"
        reason = f"the input (~{budget.doc_tokens} tokens) fits the window (~{budget.room})"
        update["coverage"] = coverage(state["documents"], chunks, None, "whole",
                                      "the whole input fits the window")
    elif state["task"] == "summary":
        chosen = "mapreduce"
        reason = f"a summary of ~{budget.doc_tokens} tokens, over the window: read every chunk"
    elif few:
        chosen = "mapreduce"
        reason = (f"~{budget.doc_tokens} tokens in {len(chunks)} chunks, few enough to read "
                  f"every one (full_read_chunks {settings.auto.full_read_chunks})"
                  + (": it fits the window, but questions read chunk by chunk scored higher "
                     "than in one call on the development table" if budget.fits else ""))
    else:
        chosen = "mapreduce"
        depth = min(len(chunks), settings.auto.max_chunks)
        retrieval = await asyncio.to_thread(
            retrieve, state["documents"], chunks, state["question"], settings,
            k=depth, neighbours=settings.retrieval.neighbours,
        )
        _, why = retrieval_confident(retrieval)
        data["retrieval"] = retrieval.trace_event(NODE).data
        ranked = reading_order(retrieval.hits)
        # Chunks no list ranked (BM25 lists only chunks with a question word) come last,
        # in document order: a budget may still reach them.
        seen = set(ranked)
        order = [*ranked, *(c.id for c in chunks if c.id not in seen)][:depth]
        plan = round_widths(settings, len(order))
        update["selected_chunks"] = order
        reason = (f"~{budget.doc_tokens} tokens in {len(chunks)} chunks, over the window: "
                  f"read the best retrieved chunks in rounds of up to "
                  f"{' -> '.join(map(str, plan))} until an answer is supported ({why})")
    data["chosen"] = chosen
    return {
        **update,
        "route": {"chosen": chosen, "reason": reason},
        "trace": [TraceEvent(node=NODE, message=f"auto -> {chosen}: {reason}", data=data)],
    }


Route = Literal["direct", "mapreduce"]  # the nodes ``route`` may choose (``ROUTES``)


def chosen_route(state: GraphState) -> Route:
    """The reader node ``route`` picked."""
    return cast(Route, state["route"]["chosen"])


# --- the widening reader -------------------------------------------------------------------


class ReaderState(GraphState, total=False):
    """The reader's own fields: the ranking to widen over and what was read so far."""

    ranking: list[str] | None  # best first; None: read every chunk in one round
    read: list[str]
    rounds: list[int]
    read_started: float  # wall clock (time.time) when the first round started
    calls_before: int  # the run's LLM calls before the first round
    chunks_failed: int  # map calls that failed after their retries, over all rounds
    pages_failed: list[int]
    stop: str  # set when reading is over: why
    answered: bool  # the last round's draft passes verify's check (``answered``)


class ReaderOutput(StrategyOutput, total=False):
    """What the reader passes back: the draft, the trace, and the coverage."""

    coverage: Coverage


def answered(state: GraphState, similar: Similarity | None = None) -> bool:
    """Whether a round's draft passes the final ``verify``'s own check
    (``graph.check_answer``): a record the reader verified only because its quote is in
    the chunk ("the lighthouse repairs" for a vault's code) is no answer, and the next
    round is read."""
    draft = state["draft"]
    return draft.found and check_answer(CitationVerifier(state["documents"]), draft,
                                        state["question"], similar).supported


def _calls(runtime: Runtime[RunContext]) -> int:
    return sum(not call.cached for call in runtime.context.llm.calls)


def next_round(state: ReaderState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Pick the next round's chunks into ``selected_chunks``, or stop (``stop`` and the
    ``coverage``): after a supported answer, when every ranked chunk was read, or when the
    next round would pass a budget."""
    settings = runtime.context.settings
    if "rounds" not in state:  # the first round
        ranking = state.get("selected_chunks")
        update = {"ranking": ranking, "read": [], "rounds": [], "read_started": time.time(),
                  "calls_before": _calls(runtime)}
        if ranking is None:
            return {**update, "selected_chunks": None}
        plan = round_widths(settings, len(ranking))
        first = min(plan[0], _call_room(settings.auto.max_calls, 0, round_extra_calls(settings)))
        return {**update, "selected_chunks": ranking[:first]}
    ranking, read, rounds = state["ranking"], state["read"], state["rounds"]
    stop, why, take = "", "", 0
    if ranking is None:
        stop, why = "whole", "every chunk read"
    elif state["answered"]:
        stop, why = "answer", f"a supported answer after {len(read)} chunk(s)"
    elif len(read) >= len(ranking) and len(ranking) < len(state["chunks"]):
        stop, why = "max_chunks", (f"no supported answer in the best {len(read)} chunks "
                                   f"(max_chunks {settings.auto.max_chunks})")
    elif len(read) >= len(ranking):
        stop, why = "exhausted", f"every chunk read ({len(read)}), no supported answer"
    else:
        target = next(w for w in round_widths(settings, len(ranking)) if w > len(read))
        take = target - len(read)
        calls = _calls(runtime) - state["calls_before"]
        take_calls = _call_room(settings.auto.max_calls, calls, round_extra_calls(settings))
        elapsed = time.time() - state["read_started"]
        take_time = _time_room(settings.auto.time_budget_s, elapsed, len(read))
        if take_calls < 1:
            stop, why = "max_calls", (f"the call budget ({settings.auto.max_calls}) leaves no room "
                                      f"for another round after {calls} call(s)")
        elif take_time < 1:
            stop, why = "time_budget", (
                f"the time budget ({settings.auto.time_budget_s:g}s) leaves no room for another "
                f"round after {elapsed:.0f}s")
        take = min(take, take_calls, take_time)
    if stop:
        final = coverage(state["documents"], state["chunks"],
                         None if ranking is None else set(read), stop, why, rounds)
        return {"stop": stop, "coverage": final.model_copy(update={
            "chunks_failed": state.get("chunks_failed", 0),
            "pages_failed": state.get("pages_failed", [])})}
    assert ranking is not None
    return {"selected_chunks": ranking[len(read):len(read) + take]}


def _call_room(max_calls: int | None, used: int, extra: int) -> int:
    """Chunks a round may read within the call budget (the round may add ``extra`` calls)."""
    if max_calls is None:
        return 10**9
    return max_calls - used - extra


def _time_room(budget_s: float | None, elapsed: float, chunks_read: int) -> int:
    """Chunks that fit the time left at the speed measured so far."""
    if budget_s is None:
        return 10**9
    if elapsed >= budget_s:
        return 0
    per_chunk = elapsed / chunks_read if chunks_read else 0.0
    return math.floor((budget_s - elapsed) / per_chunk) if per_chunk > 0 else 10**9


def after_round(state: ReaderState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Record the round just read and trace it."""
    selected = state.get("selected_chunks")
    chunks = state["chunks"]
    batch = [c.id for c in chunks] if selected is None else list(selected)
    read = [*state["read"], *batch]
    rounds = [*state["rounds"], len(batch)]
    draft = state["draft"]
    found = answered(state, runtime.context.similarity(state["question"]))
    total = len(chunks) if state["ranking"] is None else len(state["ranking"])
    message = (f"round {len(rounds)}: read {len(batch)} chunk(s) ({len(read)} of {total}"
               f"{' ranked' if state['ranking'] is not None else ''}): "
               + ("a supported answer" if found else "no supported answer"))
    # The round's map-reduce reports chunks whose call failed in a coverage of its own:
    # add them up, and clear it so that the next round's report is its own.
    failed = state.get("coverage")
    update: dict[str, Any] = {}
    if failed is not None:
        update = {"coverage": None,
                  "chunks_failed": state.get("chunks_failed", 0) + failed.chunks_failed,
                  "pages_failed": sorted({*state.get("pages_failed", []),
                                          *failed.pages_failed})}
    return {**update, "read": read, "rounds": rounds, "answered": found, "trace": [TraceEvent(
        node=WIDEN_NODE, message=message,
        data={"round": len(rounds), "chunks": batch, "found": found,
              "answer": draft.answer})]}


def continue_or_stop(state: ReaderState) -> Literal["read", "__end__"]:
    return "__end__" if state.get("stop") else "read"  # "__end__" is END


def build_reader() -> CompiledGraph:
    """START -> next -> read (the mapreduce subgraph over ``selected_chunks``) -> record ->
    next ... -> END once ``next`` stops."""
    graph = StateGraph(ReaderState, context_schema=RunContext, output_schema=ReaderOutput)
    graph.add_node("next", next_round)
    graph.add_node("read", build_mapreduce())
    graph.add_node("record", after_round)
    graph.add_edge(START, "next")
    graph.add_conditional_edges("next", continue_or_stop, ["read", END])
    graph.add_edge("read", "record")
    graph.add_edge("record", "next")
    return graph.compile()


# The nodes ``route`` may choose, and how to build each.
ROUTES: dict[Route, Callable[[], CompiledGraph]] = {
    "direct": build_direct, "mapreduce": build_reader,
}

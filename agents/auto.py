"""The ``auto`` strategy: a router that picks a strategy for each request, with a reason.

- the whole input fits the direct prompt: ``direct`` (one call, nothing lost);
- a summary that does not fit: ``mapreduce`` over every chunk;
- a question that does not fit: retrieve the top chunks and run ``mapreduce`` on them
  alone; when retrieval looks unreliable, ``mapreduce`` over every chunk instead.

Retrieval is trusted when dense and BM25 search agree: some hit ranks in the top
``AGREEMENT_RANK`` of both lists. With BM25 alone (no embedder) there is nothing to
cross-check; the router then trusts it and says so in the trace.
"""

from __future__ import annotations

import asyncio

from langgraph.runtime import Runtime

from longdoc.agents.direct import direct_budget
from longdoc.pipeline.models import TraceEvent
from longdoc.pipeline.state import GraphState, RunContext
from longdoc.retrieval import Retrieval, retrieve

NODE = "auto.route"
AUTO_K = 5
AGREEMENT_RANK = 3
ROUTES = ("direct", "mapreduce")


def retrieval_confident(retrieval: Retrieval) -> tuple[bool, str]:
    """Whether to trust ``retrieval``'s selection, and why."""
    if retrieval.mode != "hybrid":
        return True, f"{retrieval.mode} retrieval only (no cross-check available)"
    for hit in retrieval.hits:
        if (hit.dense_rank or 99) <= AGREEMENT_RANK and (hit.bm25_rank or 99) <= AGREEMENT_RANK:
            return True, (f"dense and BM25 agree on chunk {hit.chunk_id} (ranks "
                          f"{hit.dense_rank} and {hit.bm25_rank})")
    return False, f"dense and BM25 share no chunk in their top {AGREEMENT_RANK}"


async def route(state: GraphState, runtime: Runtime[RunContext]) -> dict:
    """Choose the strategy (and, for retrieval-filtered reads, the chunks to read)."""
    settings = runtime.context.settings
    budget = direct_budget(state, settings, runtime.context.llm.window_tokens)
    update: dict = {}
    data: dict = {"doc_tokens": budget.doc_tokens, "direct_room": budget.room}
    if budget.fits:
        chosen = "direct"
        reason = f"the input (~{budget.doc_tokens} tokens) fits the window (~{budget.room})"
    elif state.get("task", "qa") == "summary":
        chosen = "mapreduce"
        reason = f"a summary of ~{budget.doc_tokens} tokens, over the window: read every chunk"
    else:
        chosen = "mapreduce"
        k = settings.retrieve_k or AUTO_K
        retrieval = await asyncio.to_thread(
            retrieve, state["documents"], state["chunks"], state["question"], settings,
            k=k, neighbours=settings.retrieve_neighbours,
        )
        confident, why = retrieval_confident(retrieval)
        data["retrieval"] = retrieval.trace_event(NODE).data
        if confident:
            update["selected_chunks"] = retrieval.selected_chunks
            reason = (f"~{budget.doc_tokens} tokens, over the window: read the top {k} "
                      f"retrieved chunks ({why})")
        else:
            reason = f"~{budget.doc_tokens} tokens; retrieval unsure ({why}): read every chunk"
    data["chosen"] = chosen
    return {
        **update,
        "route": {"chosen": chosen, "reason": reason},
        "trace": [TraceEvent(node=NODE, message=f"auto -> {chosen}: {reason}", data=data)],
    }


def chosen_route(state: GraphState) -> str:
    """The strategy node ``route`` picked."""
    return state["route"]["chosen"]

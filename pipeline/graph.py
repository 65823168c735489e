"""The shared graph: ingest -> chunk -> strategy -> verify citations."""

from __future__ import annotations

import asyncio
import re
from functools import cache
from typing import Any, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from longdoc.pipeline import injection
from longdoc.pipeline.chunking import chunk_documents
from longdoc.pipeline.citations import CitationVerifier
from longdoc.pipeline.grounding import (
    Similarity,
    answer_key,
    best_sentence,
    explanation_spans,
    firm_value,
    firmly_stated,
    fit_answer,
    question_core,
    question_type,
    supporting,
    supports,
    supports_paragraph,
)
from longdoc.pipeline.ingest import load_documents
from longdoc.pipeline.models import Citation, Document, TraceEvent
from longdoc.pipeline.protocol import cut_prompt_echo, unfit_answer
from longdoc.pipeline.state import (
    NOT_FOUND_ANSWER,
    CompiledGraph,
    Draft,
    GraphState,
    Request,
    RunContext,
)


async def ingest(state: GraphState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Read every input file into a ``Document`` (unless the caller already has)."""
    settings = runtime.context.settings
    await asyncio.to_thread(injection.configure, settings)  # the embedded model's tokens
    documents = state.get("documents") or load_documents(
        state["paths"], password=runtime.context.password, budget=settings.budget)
    data: dict[str, Any] = {"documents": [
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


async def chunk(state: GraphState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Split the documents into token-bounded chunks with source spans."""
    settings = runtime.context.settings
    chunks = chunk_documents(state["documents"], chunk_tokens=settings.documents.chunk_tokens,
                             overlap=settings.documents.chunk_overlap)
    return {
        "chunks": chunks,
        "trace": [
            TraceEvent(
                node="chunk",
                message=f"{len(chunks)} chunk(s) of <= {settings.documents.chunk_tokens} tokens",
                data={"tokens": sum(c.tokens for c in chunks)},
            )
        ],
    }


async def verify(state: GraphState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Keep the quotes that occur in the sources *and* support the answer.

    Questions: a located quote must support the draft answer (``grounding.supporting``:
    it holds the answer's key, or bridges to one that does, and the cited set is about
    the question); others are dropped and counted. With none left, the supporting
    sentence is looked for in code. ``supported`` says whether any citation stands.
    The answer is then fitted to its question (``fit_to_question``: a date, a number, a
    name, yes/no, a phrase, or the cited passages), or refused if it only restates the
    question or echoes the prompt; a question that wants an explanation is answered with
    the document's cited sentences about it (``explain``), and so is one that asks which
    parts of the document say something (the passages verbatim).
    Summaries: each paragraph keeps the quotes that share content words with it.
    """
    draft = state["draft"]
    question = state["question"]
    if state["task"] == "qa" and question_type(question) in ("explain", "passages"):
        return explain(state["documents"], draft, question,
                       runtime.context.similarity(question_core(question)))
    if not draft.found:
        # A refusal in the model's own words ("The document does not contain the answer")
        # is returned as the one refusal message; the words stay in the trace.
        update = ({"draft": draft.model_copy(update={"answer": NOT_FOUND_ANSWER})}
                  if state["task"] == "qa" else {})
        return _verified([], 0, 0, False, "no answer found: nothing to cite",
                         {"draft_answer": draft.answer}) | update
    verifier = CitationVerifier(state["documents"])
    if draft.paragraph_quotes:
        return verify_summary(verifier, draft)
    if state["task"] != "qa":
        citations, dropped = verifier.verify_all(draft.quotes)
        return _verified(citations, dropped, 0, bool(citations),
                         f"{len(citations)} supporting citation(s), {dropped} quote(s) not "
                         "in the source, 0 not supporting the answer",
                         {"offered": len(draft.quotes)})
    check = check_answer(verifier, draft, question, runtime.context.similarity(question))
    message = (f"{len(check.citations)} supporting citation(s), {check.dropped} quote(s) not "
               f"in the source, {check.unsupported} not supporting the answer")
    data = {"offered": len(draft.quotes), "located_in_code": check.located,
            "question_type": question_type(question), "draft_answer": draft.answer}
    if check.weak_answer is not None:
        message += (f"; {check.weak_answer!r} was only stated weakly and {check.answer!r} "
                    "firmly: the firm value is the answer")
        data["weak_answer"] = check.weak_answer
    if check.refused:
        message += f"; the answer {check.refused}: refused"
        data["refused"] = check.refused
    update = {"draft": draft.model_copy(update={"answer": check.answer,
                                                "found": not check.refused})}
    return _verified(check.citations, check.dropped, check.unsupported, check.supported,
                     message if check.supported else message + ": answer unsupported",
                     data) | update


class AnswerCheck(BaseModel):
    """What ``check_answer`` found: the supporting citations, what was dropped on the way,
    the answer fitted to its question, and why it was refused (if it was)."""

    citations: list[Citation]
    dropped: int = Field(0, description="Quotes not found in the source")
    unsupported: int = Field(0, description="Located quotes that do not support the answer")
    located: int = Field(0, description="Supporting sentences found in code instead")
    answer: str
    refused: str | None = None
    weak_answer: str | None = Field(None, description="The draft's answer, replaced because "
                                    "it was only stated weakly and another value firmly")

    @property
    def supported(self) -> bool:
        return bool(self.citations) and self.refused is None


def check_answer(verifier: CitationVerifier, draft: Draft, question: str,
                 similar: Similarity | None = None) -> AnswerCheck:
    """The final check of a question's draft answer (``verify``, and ``auto``'s test of
    whether a round has answered): its quotes must occur in the sources and support it
    (``grounding.supporting``; ``similar`` lets a quote that paraphrases the question be
    about it), never from injected text; with none left, the supporting sentence is
    looked for in code; then the answer is fitted to the question or refused
    (``fit_to_question``)."""
    citations, dropped = verifier.verify_all(draft.quotes)
    kept = [i for i in supporting([c.quote for c in citations], draft.answer, question,
                                  similar)
            if not injection.injected_at(verifier.documents[citations[i].source].text,
                                         citations[i].start, citations[i].end)]
    unsupported = len(citations) - len(kept)
    citations = [citations[i] for i in kept]
    located = 0
    if not citations:
        citations = locate_support(verifier, draft.answer, question, similar)
        located = len(citations)
    answer, weak_answer = draft.answer, None
    key = answer_key(answer, question)
    if citations and not firmly_stated([c.quote for c in citations], key, question):
        documents = list(verifier.documents.values())
        firm = firm_value([injection.blank_injections(d.text) for d in documents], key,
                          question, [c.quote for c in citations])
        if firm is not None:
            value, i, start, end = firm
            weak_answer, answer = answer, value
            citations = [verifier.citation(documents[i], start, end, origin="located")]
    fitted, why = fit_to_question(answer, question, citations)
    return AnswerCheck(citations=[] if why else citations, dropped=dropped,
                       unsupported=unsupported, located=located, answer=fitted, refused=why,
                       weak_answer=weak_answer)


def explain(documents: list[Document], draft: Draft, question: str,
            similar: Similarity | None = None) -> dict[str, Any]:
    """The answer to a question that wants an explanation or asks for passages: the
    document's own sentences about it (``grounding.explanation_spans``, ranked by the
    question's words and the draft's, then by closeness in meaning to the question when
    ``similar`` is given), verbatim and each cited; the draft answer stays in the
    trace."""
    verifier = CitationVerifier(documents)
    texts = [injection.blank_injections(d.text) for d in documents]
    spans = explanation_spans(texts, question, draft.answer if draft.found else "", similar=similar)
    citations = [verifier.citation(documents[i], s, e, origin="located") for i, s, e in spans]
    answer = " ".join(c.quote for c in citations) or NOT_FOUND_ANSWER
    update = _verified(citations, 0, 0, bool(citations),
                       f"an explanation from {len(citations)} cited sentence(s) of the "
                       "document about the question", {
                           "question_type": question_type(question),
                           "draft_answer": draft.answer,
                           "offered": len(draft.quotes)})
    return update | {"draft": draft.model_copy(update={"answer": answer,
                                                        "found": bool(citations)})}


def fit_to_question(answer: str, question: str, citations: list[Citation]
                    ) -> tuple[str, str | None]:
    """The answer in the form its question wants (``grounding.fit_answer``; a question
    for passages gets the verified citations' text), and why it must be refused instead
    (it restates the question or echoes the prompt: ``protocol.unfit_answer``), if so.
    Prompt text the model ran on into after an answer is cut first
    (``protocol.cut_prompt_echo``)."""
    if question_type(question) == "passages" and citations:
        fitted = " ".join(c.quote for c in citations)
    else:
        fitted = fit_answer(cut_prompt_echo(answer), question, [c.quote for c in citations])
    why = unfit_answer(fitted, question)
    if not fitted.strip():
        why = "echoes the prompt" if answer.strip() else "is empty"
    return (NOT_FOUND_ANSWER, why) if why else (fitted, None)


def _verified(citations: list[Citation], dropped: int, unsupported: int, supported: bool,
              message: str, data: dict[str, Any]) -> dict[str, Any]:
    """The state update of ``verify``, with its trace event."""
    return {
        "citations": citations, "dropped_quotes": dropped,
        "unsupported_citations": unsupported, "supported": supported,
        "trace": [TraceEvent(node="verify", message=message, data={
            **data, "unsupported": unsupported, "supported": supported})],
    }


def locate_support(verifier: CitationVerifier, answer: str, question: str,
                   similar: Similarity | None = None) -> list[Citation]:
    """The sentence of each document that supports ``answer`` best, found in code."""
    key = answer_key(answer, question)
    found = []
    for doc in verifier.documents.values():
        span = best_sentence(injection.blank_injections(doc.text), key, question,
                             similar=similar)
        if span is not None and supports(doc.text[span[0]:span[1]], answer, question,
                                         similar):
            found.append(verifier.citation(doc, *span, origin="located"))
    return found


def verify_summary(verifier: CitationVerifier, draft: Draft) -> dict[str, Any]:
    """Verified citations of each paragraph's quotes, numbered by paragraph (from 1).

    A quote must occur in the source and fit its paragraph
    (``grounding.supports_paragraph``). De-duplicated within a paragraph only: one quote
    may support several paragraphs. ``supported``: every paragraph keeps a citation.
    """
    paragraphs = [p for p in re.split(r"\n\s*\n", draft.answer) if p.strip()]
    citations: list[Citation] = []
    dropped = unsupported = 0
    for number, quotes in enumerate(draft.paragraph_quotes, 1):
        verified, lost = verifier.verify_all(quotes)
        dropped += lost
        paragraph = paragraphs[number - 1] if number <= len(paragraphs) else ""
        fitting = [c for c in verified if supports_paragraph(c.quote, paragraph)]
        unsupported += len(verified) - len(fitting)
        citations += [c.model_copy(update={"paragraph": number}) for c in fitting]
    cited = {c.paragraph for c in citations}
    supported = bool(paragraphs) and all(n in cited for n in range(1, len(paragraphs) + 1))
    return _verified(
        citations, dropped, unsupported, supported,
        f"{len(citations)} citation(s) verified for {len(draft.paragraph_quotes)} "
        f"paragraph(s), {dropped} quote(s) dropped, {unsupported} not about their paragraph",
        {"offered": sum(map(len, draft.paragraph_quotes)), "paragraphs_cited": len(cited)})


async def select(state: GraphState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """With ``retrieve_k`` set, restrict a question's reading to the top retrieved chunks."""
    from longdoc.agents import STRATEGIES
    from longdoc.retrieval import retrieve

    settings = runtime.context.settings
    if (not settings.retrieval.k or state["task"] != "qa"
            or not STRATEGIES[state["strategy"]].reads_retrieved):
        return {}
    retrieval = await asyncio.to_thread(
        retrieve, state["documents"], state["chunks"], state["question"], settings,
        k=settings.retrieval.k, neighbours=settings.retrieval.neighbours,
    )
    return {"selected_chunks": retrieval.selected_chunks,
            "trace": [retrieval.trace_event("select")]}


def build_graph(strategy: str, checkpointer: BaseCheckpointSaver[Any] | None = None
                ) -> CompiledGraph:
    """The full pipeline with ``strategy``'s subgraph in the middle.

    ``auto`` puts a router there instead, with an edge to each strategy it may choose.
    """
    from longdoc.agents import STRATEGIES
    from longdoc.agents.auto import ROUTES, Route, chosen_route, route

    graph = StateGraph(GraphState, context_schema=RunContext, input_schema=Request)
    graph.add_node("ingest", ingest)
    graph.add_node("chunk", chunk)
    graph.add_node("verify", verify)
    graph.add_edge(START, "ingest")
    graph.add_edge("ingest", "chunk")
    if strategy == "auto":
        graph.add_node("route", route)
        graph.add_edge("chunk", "route")
        graph.add_conditional_edges("route", chosen_route, list(ROUTES))
        targets: list[str] = list(ROUTES)
    else:
        graph.add_node("select", select)
        graph.add_edge("chunk", "select")
        graph.add_edge("select", strategy)
        targets = [strategy]
    for name in targets:
        graph.add_node(name, ROUTES[cast(Route, name)]() if strategy == "auto"
                       else STRATEGIES[name].build())
        graph.add_edge(name, "verify")
    graph.add_edge("verify", END)
    return graph.compile(checkpointer=checkpointer)


@cache
def compiled_graph(strategy: str) -> CompiledGraph:
    """``build_graph(strategy)`` without a checkpointer, compiled once per process (a
    compiled graph keeps no run state, so runs share it)."""
    return build_graph(strategy)

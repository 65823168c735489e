"""Direct long-context path: the whole input in one prompt, for comparison."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from langgraph.graph import END, START
from langgraph.runtime import Runtime

from longdoc.pipeline.errors import InputError, OverBudgetError
from longdoc.pipeline.injection import strip_protocol_echo
from longdoc.pipeline.llm import message_tokens, prompt_room
from longdoc.pipeline.models import Document, TraceEvent
from longdoc.pipeline.protocol import ParsedReply, parse_answer
from longdoc.pipeline.settings import Settings
from longdoc.pipeline.state import CompiledGraph, Draft, GraphState, RunContext, strategy_graph
from longdoc.pipeline.tokens import count_tokens, encoding
from longdoc.prompts import document_block, get_prompt
from longdoc.prompts.direct import answer_format

NODE = "direct.answer"
SUMMARY_NODE = "direct.summary"


def _truncate(documents: list[Document], budget: int) -> tuple[list[tuple[str, str]], int]:
    """(source, text) pairs cut to ``budget`` cl100k tokens in all, and tokens cut."""
    enc, out, cut = encoding(), [], 0
    for doc in documents:
        tokens = enc.encode(doc.text, disallowed_special=())
        keep = max(0, min(len(tokens), budget))
        out.append((doc.source, enc.decode(tokens[:keep])))
        cut += len(tokens) - keep
        budget -= keep
    return out, cut


def _request(state: GraphState, answer_tokens: int) -> tuple[str, dict[str, str], int]:
    """Template name, its fields other than the documents, and the reply's token budget.

    A question gets ``direct.answer``; a summary (task "summary") ``direct.summary``.
    """
    if state["task"] == "summary":
        from longdoc.agents.mapreduce_summary import paragraph_count, summary_tokens

        words = state["words"]
        fields = {"words": str(words), "paragraphs": str(paragraph_count(words))}
        return SUMMARY_NODE, fields, summary_tokens(words) + 150  # and the Quote: lines
    question = state["question"]
    return NODE, {"question": question, "answer_format": answer_format(question)}, answer_tokens


class DirectBudget(NamedTuple):
    """How the whole input compares with the room the direct prompt leaves for it."""

    doc_tokens: int
    room: int
    overhead: int
    answer_tokens: int

    @property
    def fits(self) -> bool:
        return 0 < self.doc_tokens <= self.room


def direct_budget(state: GraphState, settings: Settings, window_tokens: int) -> DirectBudget:
    """Tokens of the documents and of the room for them in the direct prompt
    (``window_tokens``: the served window in cl100k tokens, ``LLMClient.window_tokens``)."""
    node, fields, answer_tokens = _request(state, settings.llm.max_answer_tokens)
    rendered = get_prompt(node).render(documents="", **fields)
    overhead = message_tokens(rendered)
    room = prompt_room(window_tokens, rendered, answer_tokens)
    doc_tokens = sum(count_tokens(document_block(d.source, d.text)) for d in state["documents"])
    return DirectBudget(doc_tokens, room, overhead, answer_tokens)


async def answer(state: GraphState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Answer (or summarize) over every document at once, if the prompt fits the window."""
    settings, llm = runtime.context.settings, runtime.context.llm
    node, fields, _ = _request(state, settings.llm.max_answer_tokens)
    template = get_prompt(node)
    texts = [(doc.source, doc.text) for doc in state["documents"]]
    window = llm.endpoint.context_window
    doc_tokens, budget, overhead, answer_tokens = direct_budget(state, settings,
                                                                llm.window_tokens)
    trace = []
    if budget <= 0:
        raise InputError(
            f"the {'question' if node == NODE else 'prompt'} alone (~{overhead} tokens) leaves "
            f"no room in the {window}-token window"
        )
    if doc_tokens > budget:
        if not settings.direct.truncate:
            raise OverBudgetError(
                f"the documents have ~{doc_tokens} tokens but the direct path fits ~{budget} "
                f"(window {window}, answer {answer_tokens}, margin "
                f"{llm.token_margin:.3g}); use another strategy or --truncate"
            )
        texts, cut = _truncate(state["documents"], budget - 20 * len(texts))
        trace.append(TraceEvent(node=node, message=f"truncated {cut} tokens to fit the window"))
    documents = "\n\n".join(document_block(s, t) for s, t in texts)
    reply = await llm.chat(template.render(documents=documents, **fields), node=node,
                           max_tokens=answer_tokens)
    read = strip_protocol_echo(reply, "\n\n".join(t for _, t in texts))
    parsed = parse_summary(read) if node == SUMMARY_NODE else parse_answer(read)
    trace.append(
        TraceEvent(
            node=node,
            message="answered from the whole input",
            data={"reply": reply, "prompt_tokens_cl100k": doc_tokens + overhead,
                  "quotes_offered": len(parsed.quotes)},
        )
    )
    return {
        "draft": Draft(answer=parsed.answer, quotes=parsed.quotes, found=parsed.found),
        "trace": trace,
    }


def parse_summary(reply: str) -> ParsedReply:
    """A summary reply: the text before its first "Quote:" line, and the quotes."""
    quotes = parse_answer(reply).quotes
    body = re.split(r"^\s*[*_]*\s*quotes?\s*[*_]*\s*:", reply.strip(), maxsplit=1,
                    flags=re.I | re.M)[0]
    body = re.sub(r"^\s*[*_#]*\s*summary\s*[*_]*\s*:?\s*[*_]*\s*", "", body.strip(), flags=re.I)
    return ParsedReply(answer=body.strip(), quotes=quotes, found=bool(body.strip()))


def build_direct() -> CompiledGraph:
    """One node: answer from the whole input."""
    graph = strategy_graph()
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile()

"""Direct long-context path: the whole input in one prompt, for comparison."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.models import Document, TraceEvent
from longdoc.pipeline.protocol import parse_answer
from longdoc.pipeline.state import Draft, GraphState, RunContext
from longdoc.pipeline.tokens import count_tokens, encoding
from longdoc.prompts import document_block, get_prompt

NODE = "direct.answer"


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


async def answer(state: GraphState, runtime: Runtime[RunContext]) -> dict:
    """Ask the question over every document at once, if the prompt fits the window."""
    settings, llm = runtime.context.settings, runtime.context.llm
    template = get_prompt(NODE)
    question = state["question"]
    texts = [(doc.source, doc.text) for doc in state["documents"]]
    window = llm.endpoint.context_window
    overhead = count_tokens("".join(m["content"] for m in template.render(
        documents="", question=question)))
    budget = int(window / settings.token_margin) - settings.max_answer_tokens - overhead
    doc_tokens = sum(count_tokens(document_block(s, t)) for s, t in texts)
    trace = []
    if budget <= 0:
        raise InputError(
            f"the question alone (~{overhead} tokens) leaves no room in the {window}-token window"
        )
    if doc_tokens > budget:
        if not settings.truncate:
            raise InputError(
                f"the documents have ~{doc_tokens} tokens but the direct path fits ~{budget} "
                f"(window {window}, answer {settings.max_answer_tokens}, margin "
                f"{settings.token_margin:g}); use another strategy or --truncate"
            )
        texts, cut = _truncate(state["documents"], budget - 20 * len(texts))
        trace.append(TraceEvent(node=NODE, message=f"truncated {cut} tokens to fit the window"))
    documents = "\n\n".join(document_block(s, t) for s, t in texts)
    reply = await llm.chat(template.render(documents=documents, question=question), node=NODE)
    parsed = parse_answer(reply)
    trace.append(
        TraceEvent(
            node=NODE,
            message="answered from the whole input",
            data={"reply": reply, "prompt_tokens_cl100k": doc_tokens + overhead,
                  "quotes_offered": len(parsed.quotes)},
        )
    )
    return {
        "draft": Draft(answer=parsed.answer, quotes=parsed.quotes, found=parsed.found),
        "trace": trace,
    }


def build_direct() -> CompiledStateGraph:
    """One node: answer from the whole input."""
    graph = StateGraph(GraphState, context_schema=RunContext)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile()

"""Sequential reading, shared by ``chain`` (Chain of Agents) and ``memory`` (MemAgent).

Both read the document part by part, in order, carrying a bounded text from one step to
the next, and answer from that text alone. What they carry has two halves:

notes      plain text the model writes (the communication unit / the memory). The model
           rewrites it at every step; it is never trusted as evidence.
evidence   verified quotes (``Evidence``: absolute offsets, ``text[start:end] == quote``)
           found *in code* after each step: sentences of the model's reply that occur in
           the part just read, and the part's sentences that hold the question's key
           words, or the names of evidence already carried (the bridge of a two-hop
           question). Instruction-like text is never evidence.

The budget (tokens of notes plus quotes) is enforced in code after every step: quotes
over their share are dropped most-relevant-last and listed in the trace; notes over what
is left are compressed by a model call, and if still over, their least relevant
sentences are dropped (listed in the trace). The final answer is accepted only if its key
(numbers, else names, else words) occurs in a carried quote; those quotes become the
draft's citations. Each step is one pass of a LangGraph loop (``step`` -> ``step`` ... ->
``answer``) whose progress lives in ``SequentialState`` (``segments``, ``step``, ``notes``,
``carried_quotes``), so a checkpointer can resume after any step.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from langgraph.graph import END, START
from langgraph.runtime import Runtime

from longdoc.pipeline.chunking import chunk_documents
from longdoc.pipeline.citations import locate
from longdoc.pipeline.errors import InputError
from longdoc.pipeline.folding import normalize
from longdoc.pipeline.grounding import (
    acceptable,
    answer_key,
    answer_keys,
    content_tokens,
    count_keys,
    firmly_stated,
    is_steering,
    overlap,
    question_keys,
    relevance,
    sentences,
    stance,
)
from longdoc.pipeline.injection import blank_injections, neutralize
from longdoc.pipeline.llm import LLMClient
from longdoc.pipeline.models import Chunk, Quote, TraceEvent
from longdoc.pipeline.protocol import parse_answer
from longdoc.pipeline.settings import Settings
from longdoc.pipeline.state import (
    NOT_FOUND_ANSWER,
    CompiledGraph,
    Draft,
    Evidence,
    GraphState,
    RunContext,
    strategy_graph,
)
from longdoc.pipeline.tokens import count_tokens
from longdoc.prompts import PromptTemplate, document_block, fragments, get_prompt

MAX_EVIDENCE_CHARS = 400  # a longer located span is narrowed to its best sentence
MAX_NEW_EVIDENCE_PER_STEP = 2
MIN_NOTES_SHARE = 0.25  # quotes may take at most 1 - this of the budget
MAX_CITED = 3
TRACE_REPLY_CHARS = 500
RECURSION_LIMIT = 100_000  # one superstep per part read; documents decide the count
DEFAULT_SUMMARY_GOAL = "the main points of the whole document"


@dataclass(frozen=True)
class ReaderSpec:
    """What distinguishes one sequential strategy: names, its budget and part size in the
    settings, first notes."""

    name: str
    step_node: str
    answer_node: str
    compress_node: str
    budget: Callable[[Settings], int]  # tokens of notes plus carried quotes
    budget_name: str  # the setting's name, for messages
    initial_notes: str
    segment_tokens: Callable[[Settings], int | None] = lambda settings: None  # None: chunks


# --- evidence: keys, scores, candidates --------------------------------------------------


def question_threshold(keys: list[str]) -> int:
    """Question words a sentence needs to be carried: two, or all if fewer."""
    return min(2, len(keys))


def bridge_keys(carried: list[Evidence], question: str) -> set[str]:
    """Names and numbers of strongly relevant carried quotes, not words of the question.

    They let a later part's sentence join the evidence when it speaks of what an earlier
    quote named ("A's code is B's room number" ... "B's room is 4127"). The first word
    of a quote is skipped: capitalized only because it starts a sentence.
    """
    keys = question_keys(question)
    need = question_threshold(keys)
    out: set[str] = set()
    if not need:
        return out
    for ev in carried:
        if count_keys(keys, ev.text) >= need:
            rest = ev.text.split(None, 1)[1] if " " in ev.text.strip() else ""
            out |= {k for k, w in answer_keys(rest, question).items() if w >= 2}
    return out


def score_qa(text: str, keys: list[str], bridge: set[str]) -> tuple[int, int]:
    """(question words, bridge names) in ``text``."""
    return count_keys(keys, text), count_keys(bridge, text)


def qa_accepts(score: tuple[int, ...], keys: list[str], bridge: set[str]) -> bool:
    q, b = score
    need = question_threshold(keys)
    return (need > 0 and q >= need) or (bool(bridge) and b >= min(2, len(bridge)))


def central_sentence(chunk: Chunk) -> tuple[int, int] | None:
    """The sentence whose words recur most in its chunk: a code-found key point."""
    counts = Counter(content_tokens(chunk.text))
    best, best_score = None, 0.0
    for s, e in sentences(blank_injections(chunk.text)):
        words = content_tokens(chunk.text[s:e])
        if len(words) < 4 or is_steering(chunk.text[s:e]):
            continue
        score = sum(counts[w] - 1 for w in set(words)) / len(set(words)) ** 0.5
        if score > best_score:
            best, best_score = (s, e), score
    return best


def reply_candidates(reply: str) -> list[str]:
    """Candidate quotes in a reply: quoted or labelled passages, then each sentence."""
    found = [q.text for q in parse_answer(reply).quotes]
    found += [reply[s:e] for s, e in sentences(reply)]
    return list(dict.fromkeys(c.strip() for c in found if c.strip()))


def _narrow(chunk: Chunk, span: tuple[int, int], rate: Callable[[str], tuple[int, ...]]
            ) -> tuple[int, int] | None:
    """A span short enough to carry: itself, or its best sentence by ``rate``."""
    if span[1] - span[0] <= MAX_EVIDENCE_CHARS:
        return span
    inner = [(rate(chunk.text[s:e]), (s, e)) for s, e in sentences(chunk.text, *span)
             if e - s <= MAX_EVIDENCE_CHARS]
    return max(inner)[1] if inner else None


def enclosing(text: str, span: tuple[int, int]) -> str:
    """The sentences of ``text`` that ``span`` touches: a fragment is judged in context
    (a clean-looking piece of an injected instruction is still part of it)."""
    touched = [(s, e) for s, e in sentences(text) if s < span[1] and span[0] < e]
    if not touched:
        return text[span[0]:span[1]]
    return text[min(span[0], touched[0][0]):max(span[1], touched[-1][1])]


@dataclass
class Candidate:
    start: int
    end: int
    origin: Literal["model", "located"]
    score: tuple[int, ...]


def find_evidence(
    chunk: Chunk, reply: str, question: str, task: str, carried: list[Evidence], notes: str
) -> tuple[list[Evidence], dict[str, Any]]:
    """Verified quotes this step adds, found in the chunk's own text, and trace notes."""
    text = blank_injections(chunk.text)  # same offsets; fake system paragraphs blanked
    norm = normalize(text)
    keys, bridge = question_keys(question), bridge_keys(carried, question)
    qa = task != "summary"

    def rate(sentence: str) -> tuple[int, ...]:
        return score_qa(sentence, keys, bridge) if qa else (overlap(sentence, notes),)

    candidates: list[Candidate] = []
    not_in_part = rejected = 0
    for quote in reply_candidates(reply):
        span = locate(quote, text, norm)
        if span is None:
            not_in_part += 1
            continue
        span = _narrow(chunk, span, rate)
        if span is None or is_steering(enclosing(text, span)):
            rejected += 1
            continue
        score = rate(text[span[0]:span[1]])
        if (qa and not qa_accepts(score, keys, bridge) and sum(score) == 0) or \
                (not qa and len(content_tokens(text[span[0]:span[1]])) < 4):
            rejected += 1
            continue
        candidates.append(Candidate(*span, "model", score))
    if qa:
        for s, e in sentences(text):
            if e - s > MAX_EVIDENCE_CHARS or is_steering(text[s:e]):
                continue
            score = rate(text[s:e])
            if qa_accepts(score, keys, bridge):
                candidates.append(Candidate(s, e, "located", score))
    elif not candidates:
        span = central_sentence(chunk)
        if span is not None:
            candidates.append(Candidate(*span, "located", (0,)))
    held = [(ev.source, ev.start, ev.end) for ev in carried]
    chosen: list[Candidate] = []
    for cand in sorted(candidates, key=lambda c: (sum(c.score), c.origin == "model"),
                       reverse=True):
        a, b = chunk.start + cand.start, chunk.start + cand.end
        if any(src == chunk.source and s < b and a < e for src, s, e in held):
            continue
        if any(c.start < cand.end and cand.start < c.end for c in chosen):
            continue
        chosen.append(cand)
        if len(chosen) == MAX_NEW_EVIDENCE_PER_STEP:
            break
    chosen.sort(key=lambda c: c.start)
    added = [Evidence(source=chunk.source, start=chunk.start + c.start, end=chunk.start + c.end,
                      text=text[c.start:c.end], origin=c.origin) for c in chosen]
    return added, {"reply_quotes_not_in_part": not_in_part, "reply_quotes_rejected": rejected,
                   "candidates": len(candidates)}


def evidence_rank(ev: Evidence, question: str, task: str, carried: list[Evidence],
                  notes: str) -> tuple[int, int, int]:
    """Higher is kept first under the budget: relevance, then the model's own quotes."""
    if task == "summary":
        return (overlap(ev.text, notes), 0, int(ev.origin == "model"))
    q, b = score_qa(ev.text, question_keys(question), bridge_keys(carried, question))
    return (q + b, q, int(ev.origin == "model"))


# --- the budget ----------------------------------------------------------------------------


def render_evidence(evidence: list[Evidence]) -> str:
    """Carried quotes as the model sees them, one per line."""
    if not evidence:
        return fragments.NO_CARRIED_QUOTES
    return "\n".join(fragments.CARRIED_QUOTE.format(quote=neutralize(ev.text)) for ev in evidence)


def render_unit(notes: str, evidence: list[Evidence]) -> str:
    """The whole carried text (notes and quotes) shown to the next step."""
    if not evidence:
        return neutralize(notes, protocol=False)
    return fragments.CARRIED_UNIT.format(notes=neutralize(notes, protocol=False),
                                         quotes=render_evidence(evidence))


def evidence_spans(evidence: list[Evidence]) -> list[tuple[int, int]]:
    """Where each quote's text lies in ``render_evidence(evidence)``."""
    before, _, after = fragments.CARRIED_QUOTE.partition("{quote}")
    spans, at = [], 0
    for ev in evidence:
        start = at + len(before)
        end = start + len(neutralize(ev.text))
        spans.append((start, end))
        at = end + len(after) + 1  # and the newline between quotes
    return spans


def unit_regions(notes: str, evidence: list[Evidence]) -> dict[str, list[tuple[int, int]]]:
    """Where the notes and each quote lie in ``render_unit(notes, evidence)`` (the step
    prompt's ``Regions``, for a simulated model)."""
    shown = [(0, len(neutralize(notes, protocol=False)))]
    if not evidence:
        return {"notes": shown, "quotes": []}
    head = len(fragments.CARRIED_UNIT.partition("{quotes}")[0].format(
        notes=neutralize(notes, protocol=False)))
    return {"notes": shown, "quotes": [(head + s, head + e) for s, e in evidence_spans(evidence)]}


def evidence_tokens(evidence: list[Evidence]) -> int:
    return sum(count_tokens(f'- "{ev.text}"\n') for ev in evidence)


def fit_evidence(
    evidence: list[Evidence], limit: int, rank: Callable[[Evidence], tuple[int, ...]]
) -> tuple[list[Evidence], list[Evidence]]:
    """Keep the highest ranked quotes within ``limit`` tokens, in document order."""
    ranked = sorted(evidence, key=rank, reverse=True)
    kept, dropped, used = [], [], 0
    for ev in ranked:
        cost = evidence_tokens([ev])
        if used + cost <= limit:
            kept.append(ev)
            used += cost
        else:
            dropped.append(ev)
    order = {id(ev): i for i, ev in enumerate(evidence)}
    return sorted(kept, key=lambda e: order[id(e)]), dropped


def trim_notes(notes: str, limit: int, rate: Callable[[str], int]) -> tuple[str, list[str]]:
    """Drop the least relevant sentences of ``notes`` until it fits ``limit`` tokens.

    Notes are the model's own text, never evidence; what is dropped is returned for the
    trace. A single sentence still over the limit is cut at a word, and that is reported.
    """
    spans = sentences(notes) or [(0, len(notes))]
    parts = [notes[s:e] for s, e in spans]
    dropped: list[str] = []
    while len(parts) > 1 and count_tokens(" ".join(parts)) > limit:
        worst = min(range(len(parts)), key=lambda i: (rate(parts[i]), -i))
        dropped.append(parts.pop(worst))
    text = " ".join(parts)
    if count_tokens(text) > limit:
        words = text.split()
        while words and count_tokens(" ".join(words)) > limit:
            words.pop()
        dropped.append("[cut] " + text[len(" ".join(words)):].strip())
        text = " ".join(words)
    return text, dropped


def clean_reply(reply: str) -> str:
    """The model's notes: the reply without blank-line runs or outer whitespace."""
    return re.sub(r"\n\s*\n+", "\n", reply.strip())


# --- the strategy's graph ------------------------------------------------------------------


class SequentialState(GraphState, total=False):
    """The chain/memory subgraph's state: the shared keys plus the reading's progress."""

    segments: list[Chunk]  # the parts read in order
    step: int  # parts read so far
    notes: str  # the model-written communication unit / memory
    carried_quotes: list[Evidence]  # verified quotes carried along


def _goal(state: SequentialState) -> str:
    question = state["question"].strip()
    if state["task"] == "summary":
        return question or DEFAULT_SUMMARY_GOAL
    return question


def _prompt(node: str, task: str) -> PromptTemplate:
    return get_prompt(f"{node}.summary" if task == "summary" else node)


def reading_list(state: SequentialState, settings: Settings, spec: ReaderSpec) -> list[Chunk]:
    """The parts to read, in document order: chunks (all or ``selected_chunks``), or
    segments of ``spec.segment_tokens`` tokens cut from the documents when that is set."""
    selected = state.get("selected_chunks")
    size = spec.segment_tokens(settings)
    if selected is None and size and state.get("documents"):
        return chunk_documents(state["documents"], chunk_tokens=size, overlap=0)
    chunks = state.get("chunks", [])
    if selected is None:
        return list(chunks)
    wanted = set(selected)
    return [c for c in chunks if c.id in wanted]


# --- the nodes (module-level: each can be run alone with a state and a runtime) -----------


async def prepare(state: SequentialState, runtime: Runtime[RunContext], *,
                  spec: ReaderSpec) -> dict[str, Any]:
    """The parts to read, checked against the step prompt's room, and the first notes."""
    settings, llm = runtime.context.settings, runtime.context.llm
    task = state["task"]
    if task == "qa" and not _goal(state):
        raise InputError("the question is empty")
    segments = reading_list(state, settings, spec)
    budget = spec.budget(settings)
    if segments:
        room = llm.prompt_room(_prompt(spec.step_node, task).render(
            notes="", document=document_block(segments[0].source, ""),
            question=_goal(state), words="0"), 2 * budget)
        largest = max(c.tokens for c in segments)
        if largest > room:
            raise InputError(
                f"a part of ~{largest} tokens does not fit the {spec.name} step prompt "
                f"(~{room} tokens left in the {llm.endpoint.context_window}-token window "
                f"after a {budget}-token {spec.budget_name} and the reply); lower "
                f"chunk_tokens or {spec.budget_name}"
            )
    return {
        "segments": segments, "step": 0, "notes": spec.initial_notes, "carried_quotes": [],
        "trace": [TraceEvent(
            node=f"{spec.name}.prepare",
            message=f"reading {len(segments)} part(s) in order with a {budget}-token "
                    f"{spec.budget_name}",
            data={"parts": [c.id for c in segments], "budget": budget, "task": task,
                  "initial_notes": spec.initial_notes},
        )],
    }


async def fit_notes(llm: LLMClient, spec: ReaderSpec, notes: str, goal: str,
                    kept: list[Evidence], room: int) -> tuple[str, dict[str, Any]]:
    """``notes`` held to ``room`` tokens: compressed by a model call if over, then, if still
    over, their sentences least relevant to the goal and the kept quotes dropped. Returns
    the notes and what was done, for the trace (empty if they fitted)."""
    compression: dict[str, Any] = {}
    if count_tokens(notes) <= room:
        return notes, compression
    compression["notes_tokens"] = count_tokens(notes)
    compressed = clean_reply(await llm.chat(
        get_prompt(spec.compress_node).render(
            notes=neutralize(notes, protocol=False), question=goal,
            words=str(max(10, int(room * 0.75)))),
        node=spec.compress_node, max_tokens=room,
    ))
    compression["compressed_tokens"] = count_tokens(compressed)
    notes = compressed or notes
    if count_tokens(notes) > room:
        keys = question_keys(goal)
        reference = " ".join([goal, *(ev.text for ev in kept)])

        def rate_note(sentence: str) -> int:
            return count_keys(keys, sentence) + overlap(sentence, reference)

        notes, cut = trim_notes(notes, room, rate_note)
        compression["dropped_note_sentences"] = cut
    return notes, compression


def notes_change(before: str, after: str) -> tuple[list[str], list[str]]:
    """The sentences of ``before`` still in ``after`` (by normalized text), and those not."""
    old = {normalize(before[s:e]).text: before[s:e] for s, e in sentences(before)}
    new = {normalize(after[s:e]).text for s, e in sentences(after)}
    return [t for n, t in old.items() if n in new], [t for n, t in old.items() if n not in new]


async def step(state: SequentialState, runtime: Runtime[RunContext], *,
               spec: ReaderSpec) -> dict[str, Any]:
    """Read the next part: the model rewrites the notes, code adds the part's verified
    quotes, and both are held to the budget."""
    settings, llm = runtime.context.settings, runtime.context.llm
    task, goal = state["task"], _goal(state)
    index = state["step"]
    chunk = state["segments"][index]
    before_notes, carried = state["notes"], list(state.get("carried_quotes", []))
    budget = spec.budget(settings)
    room = max(16, budget - evidence_tokens(carried))
    messages = _prompt(spec.step_node, task).render(
        notes=render_unit(before_notes, carried),
        document=document_block(chunk.source, chunk.text),
        question=goal, words=str(max(10, int(room * 0.75))),
    )
    # The reply need not fill the budget: a small model rambles to its limit, and
    # every generated token costs time at every step.
    cap = settings.reader.step_reply_tokens
    reply = await llm.chat(messages, node=spec.step_node, max_tokens=min(room, cap),
                           regions={"notes": unit_regions(before_notes, carried)})
    notes = clean_reply(reply) or before_notes
    added, found = find_evidence(chunk, reply, goal, task, carried, notes)
    pool = carried + added
    kept, dropped_evidence = fit_evidence(
        pool, int(budget * (1 - MIN_NOTES_SHARE)),
        lambda ev: evidence_rank(ev, goal, task, pool, notes))
    notes, compression = await fit_notes(llm, spec, notes, goal, kept,
                                         budget - evidence_tokens(kept))
    notes_kept, notes_dropped = notes_change(before_notes, notes)
    data = {
        "step": index + 1, "part": chunk.id, "previous_notes": before_notes, "notes": notes,
        "reply": reply[:TRACE_REPLY_CHARS],
        "notes_kept": notes_kept,
        "notes_dropped": notes_dropped,
        "evidence_added": [ev.model_dump() for ev in added],
        "evidence_carried": [ev.model_dump() for ev in kept],
        "evidence_dropped": [ev.model_dump() for ev in dropped_evidence],
        "tokens": {"budget": budget, "notes": count_tokens(notes),
                   "evidence": evidence_tokens(kept)},
        **found,
    }
    if compression:
        data["compression"] = compression
    message = (f"part {chunk.id} ({index + 1}/{len(state['segments'])}): "
               f"{len(added)} quote(s) added, {len(kept)} carried")
    if dropped_evidence:
        message += f", {len(dropped_evidence)} verified quote(s) dropped over budget"
    if compression:
        message += ", notes compressed"
    return {"step": index + 1, "notes": notes, "carried_quotes": kept,
            "trace": [TraceEvent(node=spec.step_node, message=message, data=data)]}


def next_node(state: SequentialState) -> Literal["step", "answer"]:
    """Another step while parts are left, else the answer."""
    return "step" if state["step"] < len(state["segments"]) else "answer"


async def answer(state: SequentialState, runtime: Runtime[RunContext], *,
                 spec: ReaderSpec) -> dict[str, Any]:
    """The summary, or the answer, from the last notes and the carried quotes."""
    if state["task"] == "summary":
        return await _summary(state, runtime, spec)
    return await _answer_question(state, runtime, spec)


async def _summary(state: SequentialState, runtime: Runtime[RunContext],
                   spec: ReaderSpec) -> dict[str, Any]:
    """A summary from the last notes; each paragraph cites the carried quotes it shares
    most words with."""
    llm, goal = runtime.context.llm, _goal(state)
    notes, carried = state["notes"], list(state.get("carried_quotes", []))
    words = state["words"]
    reply = await llm.chat(_prompt(spec.answer_node, "summary").render(
        notes=neutralize(notes, protocol=False), evidence=render_evidence(carried),
        question=goal, words=str(words)), node=spec.answer_node,
        max_tokens=max(runtime.context.settings.llm.max_answer_tokens, 2 * words),
        regions={"evidence": {"quotes": evidence_spans(carried)}})
    summary = reply.strip()
    quotes = [Quote(text=ev.text, source=ev.source, origin=ev.origin) for ev in carried]
    by_paragraph = paragraph_quotes(summary, carried)
    return {"draft": Draft(answer=summary, quotes=quotes, found=bool(summary),
                           paragraph_quotes=by_paragraph),
            "trace": [TraceEvent(node=spec.answer_node,
                                 message=f"summary from the last notes and "
                                         f"{len(carried)} carried quote(s)",
                                 data={"reply": reply[:TRACE_REPLY_CHARS],
                                       "paragraph_quotes": [
                                           [q.text for q in p] for p in by_paragraph]})]}


async def _answer_question(state: SequentialState, runtime: Runtime[RunContext],
                           spec: ReaderSpec) -> dict[str, Any]:
    """An answer accepted only if a carried quote holds its key; asked again without the
    notes (the quotes alone) if the first answer is unsupported, and with the firm quotes
    alone if it rests only on hedged, attributed or superseded ones (a rumour read late
    must not overwrite a plain statement read early) - a weak answer stands only when no
    firm one is found."""
    llm, task, goal = runtime.context.llm, state["task"], _goal(state)
    notes, carried = state["notes"], list(state.get("carried_quotes", []))
    firm = [ev for ev in carried if stance(ev.text, [], goal).firm]
    attempts: list[dict[str, Any]] = []

    async def ask(shown_notes: str, shown: list[Evidence]) -> tuple[str, list[Evidence], bool]:
        reply = await llm.chat(_prompt(spec.answer_node, task).render(
            notes=neutralize(shown_notes, protocol=False), evidence=render_evidence(shown),
            question=goal),
            node=spec.answer_node, regions={"evidence": {"quotes": evidence_spans(shown)}})
        parsed = parse_answer(reply)
        key = answer_key(parsed.answer, goal) if parsed.found else []
        support = [ev for ev in shown if acceptable(ev.text, key)]
        steady = firmly_stated([ev.text for ev in support], key, goal)
        attempts.append({"with_notes": shown_notes == notes, "quotes_shown": len(shown),
                         "reply": reply[:TRACE_REPLY_CHARS], "answer": parsed.answer,
                         "key": key, "supported_by": [ev.text for ev in support],
                         "firm": steady})
        return parsed.answer, support, steady

    answer, support, steady = await ask(notes, carried)
    if not support and carried:
        answer, support, steady = await ask("(see the quotes)", carried)
    accepted = (answer, support) if support else None
    if support and not steady and 0 < len(firm) < len(carried):
        firm_answer, firm_found, firm_steady = await ask("(see the quotes)", firm)
        if firm_steady:
            accepted = (firm_answer, firm_found)
    data: dict[str, Any] = {"attempts": attempts, "carried": len(carried)}
    if accepted is None:
        data["decision"] = "not found: no carried quote holds the answer's key"
        return {"draft": Draft(answer=NOT_FOUND_ANSWER, found=False),
                "trace": [TraceEvent(node=spec.answer_node, message=(
                    f"answer {answer!r} is not supported by the "
                    f"{len(carried)} carried quote(s): not found"), data=data)]}
    answer, support = accepted
    cited = cite(support, carried, goal)
    data["cited"] = [ev.text for ev in cited]
    quotes = [Quote(text=ev.text, source=ev.source, origin=ev.origin) for ev in cited]
    return {"draft": Draft(answer=answer, quotes=quotes, found=True),
            "trace": [TraceEvent(node=spec.answer_node, message=(
                f"answer {answer!r} supported by {len(support)} carried quote(s)"),
                data=data)]}


def build_reader(spec: ReaderSpec) -> CompiledGraph:
    """START -> prepare -> step (looping, one part per pass) -> answer -> END."""
    graph = strategy_graph(SequentialState)
    graph.add_node("prepare", partial(prepare, spec=spec))
    graph.add_node("step", partial(step, spec=spec))
    graph.add_node("answer", partial(answer, spec=spec))
    graph.add_edge(START, "prepare")
    graph.add_conditional_edges("prepare", next_node, ["step", "answer"])
    graph.add_conditional_edges("step", next_node, ["step", "answer"])
    graph.add_edge("answer", END)
    return graph.compile().with_config(recursion_limit=RECURSION_LIMIT)


def cite(support: list[Evidence], carried: list[Evidence], question: str) -> list[Evidence]:
    """The quotes to cite: those holding the answer, then the question-relevant quotes
    whose bridge names they mention (the first hop of a two-hop answer)."""
    keys = question_keys(question)
    need = question_threshold(keys)
    chosen = sorted(support, key=lambda ev: relevance(question, ev.text), reverse=True)
    chosen = chosen[:MAX_CITED]
    for ev in carried:
        if ev in chosen or len(chosen) >= MAX_CITED or not need:
            continue
        if count_keys(keys, ev.text) >= need and any(
            count_keys(bridge_keys([ev], question), s.text) for s in chosen
        ):
            chosen.append(ev)
    return chosen


def paragraph_quotes(summary: str, carried: list[Evidence]) -> list[list[Quote]]:
    """For each paragraph of a summary, the carried quotes sharing most words with it.

    Empty (cite all carried quotes) when no paragraph shares two content words with any.
    """
    paragraphs = [p for p in re.split(r"\n\s*\n", summary) if p.strip()]
    out = []
    for paragraph in paragraphs:
        scored = sorted(((overlap(ev.text, paragraph), i) for i, ev in enumerate(carried)),
                        reverse=True)
        out.append([Quote(text=carried[i].text, source=carried[i].source,
                          origin=carried[i].origin)
                    for score, i in scored[:MAX_CITED] if score >= 2])
    return out if any(out) else []

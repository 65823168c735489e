"""Map-reduce QA (LLM×MapReduce) with verified grounding and LongAgent-style conflicts.

map      one call per chunk (LangGraph ``Send`` fan-out): the model answers in the map
         protocol (information, rationale, answer, quote, confidence), read tolerantly.
verify   in code, per record: the model's quotes are located in the chunk's text, or
         the evidence sentence is found in code; a record is *verified* only if its
         answer key (numbers, else names, else words) occurs in that evidence. Records
         without an answer or without verified evidence are demoted: they never reach
         the answer, only the trace.
look     when no verified record's evidence shares a word with the question (the chunk
         holding the answer misread it, and only off-topic phrases verified), the
         sentences that match the question best get a second, short map call each:
         SmolLM2 that misses a fact in 2,000 tokens reads it from two sentences.
reduce   verified records are grouped by answer key; groups whose evidence shares no
         word with the question withdraw if another group's evidence does, and groups
         without *firm* evidence (``grounding.stance``: uncertain, attributed, superseded
         or about a sibling entity) withdraw if another group has firm evidence. One group
         left: the answer is decided in code. Several: a resolution call shows each
         group's evidence side by side and asks which one answers the question. None:
         ``found=False`` with a "not found" answer (unverified guesses only in the trace).
         The model's self-reported confidence only breaks ties that evidence leaves.

Summaries (task "summary") take another branch of the same graph, in
``mapreduce_summary``: map -> key points with quotes -> collapse until they fit -> reduce.

Why not let the model reduce: SmolLM2-135M never says "none" and invents a value in
every chunk without the answer (METHODS.md, "Measured here"); a model reduce picked an
invented value in 13 of 13 trials. Only what the text itself supports may compete.
"""

from __future__ import annotations

import asyncio
import math
import operator
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START
from langgraph.runtime import Runtime
from langgraph.types import Command, Send

from longdoc.pipeline.citations import locate
from longdoc.pipeline.errors import BackendError, InputError
from longdoc.pipeline.folding import normalize
from longdoc.pipeline.grounding import (
    SEMANTIC_ABOUT,
    Similarity,
    Stance,
    acceptable,
    answer_key,
    best_sentence,
    contains,
    count_keys,
    firmly_stated,
    fit_answer,
    is_steering,
    mentions,
    question_keys,
    question_type,
    relevance,
    sentences,
    stance,
)
from longdoc.pipeline.injection import blank_injections, neutralize, strip_protocol_echo
from longdoc.pipeline.llm import Unreachable
from longdoc.pipeline.models import Chunk, Coverage, Quote, TraceEvent
from longdoc.pipeline.protocol import MapReply, parse_map_reply
from longdoc.pipeline.settings import Settings
from longdoc.pipeline.state import (
    NOT_FOUND_ANSWER,
    CompiledGraph,
    Draft,
    Evidence,
    GraphState,
    MapRecord,
    RunContext,
    SummaryRecord,
    strategy_graph,
)
from longdoc.pipeline.tokens import count_tokens
from longdoc.prompts import document_block, fragments, get_prompt
from longdoc.prompts.mapreduce import MAP_LAYOUTS

MAP_NODE = "mapreduce.map"
SUMMARY_MAP_NODE = "mapreduce.summary_map"
REDUCE_NODE = "mapreduce.reduce"
RESOLVE_NODE = "mapreduce.resolve"
SECOND_LOOK_NODE = "mapreduce.second_look"

EVIDENCE_TOKEN_BUDGET = 1500  # verified evidence the reduce keeps (see collapse_to_budget)
MAX_EVIDENCE_CHARS = 400  # a longer model quote is narrowed to its key sentence
MAX_EVIDENCE_PER_OPTION = 2
TRACE_REPLY_CHARS = 500
CONFIDENCE_RANK = {"high": 3, "medium": 2, "low": 1, None: 0}

class MapInput(TypedDict):
    """What one map call receives through ``Send``."""

    chunk: Chunk
    question: str


# --- grounding one reply -----------------------------------------------------------------


def ground_record(chunk: Chunk, question: str, reply: str,
                  similar: Similarity | None = None, passage: bool = False) -> MapRecord:
    """Read one map reply and check its answer against the chunk's own text (``similar``:
    evidence that paraphrases the question is about it, ``grounding.relevance``).

    ``passage``: the chunk is a second look's passage, a sentence or two chosen as the
    best match for the question. When the question wants a date or a number and the
    reply names none ("taken out of service following a storm", read from "... was
    retired in 1931 after a storm ..."), the passage's own value is the answer
    (``grounding.fit_answer`` with the passage as its evidence)."""
    parsed: MapReply = parse_map_reply(strip_protocol_echo(reply, chunk.text))
    if passage and parsed.found and question_type(question) in ("date", "number"):
        parsed = parsed.model_copy(update={
            "answer": fit_answer(parsed.answer, question, [blank_injections(chunk.text)])})
    record = MapRecord(
        chunk_id=chunk.id, source=chunk.source, parsed=parsed.parsed, found=parsed.found,
        answer=parsed.answer, confidence=parsed.confidence, chunk_tokens=chunk.tokens,
        reply=reply,
    )
    if not parsed.parsed:
        record.status = "parse failure: no answer in the reply"
        return record
    if not parsed.found:
        record.status = "no answer in this chunk"
        return record
    record.answer_key = answer_key(parsed.answer, question)
    if not record.answer_key:
        record.status = "demoted: the answer has no key strings to check"
        return record
    spans, notes = _evidence_spans(chunk, question, parsed, record.answer_key, similar)
    record.evidence = [
        Evidence(source=chunk.source, start=chunk.start + s, end=chunk.start + e,
                 text=chunk.text[s:e], origin=origin)
        for s, e, origin in spans
    ]
    record.verified = bool(record.evidence)
    record.relevance = max((relevance(question, ev.text, similar) for ev in record.evidence),
                           default=0)
    record.evidence_tokens = sum(count_tokens(ev.text) for ev in record.evidence)
    if record.verified:
        origins = sorted({ev.origin for ev in record.evidence})
        record.status = f"verified ({'/'.join(origins)} evidence)" + notes
    else:
        record.status = "demoted: the answer key is not in the chunk's text" + notes
    return record


def _evidence_spans(
    chunk: Chunk, question: str, parsed: MapReply, key: list[str],
    similar: Similarity | None = None,
) -> tuple[list[tuple[int, int, str]], str]:
    """Chunk-local spans supporting the answer (model quotes first), and notes for the trace."""
    text = blank_injections(chunk.text)  # same offsets; fake system paragraphs blanked
    norm = normalize(text)
    spans: list[tuple[int, int, str]] = []
    invented = unsupported = 0
    for quote in parsed.quotes:
        span = locate(quote.text, text, norm)
        if span is None:
            invented += 1
            continue
        origin = "model"
        if span[1] - span[0] > MAX_EVIDENCE_CHARS:
            span = best_sentence(text, key, question, *span, similar=similar)
            origin = "located"
        if span is None or not acceptable(text[span[0]:span[1]], key):
            unsupported += 1
        elif not any(s < span[1] and span[0] < e for s, e, _ in spans):
            spans.append((*span, origin))
    if not spans:
        span = best_sentence(text, key, question, similar=similar)
        if span is not None:
            spans.append((*span, "located"))
    notes = []
    if invented:
        notes.append(f"{invented} quote(s) not in the chunk")
    if unsupported:
        notes.append(f"{unsupported} quote(s) without the answer")
    return spans, ("; " + ", ".join(notes)) if notes else ""


def needs_second_look(records: list[MapRecord], question: str) -> bool:
    """Whether no verified record's evidence mentions the question and states its answer
    firmly (``grounding.stance``): when every answer found is hedged, attributed,
    superseded, about a neighbouring entity or close to the question in meaning only
    (which a sentence on a neighbouring subject can be), the plain statement was missed
    by its chunk's reading, and the passages that match the question best are worth a
    look."""
    return not any(r.verified and any(mentions(question, ev.text) for ev in r.evidence)
                   and firmly_stated([ev.text for ev in r.evidence], r.answer_key, question)
                   for r in records)


def second_look_passages(
    chunks: list[Chunk], question: str, limit: int, similar: Similarity | None = None,
) -> list[Chunk]:
    """The passages that match ``question`` best, as small chunks of their own.

    A passage is a sentence holding at least half of the question's key words (and no
    instruction to a model), with the sentence after it. The ``limit`` best by key words,
    then firm before weak (``grounding.stance``: a weak claim withdraws in reduce anyway,
    and a few of them early in the document must not crowd out the statement), then by
    position; a sentence in two overlapping chunks counts once. With ``similar``, when no
    sentence holds half the key words, the sentences closest to the question in meaning
    (at least ``SEMANTIC_ABOUT``) are the passages: the statement that answers a question
    which paraphrases it shares none of its key words.
    """
    keys = question_keys(question)
    if not keys and similar is None:
        return []
    need = math.ceil(len(keys) / 2)
    found: dict[int, tuple[float, bool, Chunk, int, int]] = {}
    candidates: list[tuple[Chunk, int, int, int]] = []  # (chunk, start, end, passage end)
    for chunk in chunks:
        spans = sentences(blank_injections(chunk.text))
        for i, (s, e) in enumerate(spans):
            sentence = chunk.text[s:e]
            if is_steering(sentence) or chunk.start + s in found:
                continue
            end = spans[i + 1][1] if i + 1 < len(spans) else e
            score = count_keys(keys, sentence)
            if keys and score >= need:
                weak = not stance(sentence, [], question).firm
                found[chunk.start + s] = (score, weak, chunk, s, end)
            else:
                candidates.append((chunk, s, e, end))
    if similar is not None and not found:
        close = [(value, c) for value, c in zip(
            similar.many([c[0].text[c[1]:c[2]] for c in candidates]), candidates, strict=True)
            if value >= SEMANTIC_ABOUT]
        for value, (chunk, s, _, end) in sorted(close, key=lambda item: -item[0]):
            if len(found) >= limit:
                break
            found.setdefault(chunk.start + s, (value, False, chunk, s, end))
    best = sorted(found.items(), key=lambda item: (-item[1][0], item[1][1], item[0]))[:limit]
    passages = []
    for n, (_, (_, _, chunk, s, e)) in enumerate(sorted(best, key=lambda item: item[0])):
        text = chunk.text[s:e]
        passages.append(chunk.model_copy(update={
            "id": f"{chunk.id}:look{n}", "start": chunk.start + s, "end": chunk.start + e,
            "text": text, "tokens": count_tokens(text),
        }))
    return passages


# --- grouping, collapse, conflicts --------------------------------------------------------


@dataclass
class AnswerGroup:
    """Verified records that give the same answer key, and how their evidence stands."""

    key: tuple[str, ...]
    records: list[MapRecord] = field(default_factory=list)
    stances: dict[tuple[str, int, int], Stance] = field(default_factory=dict)

    @property
    def support(self) -> int:
        """Distinct evidence spans (overlapping chunks quoting one sentence count once)."""
        return len({(e.source, e.start, e.end) for r in self.records for e in r.evidence})

    @property
    def confidence(self) -> int:
        return max(CONFIDENCE_RANK[r.confidence] for r in self.records)

    @property
    def relevance(self) -> float:
        return max(r.relevance for r in self.records)

    @property
    def weakness(self) -> int:
        """Stance flags of the group's firmest evidence (0: firm; see ``grounding.stance``)."""
        return min((s.flags for s in self.stances.values()), default=0)

    def firmest(self) -> Stance:
        return min(self.stances.values(), key=lambda s: s.flags, default=Stance())

    def rank(self) -> tuple[int, float, int, int]:
        """Evidence first: firmness, aboutness, distinct spans; confidence last."""
        return (-self.weakness, self.relevance, self.support, self.confidence)

    def best(self) -> MapRecord:
        """The record whose answer text stands for the group."""
        return max(self.records, key=lambda r: (r.relevance, CONFIDENCE_RANK[r.confidence],
                                                -len(r.answer)))

    def evidence(self) -> list[Evidence]:
        seen: dict[tuple[str, int, int], Evidence] = {}
        for record in sorted(self.records, key=record_rank, reverse=True):
            for ev in record.evidence:
                seen.setdefault((ev.source, ev.start, ev.end), ev)
        return list(seen.values())

    def summary(self) -> dict[str, Any]:
        return {"key": list(self.key), "answer": self.best().answer, "support": self.support,
                "confidence": self.best().confidence, "relevance": self.relevance,
                "stance": self.firmest().labels(), "chunks": [r.chunk_id for r in self.records]}


def record_rank(record: MapRecord) -> tuple[int, float, int]:
    return (int(record.verified), record.relevance, CONFIDENCE_RANK[record.confidence])


def group_by_answer(records: list[MapRecord], question: str = "") -> list[AnswerGroup]:
    """Groups of records with the same answer key, best ranked first.

    With the ``question``, each group's evidence gets its stance toward the group's value,
    the other groups' values being the rivals a sentence may also name.
    """
    groups: dict[tuple[str, ...], AnswerGroup] = {}
    for record in records:
        key = tuple(record.answer_key)
        groups.setdefault(key, AnswerGroup(key)).records.append(record)
    if question:
        for group in groups.values():
            rivals = [k for other in groups if other != group.key for k in other]
            for ev in group.evidence():
                group.stances[(ev.source, ev.start, ev.end)] = stance(
                    ev.text, list(group.key), question, rivals)
    return sorted(groups.values(), key=AnswerGroup.rank, reverse=True)


def collapse_to_budget(
    records: list[MapRecord], budget: int
) -> tuple[list[MapRecord], list[MapRecord]]:
    """Keep the best verified records whose evidence fits ``budget`` tokens (kept, dropped).

    A simple bounded selection, not LLM×MapReduce's iterative collapse: records are
    ranked by (verified, support of their answer, relevance, confidence) and kept while
    their evidence fits; the best record is always kept. Nothing is summarized, so
    every kept quote is still source text.
    """
    support = {g.key: g.support for g in group_by_answer(records)}
    ranked = sorted(
        records,
        key=lambda r: (int(r.verified), support[tuple(r.answer_key)], r.relevance,
                       CONFIDENCE_RANK[r.confidence]),
        reverse=True,
    )
    kept: list[MapRecord] = []
    dropped: list[MapRecord] = []
    used = 0
    for record in ranked:
        if kept and used + record.evidence_tokens > budget:
            dropped.append(record)
        else:
            kept.append(record)
            used += record.evidence_tokens
    return kept, dropped


def withdraw_irrelevant(
    groups: list[AnswerGroup],
) -> tuple[list[AnswerGroup], list[AnswerGroup]]:
    """LongAgent's "members without evidence withdraw", checked in code: (kept, withdrawn).

    When some verified group's evidence shares a key word with the question, groups
    whose evidence shares none withdraw (a small model verifies trivially by copying
    any sentence, e.g. the document's first line, as its answer). With no relevant
    group at all, nothing withdraws.
    """
    if len(groups) < 2 or max(g.relevance for g in groups) == 0:
        return groups, []
    return [g for g in groups if g.relevance > 0], [g for g in groups if g.relevance == 0]


def withdraw_weak(
    groups: list[AnswerGroup],
) -> tuple[list[AnswerGroup], list[AnswerGroup]]:
    """Groups whose firmest evidence is weaker than another group's withdraw: (kept,
    withdrawn). Weakness counts the stance flags of ``grounding.stance`` (uncertain,
    attributed, superseded, sibling); a group with firm evidence outranks every group
    without, whatever the model's confidence. Equal groups all stay."""
    if len(groups) < 2:
        return groups, []
    least = min(g.weakness for g in groups)
    return [g for g in groups if g.weakness == least], [g for g in groups if g.weakness > least]


def render_options(groups: list[AnswerGroup]) -> str:
    """The conflicting answers side by side, each with its evidence as document text."""
    blocks = []
    for letter, group in zip(_letters(len(groups)), groups, strict=True):
        evidence = "\n".join(
            document_block(ev.source, ev.text)
            for ev in group.evidence()[:MAX_EVIDENCE_PER_OPTION]
        )
        answer = neutralize(group.best().answer, protocol=False)
        blocks.append(fragments.OPTION.format(letter=letter, answer=answer, evidence=evidence))
    return fragments.OPTION_SEPARATOR.join(blocks)


def _letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def parse_choice(reply: str, groups: list[AnswerGroup]) -> tuple[int | None, str]:
    """Which option a resolution reply picks, and how that was read (None: unreadable).

    In order: "Option X"; the answer key of exactly one option; a lone leading letter.
    """
    letters = _letters(len(groups))
    named = re.search(rf"\boption\s*\(?([{''.join(letters)}])\b", reply, re.I)
    if named:
        return letters.index(named.group(1).upper()), "option letter"
    text = normalize(reply).text
    mentioned = [i for i, g in enumerate(groups) if all(contains(text, k) for k in g.key)]
    if len(mentioned) == 1:
        return mentioned[0], "answer named"
    leading = re.match(rf"^\W*([{''.join(letters)}])(?:[\W_]|$)", reply.strip())
    if leading:
        return letters.index(leading.group(1)), "leading letter"
    return None, "unreadable"


# --- nodes --------------------------------------------------------------------------------


class MapReduceState(GraphState, total=False):
    """The mapreduce subgraph's state: the shared keys plus its records."""

    map_records: Annotated[list[MapRecord], operator.add]
    summary_records: Annotated[list[SummaryRecord], operator.add]
    collapsed_records: list[SummaryRecord]


def _chunks_to_read(state: MapReduceState) -> list[Chunk]:
    chunks = state.get("chunks", [])
    selected = state.get("selected_chunks")
    if selected is None:
        return chunks
    wanted = set(selected)
    return [c for c in chunks if c.id in wanted]


def prompt_room(
    runtime: Runtime[RunContext], node: str, answer_tokens: int, **fields: str
) -> int:
    """Tokens left for variable text in ``node``'s prompt (rendered with ``fields``):
    ``LLMClient.prompt_room``, the budget rule every prompt of the strategy follows.
    """
    return runtime.context.llm.prompt_room(get_prompt(node).render(**fields), answer_tokens)


def map_prompt_name(settings: Settings) -> str:
    """The QA map prompt's template in the configured layout
    (``mapreduce.map_prompt_layout``; auto: chunk first on the vllm backend). Its calls are
    accounted to ``MAP_NODE`` in either layout."""
    return MAP_LAYOUTS[settings.mapreduce.map_layout(settings.backend)]


def fan_out(state: MapReduceState, runtime: Runtime[RunContext]
            ) -> list[Send] | Literal["reduce", "collapse"]:
    """One map call per chunk to read (all, or ``selected_chunks``); none: reduce.

    Questions go to ``map``; summaries (task "summary") to ``summary_map``.
    """
    summary = state["task"] == "summary"
    chunks = _chunks_to_read(state)
    if not chunks:
        return "collapse" if summary else "reduce"
    settings = runtime.context.settings
    block = document_block(chunks[0].source, "")
    budget = (
        prompt_room(runtime, SUMMARY_MAP_NODE, settings.llm.max_answer_tokens, document=block,
                    points="8")
        if summary
        else prompt_room(runtime, map_prompt_name(settings), settings.llm.max_answer_tokens,
                         document=block, question=state["question"])
    )
    largest = max(c.tokens for c in chunks)
    if largest > budget:
        raise InputError(
            f"a chunk of ~{largest} tokens does not fit the map prompt (~{budget} tokens left "
            f"in the {runtime.context.llm.endpoint.context_window}-token window); lower "
            "chunk_tokens"
        )
    if summary:
        from longdoc.agents.mapreduce_summary import note_budgets

        note_budgets(state, runtime)  # fail before any call if the summary leaves no room
        return [Send("summary_map", {"chunk": c}) for c in chunks]
    return [Send("map", MapInput(chunk=c, question=state["question"])) for c in chunks]


async def map_chunk(item: MapInput, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Ask the question of one chunk and ground the reply in the chunk's text."""
    return await _map(item, runtime)


async def second_look_chunk(item: MapInput, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The map call on one question-matching passage (see ``second_look``)."""
    return await _map(item, runtime, second_look=True)


async def _map(item: MapInput, runtime: Runtime[RunContext],
               second_look: bool = False) -> dict[str, Any]:
    chunk, question = item["chunk"], item["question"]
    messages = get_prompt(map_prompt_name(runtime.context.settings)).render(
        document=document_block(chunk.source, chunk.text), question=question
    )
    try:
        reply, call = await runtime.context.llm.timed_chat(messages, MAP_NODE)
    except BackendError as error:  # the LLM layer's retries are spent: go on without it
        if (not runtime.context.settings.mapreduce.max_failed_share
                or isinstance(error, Unreachable)):
            raise  # none may fail, or the server is gone: stop the fan-out now
        record = MapRecord(chunk_id=chunk.id, source=chunk.source, parsed=False, failed=True,
                           second_look=second_look, status=f"failed: {error}",
                           chunk_tokens=chunk.tokens)
        return {"map_records": [record], "trace": [TraceEvent(
            node=MAP_NODE, message=f"chunk {chunk.id}: {record.status}",
            data=record.model_dump(exclude={"reply"}))]}
    record = ground_record(chunk, question, reply, runtime.context.similarity(question),
                           passage=second_look)
    record.second_look = second_look
    data = record.model_dump(exclude={"reply"})
    data["reply"] = reply[:TRACE_REPLY_CHARS]
    data["call"] = call
    return {
        "map_records": [record],
        "trace": [TraceEvent(node=MAP_NODE, message=f"chunk {chunk.id}: {record.status}",
                             data=data)],
    }


def second_look(state: MapReduceState, runtime: Runtime[RunContext]) -> Command[str]:
    """Re-read the question's best-matching passages (``mapreduce.second_look_passages``)
    if no verified record states a firm answer about the question (``needs_second_look``)."""
    question = state["question"]
    if not needs_second_look(state.get("map_records", []), question):
        return Command(goto="reduce")
    passages = second_look_passages(_chunks_to_read(state), question,
                                    runtime.context.settings.mapreduce.second_look_passages,
                                    similar=runtime.context.similarity(question))
    if not passages:
        return Command(goto="reduce")
    event = TraceEvent(
        node=SECOND_LOOK_NODE,
        message=(f"no verified answer's evidence states it firmly about the question: "
                 f"re-reading {len(passages)} passage(s) that match it"),
        data={"passages": [{"id": p.id, "start": p.start, "end": p.end, "text": p.text}
                           for p in passages]},
    )
    return Command(update={"trace": [event]},
                   goto=[Send("look", MapInput(chunk=p, question=question)) for p in passages])


async def reduce(state: MapReduceState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Decide the answer from the verified records; ask the model only on a conflict."""
    records = sorted(state.get("map_records", []), key=lambda r: _chunk_order(r.chunk_id))
    records, failures, retried = await settle_failures(state, records, runtime)
    verified = [r for r in records if r.verified]
    kept, dropped = collapse_to_budget(verified, _evidence_budget(state, runtime))
    groups = group_by_answer(kept, state["question"])
    data: dict[str, Any] = {
        **failures,
        "chunks_read": sum(not r.second_look for r in records),
        "passages_reread": sum(r.second_look for r in records),
        "parse_failures": sum(not r.parsed for r in records),
        "no_answer": sum(r.parsed and not r.found for r in records),
        "demoted": sum(r.found and not r.verified for r in records),
        "verified": len(verified),
        "collapsed_away": [r.chunk_id for r in dropped],
        "groups": [g.summary() for g in groups],
        "unverified_answers": [
            {"chunk": r.chunk_id, "answer": r.answer, "confidence": r.confidence}
            for r in records if r.found and not r.verified
        ],
    }
    trace: list[TraceEvent] = retried
    if not groups:
        data["decision"] = "not found: no verified record"
        trace.append(TraceEvent(node=REDUCE_NODE, message="no chunk's answer is supported by "
                                "its text: not found", data=data))
        return {"draft": Draft(answer=NOT_FOUND_ANSWER, found=False), "trace": trace,
                **_with_failures(state, records, failures)}
    groups, withdrawn = withdraw_irrelevant(groups)
    if withdrawn:
        data["withdrawn"] = [g.summary() for g in withdrawn]
    groups, weak = withdraw_weak(groups)
    if weak:
        data["withdrawn_weak"] = [g.summary() for g in weak]
    chosen, how = groups[0], "the only verified answer"
    if withdrawn and len(groups) == 1:
        how = "the only verified answer whose evidence mentions the question"
    if weak and len(groups) == 1:
        how = (f"the firmest verified answer (the others' evidence is "
               f"{', '.join(sorted({x for g in weak for x in g.firmest().labels()}))})")
    if len(groups) > 1:
        options = groups[:runtime.context.settings.mapreduce.max_conflict_options]
        index, read = await _resolve(state["question"], options, runtime)
        chosen = options[0] if index is None else options[index]
        how = (f"resolution call ({read})" if index is not None
               else "resolution reply unreadable: best ranked (firmness, relevance, support)")
        data["conflict"] = {"options": [g.summary() for g in options], "read": read,
                            "chosen": list(chosen.key)}
    best = chosen.best()
    data["decision"] = {"answer": best.answer, "key": list(chosen.key), "decided_by": how}
    trace.append(TraceEvent(
        node=REDUCE_NODE,
        message=(f"{len(verified)} verified record(s) in {len(groups)} answer group(s), "
                 f"{data['demoted']} demoted, {data['parse_failures']} parse failure(s); "
                 f"chose {best.answer!r} by {how}"),
        data=data,
    ))
    quotes = [Quote(text=ev.text, source=ev.source, origin=ev.origin)
              for ev in chosen.evidence()]
    return {"draft": Draft(answer=best.answer, quotes=quotes, found=True), "trace": trace,
            **_with_failures(state, records, failures)}


async def settle_failures(
    state: MapReduceState, records: list[MapRecord], runtime: Runtime[RunContext]
) -> tuple[list[MapRecord], dict[str, Any], list[TraceEvent]]:
    """The records without those whose map call failed, the failed chunks' ``chunks_failed``
    and ``pages_failed`` (empty if none), and the trace of a second try. Past
    ``max_failed_share`` the failed chunks are tried once more (so a resumed run retries
    them), and BackendError is raised if they still fail."""
    limit = runtime.context.settings.mapreduce.max_failed_share
    read = max(1, sum(not r.second_look for r in records))
    chunks = {c.id: c for c in state["chunks"]}
    events: list[TraceEvent] = []
    if sum(r.failed and not r.second_look for r in records) > limit * read:
        again = await asyncio.gather(*(
            _map({"chunk": chunks[r.chunk_id], "question": state["question"]}, runtime)
            for r in records if r.failed and not r.second_look and r.chunk_id in chunks))
        redone = {out["map_records"][0].chunk_id: out["map_records"][0] for out in again}
        events = [event for out in again for event in out["trace"]]
        records = [redone.get(r.chunk_id, r) if r.failed else r for r in records]
    failed = [r for r in records if r.failed and not r.second_look]  # looks are extras
    if len(failed) > limit * read:
        raise BackendError(f"{len(failed)} of {read} chunk(s) failed, over max_failed_share "
                           f"{limit:g}: {failed[0].status.removeprefix('failed: ')}")
    pages = sorted({p for r in failed if (c := chunks.get(r.chunk_id)) and c.page_start
                    for p in range(c.page_start, (c.page_end or c.page_start) + 1)})
    failures = {"chunks_failed": len(failed), "pages_failed": pages} if failed else {}
    return [r for r in records if not r.failed], failures, events


def _with_failures(state: MapReduceState, records: list[MapRecord],
                   failures: dict[str, Any]) -> dict[str, Any]:
    """The run's coverage with the failed chunks counted (nothing if none failed)."""
    if not failures:
        return {}
    read = {r.chunk_id for r in records}
    chunks = state["chunks"]
    earlier = state.get("coverage")
    coverage = earlier.model_copy(update=failures) if earlier else Coverage(
        chunks_read=len(read), chunks_total=len(chunks), stopped="whole",
        share=round(sum(c.tokens for c in chunks if c.id in read)
                    / max(1, sum(c.tokens for c in chunks)), 4),
        reason=f"{failures['chunks_failed']} chunk(s) failed", **failures)
    return {"coverage": coverage}


async def _resolve(
    question: str, options: list[AnswerGroup], runtime: Runtime[RunContext]
) -> tuple[int | None, str]:
    """LongAgent-style: conflicting answers show their evidence; the model picks one."""
    letters = _letters(len(options))
    messages = get_prompt(RESOLVE_NODE).render(
        question=question, options=render_options(options), letters=", ".join(letters)
    )
    reply = await runtime.context.llm.chat(messages, node=RESOLVE_NODE, max_tokens=32)
    index, read = parse_choice(reply, options)
    return index, f"{read}: {reply.strip()[:80]!r}"


def _evidence_budget(state: MapReduceState, runtime: Runtime[RunContext]) -> int:
    """Evidence tokens the resolution prompt can show, by the same rule as every prompt.

    Each option's answer text is counted as 40 tokens on top of its evidence.
    """
    most = runtime.context.settings.mapreduce.max_conflict_options
    room = prompt_room(runtime, RESOLVE_NODE, 32, question=state["question"], options="",
                       letters=", ".join(_letters(most)))
    return max(1, min(EVIDENCE_TOKEN_BUDGET, room - 40 * most))


def _chunk_order(chunk_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in chunk_id.split(":") if p.isdigit())


def build_mapreduce() -> CompiledGraph:
    """Questions: START -> map (one per chunk, in parallel) -> second_look -> [look (one per
    question-matching passage)] -> reduce -> END.

    Summaries: START -> summary_map (one per chunk) -> collapse -> write -> END.
    """
    from longdoc.agents import mapreduce_summary as summary  # it imports this module

    graph = strategy_graph(MapReduceState)
    graph.add_node("map", map_chunk)  # type: ignore[arg-type]  # fed by Send, not the state
    graph.add_node("second_look", second_look, destinations=("look", "reduce"))
    graph.add_node("look", second_look_chunk)  # type: ignore[arg-type]  # fed by Send, not the state
    graph.add_node("reduce", reduce)
    graph.add_node("summary_map", summary.map_chunk)  # type: ignore[arg-type]  # fed by Send, not the state
    graph.add_node("collapse", summary.collapse)
    graph.add_node("write", summary.write_summary)
    graph.add_conditional_edges(START, fan_out, ["map", "reduce", "summary_map", "collapse"])
    graph.add_edge("map", "second_look")
    graph.add_edge("look", "reduce")
    graph.add_edge("reduce", END)
    graph.add_edge("summary_map", "collapse")
    graph.add_edge("collapse", "write")
    graph.add_edge("write", END)
    return graph.compile()

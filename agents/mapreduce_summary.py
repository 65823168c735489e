"""Map-reduce summarization (LLM×MapReduce, task "summary") with verified key points.

map       one call per chunk: key points, each with a supporting quote, in plain text
          read tolerantly. Quotes are located in the chunk's text in code; a point with
          no located quote is kept but marked unverified.
collapse  while the records' tokens exceed the reducer's budget, adjacent records are
          grouped and each group is compressed by one call into one record of the same
          protocol. New quotes are located in the group's chunks; the group's verified
          quotes are carried over to the new points they share most words with. A round
          that does not shrink the total (or too many rounds) ends in a deterministic
          selection: verified points first, by how many new words each covers. A record
          larger than the budget on its own drops its lowest-ranked points.
reduce    one call writes about N words in paragraphs; code then attaches to each
          paragraph the carried verified quotes sharing most words with it, or, when none
          fits, the source sentences its own sentences paraphrase (and counts, per
          paragraph, how many of its sentences the source supports).

The budgets all follow ``mapreduce.prompt_room``: window / margin - answer - template.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from typing import Any, TypedDict

from langgraph.runtime import Runtime
from rapidfuzz import fuzz

from longdoc.agents.mapreduce import (
    SUMMARY_MAP_NODE,
    TRACE_REPLY_CHARS,
    MapReduceState,
    prompt_room,
)
from longdoc.pipeline.citations import locate
from longdoc.pipeline.errors import InputError
from longdoc.pipeline.folding import normalize
from longdoc.pipeline.grounding import (
    content_words,
    is_steering,
    sentences,
    supports_paragraph,
)
from longdoc.pipeline.injection import blank_injections, injected_at, neutralize
from longdoc.pipeline.models import Chunk, Quote, TraceEvent
from longdoc.pipeline.state import (
    Draft,
    Evidence,
    KeyPoint,
    RunContext,
    SummaryRecord,
)
from longdoc.pipeline.tokens import count_tokens
from longdoc.prompts import document_block, fragments, get_prompt

COLLAPSE_NODE = "mapreduce.summary_collapse"
REDUCE_NODE = "mapreduce.summary_reduce"

MAX_EVIDENCE_CHARS = 400  # a longer located quote is narrowed to its best sentence
MIN_NOTES_BUDGET = 64  # below this the reduce prompt has no room for notes at all
MIN_CARRY_OVERLAP = 2  # shared words for a carried quote to support a new point
MIN_LOCATED_OVERLAP = 3  # shared words for a chunk sentence to support a point or sentence
POINT_SUPPORT_SHARE = 0.6  # ... and the share of a key point's words it must hold
SENTENCE_SUPPORT_SHARE = 0.4  # ... of a summary sentence's words (the reducer paraphrases)
MAX_QUOTES_PER_PARAGRAPH = 3
REPEAT_SIMILARITY = 90  # rapidfuzz ratio at which a paragraph repeats an earlier one
TOKENS_PER_WORD = 1.4  # cl100k tokens per English word, with some slack
TOKENS_PER_POINT = 60  # a point with its quote, for sizing how many points to ask for

_BULLET = re.compile(r"^[ \t]*(?:[-*•]|\d+[.)])[ \t]*")
_POINT_LABEL = re.compile(
    r"^[*_#]*[ \t]*(?:key[ \t]+)?points?[ \t]*\d*[ \t]*[*_]*[ \t]*[:.)-][ \t]*[*_]*[ \t]*", re.I
)
_QUOTE_LINE = re.compile(
    r"^[ \t]*[-*>•]?[ \t]*[*_]*[ \t]*(?:supporting\s+)?(?:quotes?|evidence|source)[ \t]*[*_]*"
    r"[ \t]*[:-][ \t]*[*_]*[ \t]*(.*)$",
    re.I,
)
_HEADER_LINE = re.compile(r"^[ \t]*[*_#]*[ \t]*(?:key points|points|notes|summary)[ \t]*[*_]*"
                          r"[ \t]*:?[ \t]*[*_]*[ \t]*$", re.I)
_INLINE_QUOTE = re.compile(r"\"([^\"]{20,})\"|“([^”]{20,})”")


class SummaryMapInput(TypedDict):
    """What one summary map call receives through ``Send``."""

    chunk: Chunk


# --- reading replies and grounding points ------------------------------------------------


def _clean(text: str) -> str:
    text = text.strip().strip("*_` ").strip()
    return text.strip("\"'“”‘’").strip()


def parse_points(reply: str) -> list[tuple[str, list[str]]]:
    """The (point, candidate quotes) pairs of a reply, labels and markup optional.

    A point starts at "Point:", a bullet or a number; a "Quote:"/"Evidence:" line gives a
    quote to the point before it; long double-quoted passages inside a point are quotes
    too. Unlabelled lines are points of their own. A point with only a quote becomes its
    quote's text.
    """
    items: list[tuple[list[str], list[str]]] = []
    expecting_text = False  # the last line opened a point with no text yet
    for line in reply.splitlines():
        if not line.strip() or _HEADER_LINE.match(line):
            continue
        quote = _QUOTE_LINE.match(line)
        if quote:
            if not items:
                items.append(([], []))
            items[-1][1].append(_clean(quote.group(1)))
            expecting_text = False
            continue
        bullet = _BULLET.match(line)
        rest = line[bullet.end():] if bullet else line
        label = _POINT_LABEL.match(rest)
        if bullet or label:
            rest = rest[label.end():] if label else rest
            items.append(([rest], []))
            expecting_text = not rest.strip()
        elif expecting_text:
            items[-1][0].append(line)
            expecting_text = False
        else:
            items.append(([line], []))
    pairs: list[tuple[str, list[str]]] = []
    for lines, quotes in items:
        text = " ".join(" ".join(lines).split())
        quotes = quotes + [a or b for a, b in _INLINE_QUOTE.findall(text)]
        text = _clean(text)
        quotes = list(dict.fromkeys(q for q in (_clean(q) for q in quotes) if q))
        if not any(ch.isalnum() for ch in text):
            text = quotes[0] if quotes else ""
        if text and text not in {p for p, _ in pairs}:
            pairs.append((text, quotes))
    return pairs


def _narrow(text: str, span: tuple[int, int], point: str) -> tuple[int, int]:
    """A span longer than ``MAX_EVIDENCE_CHARS`` narrowed to its sentence closest to ``point``."""
    if span[1] - span[0] <= MAX_EVIDENCE_CHARS:
        return span
    words = content_words(point)
    candidates = sentences(text, *span) or [span]
    best = max(candidates, key=lambda s: len(words & content_words(text[s[0]:s[1]])))
    return best if best[1] - best[0] <= MAX_EVIDENCE_CHARS else (best[0],
                                                                  best[0] + MAX_EVIDENCE_CHARS)


def locate_in_chunks(quote: str, point: str, chunks: list[Chunk]) -> Evidence | None:
    """The quote as evidence with absolute offsets, if it occurs in one of ``chunks``."""
    for chunk in chunks:
        span = locate(quote, chunk.text, normalize(chunk.text))
        if span is None:
            continue
        s, e = _narrow(chunk.text, span, point)
        text = chunk.text[s:e]
        if is_steering(text) or injected_at(chunk.text, s, e):
            return None
        return Evidence(source=chunk.source, start=chunk.start + s, end=chunk.start + e,
                        text=text, origin="model")
    return None


def located_support(point: str, chunks: list[Chunk],
                    share: float = POINT_SUPPORT_SHARE) -> Evidence | None:
    """The chunk sentence sharing most words with ``point``, if it shares enough of them.

    For a point the model paraphrased without quoting: at least ``MIN_LOCATED_OVERLAP``
    and ``share`` of the point's words must occur in one sentence.
    """
    words = content_words(point)
    needed = max(MIN_LOCATED_OVERLAP, math.ceil(len(words) * share))
    best, best_overlap = None, 0
    for chunk in chunks:
        for s, e in sentences(blank_injections(chunk.text)):
            text = chunk.text[s:e]
            overlap = len(words & content_words(text))
            if overlap > best_overlap and e - s <= MAX_EVIDENCE_CHARS and \
                    not is_steering(text):
                best, best_overlap = (chunk, s, e), overlap
    if best is None or best_overlap < needed:
        return None
    chunk, s, e = best
    return Evidence(source=chunk.source, start=chunk.start + s, end=chunk.start + e,
                    text=chunk.text[s:e], origin="located")


def carried_support(point: str, carried: list[KeyPoint]) -> list[Evidence]:
    """The verified evidence of an earlier point that shares most words with ``point``."""
    words = content_words(point)
    best, best_overlap = None, 0
    for old in carried:
        for ev in old.evidence:
            overlap = len(words & content_words(old.text + " " + ev.text))
            if overlap > best_overlap:
                best, best_overlap = ev, overlap
    needed = max(MIN_CARRY_OVERLAP, math.ceil(len(words) * 0.3))
    return [best] if best is not None and best_overlap >= needed else []


def ground_points(
    pairs: list[tuple[str, list[str]]], chunks: list[Chunk], carried: Sequence[KeyPoint] = ()
) -> tuple[list[KeyPoint], dict[str, int]]:
    """Key points with their located quotes, and counts for the trace.

    Each quote must occur in the chunks' text; a point the model copied from the text is
    its own quote. Without a located quote, a point takes the carried evidence (of the
    records it was compressed from) it shares enough words with, else a chunk sentence
    that holds most of its words (``located``); otherwise it stays unverified.
    """
    points: list[KeyPoint] = []
    counts = {"quotes_offered": 0, "quotes_located": 0, "carried": 0, "located_in_code": 0,
              "unverified": 0}
    for text, quotes in pairs:
        evidence: list[Evidence] = []
        counts["quotes_offered"] += len(quotes)
        for quote in [*quotes, text]:
            ev = locate_in_chunks(quote, text, chunks)
            if ev is not None and not any(e.start == ev.start and e.source == ev.source
                                          for e in evidence):
                evidence.append(ev)
                counts["quotes_located"] += quote is not text
        if not evidence and carried:
            evidence = carried_support(text, list(carried))
            counts["carried"] += bool(evidence)
        if not evidence:
            located = located_support(text, chunks)
            evidence = [located] if located else []
            counts["located_in_code"] += bool(evidence)
        counts["unverified"] += not evidence
        points.append(KeyPoint(text=text, evidence=evidence[:2], verified=bool(evidence)))
    return points, counts


# --- records and their tokens -------------------------------------------------------------


def render_points(points: list[KeyPoint]) -> str:
    """Points in the protocol's own form, as the collapse and reduce prompts show them."""
    lines = []
    for point in points:
        lines.append(fragments.POINT.format(text=neutralize(point.text, protocol=False)))
        lines.extend(fragments.POINT_QUOTE.format(quote=neutralize(ev.text))
                     for ev in point.evidence[:1])
    return "\n".join(lines)


def make_record(chunk_ids: list[str], points: list[KeyPoint], level: int,
                parsed: bool = True) -> SummaryRecord:
    record = SummaryRecord(chunk_ids=chunk_ids, points=points, parsed=parsed, level=level)
    record.tokens = count_tokens(render_points(points)) if points else 0
    return record


def total_tokens(records: list[SummaryRecord]) -> int:
    return sum(r.tokens for r in records)


def point_rank(point: KeyPoint) -> tuple[int, int, int]:
    """Verified first, then quoted by the model (not located in code), then most words."""
    model = any(ev.origin == "model" for ev in point.evidence)
    return (int(point.verified), int(model), len(content_words(point.text)))


def truncate_record(record: SummaryRecord, budget: int) -> tuple[SummaryRecord, int]:
    """The record without its lowest-ranked points until it fits ``budget`` (and how many).

    The best point is always kept (cut to the budget's words if it is longer on its own).
    """
    if record.tokens <= budget:
        return record, 0
    order = sorted(range(len(record.points)), key=lambda i: point_rank(record.points[i]),
                   reverse=True)
    keep: list[int] = []
    for i in order:
        trial = make_record(record.chunk_ids, [record.points[j] for j in sorted([*keep, i])],
                            record.level)
        if trial.tokens <= budget or not keep:
            keep.append(i)
    points = [record.points[j] for j in sorted(keep)]
    smaller = make_record(record.chunk_ids, points, record.level, record.parsed)
    if smaller.tokens > budget and points:  # one point alone is too long: cut its text
        first = points[0].model_copy()
        first.evidence = first.evidence[:1]
        words = first.text.split()
        while words and make_record(record.chunk_ids, [first], record.level).tokens > budget:
            words = words[: len(words) * 3 // 4]
            first.text = " ".join(words) + " ..."
            if len(words) < 4:
                first.evidence = []
        smaller = make_record(record.chunk_ids, [first], record.level, record.parsed)
    return smaller, len(record.points) - len(smaller.points)


def group_adjacent(records: list[SummaryRecord], budget: int) -> list[list[SummaryRecord]]:
    """Consecutive records in groups of at most ``budget`` tokens (in document order)."""
    groups: list[list[SummaryRecord]] = []
    used = 0
    for record in records:
        if groups and used + record.tokens <= budget:
            groups[-1].append(record)
            used += record.tokens
        else:
            groups.append([record])
            used = record.tokens
    return groups


def select_by_coverage(records: list[SummaryRecord], budget: int) -> list[SummaryRecord]:
    """Deterministic fallback: points chosen greedily until ``budget`` tokens are used.

    Verified points come first; among them, the one adding most words not yet covered
    (ties: document order). Chosen points stay in their records, in document order.
    """
    remaining = [
        (r, i, p, content_words(p.text + " " + " ".join(e.text for e in p.evidence)))
        for r, rec in enumerate(records) for i, p in enumerate(rec.points)
    ]
    chosen: set[tuple[int, int]] = set()
    covered: set[str] = set()
    used = 0
    while remaining:
        gains = [(int(p.verified), len(words - covered)) for _, _, p, words in remaining]
        best = remaining.pop(gains.index(max(gains)))  # the first of equals: document order
        cost = count_tokens(render_points([best[2]])) + 1
        if used + cost > budget:
            continue
        chosen.add((best[0], best[1]))
        used += cost
        covered |= best[3]
    selected = []
    for r, record in enumerate(records):
        points = [p for i, p in enumerate(record.points) if (r, i) in chosen]
        if points:
            selected.append(make_record(record.chunk_ids, points, record.level))
    return selected


def points_wanted(tokens: int) -> int:
    """How many points to ask for in a reply of at most ``tokens`` tokens."""
    return max(2, min(8, tokens // TOKENS_PER_POINT))


def summary_tokens(words: int) -> int:
    """Completion tokens for a summary of about ``words`` words."""
    return int(words * TOKENS_PER_WORD) + 32


def paragraph_count(words: int) -> int:
    return max(1, min(8, math.ceil(words / 100)))


# --- attaching quotes to the summary ------------------------------------------------------


def split_paragraphs(text: str) -> list[str]:
    """The summary's paragraphs (blank-line separated), without a leading label."""
    text = re.sub(r"^\s*[*_#]*\s*summary\s*[*_]*\s*:?\s*[*_]*\s*", "", text.strip(), flags=re.I)
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def drop_degenerate(paragraphs: list[str]) -> tuple[list[str], int]:
    """Paragraphs without the small model's loops, and how many were dropped.

    A paragraph that repeats an earlier one (``REPEAT_SIMILARITY``, or a cut-off copy of
    its start) is dropped; a last paragraph cut off by the token limit loses its unfinished
    sentence (and is dropped if nothing finished remains).
    """
    kept: list[str] = []
    for paragraph in paragraphs:
        folded = paragraph.casefold()
        if any(fuzz.ratio(folded, k.casefold()) >= REPEAT_SIMILARITY
               or (len(folded) >= 40 and k.casefold().startswith(folded)) for k in kept):
            continue
        kept.append(paragraph)
    if kept and not re.search(r"[.!?][\"'”’)\]]*$", kept[-1]):
        ends = list(re.finditer(r"[.!?][\"'”’)\]]*(?=\s)", kept[-1]))
        if ends:
            kept[-1] = kept[-1][:ends[-1].end()]
        elif len(kept) > 1:
            kept.pop()
    return kept, len(paragraphs) - len(kept)


def attach_quotes(paragraphs: list[str], records: list[SummaryRecord]) -> list[list[Evidence]]:
    """For each paragraph, the carried verified quotes that support it best, found in code.

    A quote scores by the words its point and its text share with the paragraph; up to
    ``MAX_QUOTES_PER_PARAGRAPH`` with at least half the best score, each one whose own text
    fits the paragraph (``grounding.supports_paragraph``, the final verifier's test).
    """
    pool: dict[tuple[str, int, int], tuple[Evidence, set[str]]] = {}
    for record in records:
        for point in record.points:
            for ev in point.evidence:
                key = (ev.source, ev.start, ev.end)
                words = content_words(point.text + " " + ev.text)
                pool[key] = (ev, pool[key][1] | words if key in pool else words)
    attached = []
    for paragraph in paragraphs:
        words = content_words(paragraph)
        scored = sorted(((len(words & w), ev) for ev, w in pool.values()),
                        key=lambda item: (-item[0], item[1].source, item[1].start))
        best = scored[0][0] if scored else 0
        attached.append([ev for score, ev in scored[:MAX_QUOTES_PER_PARAGRAPH]
                         if score * 2 >= best and supports_paragraph(ev.text, paragraph)])
    return attached


def sentence_support(paragraph: str, chunks: list[Chunk]) -> tuple[list[Evidence], int, int]:
    """Source sentences supporting the sentences of ``paragraph``, found in code.

    Each sentence of the paragraph is matched to the chunk sentence sharing most content
    words with it (``located_support`` at ``SENTENCE_SUPPORT_SHARE``). Returns the distinct
    evidence in paragraph order, and how many of the paragraph's sentences found support.
    """
    spans = sentences(paragraph) or [(0, len(paragraph))]
    found: dict[tuple[str, int], Evidence] = {}
    supported = 0
    for s, e in spans:
        evidence = located_support(paragraph[s:e], chunks, SENTENCE_SUPPORT_SHARE)
        if evidence is not None:
            supported += 1
            found.setdefault((evidence.source, evidence.start), evidence)
    return list(found.values()), supported, len(spans)


def paragraph_evidence(paragraphs: list[str], records: list[SummaryRecord],
                       chunks: list[Chunk]) -> tuple[list[list[Evidence]], list[dict[str, Any]]]:
    """Per paragraph: the carried verified quotes that fit it, else sentences located in code.

    Carried quotes (``attach_quotes``) come first; a paragraph they leave uncited gets the
    source sentences its own sentences paraphrase (``sentence_support``). Also returns, per
    paragraph, how many of its sentences the source supports, for the trace.
    """
    attached = attach_quotes(paragraphs, records)
    checks = []
    for paragraph, evidence in zip(paragraphs, attached, strict=True):
        located, supported, total = sentence_support(paragraph, chunks)
        if not evidence:
            evidence.extend(located[:MAX_QUOTES_PER_PARAGRAPH])
        checks.append({"sentences": total, "sentences_supported": supported})
    return attached, checks


# --- nodes ----------------------------------------------------------------------------------


async def map_chunk(item: SummaryMapInput, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The key points of one chunk, each grounded in the chunk's own text."""
    chunk = item["chunk"]
    points = points_wanted(runtime.context.settings.llm.max_answer_tokens)
    messages = get_prompt(SUMMARY_MAP_NODE).render(
        document=document_block(chunk.source, chunk.text), points=str(points)
    )
    reply, call = await runtime.context.llm.timed_chat(messages, SUMMARY_MAP_NODE)
    pairs = parse_points(reply)
    grounded, counts = ground_points(pairs, [chunk])
    record = make_record([chunk.id], grounded, level=0, parsed=bool(pairs))
    verified = sum(p.verified for p in grounded)
    status = (f"{len(grounded)} point(s), {verified} verified" if pairs
              else "parse failure: no key point in the reply")
    return {
        "summary_records": [record],
        "trace": [TraceEvent(node=SUMMARY_MAP_NODE, message=f"chunk {chunk.id}: {status}", data={
            "chunk_id": chunk.id, "record": record.model_dump(), "verification": counts,
            "verified": verified, "chunk_tokens": chunk.tokens, "call": call,
            "reply": reply[:TRACE_REPLY_CHARS],
        })],
    }


def note_budgets(state: MapReduceState, runtime: Runtime[RunContext]) -> tuple[int, int]:
    """(tokens of notes the reduce prompt fits, tokens of notes a collapse prompt fits)."""
    words = state["words"]
    answer = runtime.context.settings.llm.max_answer_tokens
    reduce_room = prompt_room(runtime, REDUCE_NODE, summary_tokens(words), notes="",
                              words=str(words), paragraphs=str(paragraph_count(words)))
    collapse_room = prompt_room(runtime, COLLAPSE_NODE, answer, notes="",
                                points=str(points_wanted(answer)))
    if reduce_room < MIN_NOTES_BUDGET:
        window = runtime.context.llm.endpoint.context_window
        raise InputError(
            f"a summary of {words} words leaves ~{reduce_room} tokens for notes in the "
            f"{window}-token window; ask for fewer words"
        )
    return reduce_room, max(MIN_NOTES_BUDGET, collapse_room)


async def compress_group(
    group: list[SummaryRecord], chunks: dict[str, Chunk], level: int,
    runtime: Runtime[RunContext],
) -> tuple[SummaryRecord, dict[str, Any]]:
    """One collapse call: a group of records becomes one record of the same protocol."""
    answer = runtime.context.settings.llm.max_answer_tokens
    notes = "\n".join(render_points(r.points) for r in group)
    messages = get_prompt(COLLAPSE_NODE).render(notes=notes, points=str(points_wanted(answer)))
    reply, call = await runtime.context.llm.timed_chat(messages, COLLAPSE_NODE)
    chunk_ids = [c for r in group for c in r.chunk_ids]
    carried = [p for r in group for p in r.points if p.verified]
    points, counts = ground_points(parse_points(reply), [chunks[c] for c in chunk_ids], carried)
    record = make_record(chunk_ids, points, level, parsed=bool(points))
    return record, {
        "chunks": chunk_ids, "records_in": len(group), "tokens_in": total_tokens(group),
        "tokens_out": record.tokens, "points_in": sum(len(r.points) for r in group),
        "points_out": len(points), "verified_out": sum(p.verified for p in points),
        "verification": counts, "call": call,
    }


async def collapse(state: MapReduceState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Compress groups of records until they fit the reducer's budget; always terminates."""
    reduce_room, collapse_room = note_budgets(state, runtime)
    budget = min(reduce_room, collapse_room)
    order = {c.id: i for i, c in enumerate(state.get("chunks", []))}
    records = sorted(state.get("summary_records", []), key=lambda r: order[r.chunk_ids[0]])
    records = [r for r in records if r.points]
    chunks = {c.id: c for c in state.get("chunks", [])}
    trace: list[TraceEvent] = []

    def fit_each(rs: list[SummaryRecord], step: str) -> list[SummaryRecord]:
        out = []
        for record in rs:
            smaller, dropped = truncate_record(record, budget)
            if dropped or smaller.tokens < record.tokens:
                trace.append(TraceEvent(
                    node=COLLAPSE_NODE,
                    message=f"{step}: a record of {record.tokens} tokens exceeds the budget of "
                            f"{budget}; dropped its {dropped} lowest-ranked point(s)",
                    data={"decision": "truncated", "chunks": record.chunk_ids,
                          "tokens_in": record.tokens, "tokens_out": smaller.tokens,
                          "points_dropped": dropped}))
            out.append(smaller)
        return out

    records = fit_each(records, "map")
    start_tokens = total_tokens(records)
    rounds = 0
    while total_tokens(records) > reduce_room:
        before = total_tokens(records)
        if rounds == runtime.context.settings.mapreduce.max_collapse_rounds:
            records = _fallback(records, reduce_room, before, trace,
                                f"{rounds} collapse rounds did not fit the budget")
            break
        rounds += 1
        groups = group_adjacent(records, collapse_room)
        results = await asyncio.gather(
            *(compress_group(g, chunks, rounds, runtime) for g in groups)
        )
        compressed = fit_each([r for r, _ in results], f"round {rounds}")
        after = total_tokens(compressed)
        shrank = after < before and all(r.points for r in compressed)
        trace.append(TraceEvent(
            node=COLLAPSE_NODE,
            message=f"round {rounds}: {len(records)} record(s) in {len(groups)} group(s), "
                    f"{before} -> {after} tokens (budget {reduce_room})",
            data={"round": rounds, "tokens_before": before, "tokens_after": after,
                  "budget": reduce_room, "groups": [d for _, d in results],
                  "decision": "compressed" if shrank else "no shrink: fallback"}))
        if not shrank:
            records = _fallback(records, reduce_room, before, trace,
                                f"round {rounds} did not shrink the records")
            break
        records = compressed
    if not rounds and not any(e.data.get("decision") == "fallback" for e in trace):
        trace.append(TraceEvent(
            node=COLLAPSE_NODE,
            message=f"{len(records)} record(s), {start_tokens} tokens fit the budget of "
                    f"{reduce_room}: no collapse",
            data={"decision": "fits", "tokens": start_tokens, "budget": reduce_room}))
    return {"collapsed_records": records, "trace": trace}


def _fallback(records: list[SummaryRecord], budget: int, before: int,
              trace: list[TraceEvent], why: str) -> list[SummaryRecord]:
    selected = select_by_coverage(records, budget)
    points_in = sum(len(r.points) for r in records)
    points_out = sum(len(r.points) for r in selected)
    trace.append(TraceEvent(
        node=COLLAPSE_NODE,
        message=f"{why}: deterministic selection kept {points_out} of {points_in} point(s) "
                f"({total_tokens(selected)} of {before} tokens)",
        data={"decision": "fallback", "reason": why, "points_in": points_in,
              "points_out": points_out, "verified_out": sum(p.verified for r in selected
                                                            for p in r.points),
              "tokens_before": before, "tokens_after": total_tokens(selected),
              "budget": budget}))
    return selected


async def write_summary(state: MapReduceState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The final summary from the collapsed records; quotes attached per paragraph in code."""
    records = state.get("collapsed_records", [])
    words = state["words"]
    if not records:
        return {"draft": Draft(answer="No key point could be read from the document.",
                               found=False),
                "trace": [TraceEvent(node=REDUCE_NODE, message="no record to summarize")]}
    messages = get_prompt(REDUCE_NODE).render(
        notes="\n".join(render_points(r.points) for r in records), words=str(words),
        paragraphs=str(paragraph_count(words)),
    )
    reply, call = await runtime.context.llm.timed_chat(messages, REDUCE_NODE,
                                   max_tokens=summary_tokens(words))
    paragraphs, repeated = drop_degenerate(split_paragraphs(reply))
    read = {cid for r in records for cid in r.chunk_ids}
    chunks = [c for c in state.get("chunks", []) if c.id in read]
    attached, checks = paragraph_evidence(paragraphs, records, chunks)
    paragraph_quotes = [[Quote(text=ev.text, source=ev.source, origin=ev.origin) for ev in evs]
                        for evs in attached]
    quotes = list({(q.source, q.text): q for qs in paragraph_quotes for q in qs}.values())
    trace = [TraceEvent(
        node=REDUCE_NODE,
        message=f"{len(paragraphs)} paragraph(s), {sum(map(len, attached))} quote(s) attached",
        data={"records": len(records), "points": sum(len(r.points) for r in records),
              "verified_points": sum(p.verified for r in records for p in r.points),
              "words": len(" ".join(paragraphs).split()), "words_requested": words,
              "paragraphs_dropped": repeated,
              "paragraphs": [{"words": len(p.split()), **check,
                              "quotes": [(e.source, e.start, e.end, e.origin) for e in evs]}
                             for p, evs, check in zip(paragraphs, attached, checks,
                                                      strict=True)],
              "call": call, "decision": "summary written by the model; quotes attached in "
                                        "code: carried verified quotes by word overlap, "
                                        "else the source sentences it paraphrases"},
    )]
    found = bool(paragraphs)
    return {"draft": Draft(answer="\n\n".join(paragraphs) if found else reply.strip(),
                           quotes=quotes, paragraph_quotes=paragraph_quotes, found=found),
            "trace": trace}

"""``longdoc write``: a planned, cited article from long documents, every figure traceable.

One LangGraph subgraph (``build_write``) over ``WriteState``, after the shared ingest and
chunk nodes (``build_write_graph``):

digest    one map call per chunk (the map-reduce summary map, LLM×MapReduce): key points,
          each with a quote located in the chunk in code. A chunk that yields fewer
          verified points than the article's length needs (``digest_points``) gets
          sentences chosen in code (topic words, figures) as further points, so every
          source has evidence and short sections have some left to draw on.
plan      an outline (AgentWrite / STORM): sections with their points, the digests they
          draw on and word targets adding up to ``words``. The model proposes titles and
          note numbers in plain text; an unusable plan (too few sections with valid
          notes) is replaced by one built in code from the digests (contiguous groups of
          points, titles from their most distinctive words).
revise    LLM×MapReduce-V2: each window of ``REVISION_WINDOW`` neighbouring digests sees
          the outline and proposes retitles or a new section; proposals are merged in
          code (a title must share words with the notes it heads). In the same layer the
          code moves the window's notes that sit at a section boundary to the neighbouring
          section when they share clearly more words with its notes. Every revision is in
          the trace.
write     sections in order, one step each (checkpointed): the outline, the section's
          numbered evidence and a short account of what came before; ``[n]`` markers.
verify    in code (``write_verify``): markers that do not support their sentence are
          dropped and counted; an uncited sentence gets a supporting evidence sentence
          found in code if there is one; every number, date and proper name must occur in
          a cited source sentence of its paragraph, else the sentence is rewritten once by
          the model and checked again, then removed (and counted).
conflicts values that different sources give for the same thing (``find_conflicts``),
          where the article cites one of them, are stated side by side with both sources.
length    each section within ``LENGTH_TOLERANCE`` of its target: short ones are extended
          by the model from their unused evidence (verified like the rest), then with
          quoted evidence sentences; long ones lose sentences (uncited ones first). A
          source the article does not cite yet gets one quoted sentence.
assemble  Markdown with headings, inline citation numbers and references (source, page,
          quote); the counts; a final check that nothing unsupported or untraced is left.
"""

from __future__ import annotations

import asyncio
import math
import operator
import re
import time
from collections import Counter
from functools import cache
from pathlib import PurePath
from typing import Annotated, Any, Literal, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel, Field
from rapidfuzz import fuzz

from longdoc.agents.mapreduce import SUMMARY_MAP_NODE, TRACE_REPLY_CHARS, prompt_room
from longdoc.agents.mapreduce_summary import drop_degenerate
from longdoc.agents.mapreduce_summary import map_chunk as summary_map_chunk
from longdoc.agents.write_verify import (
    best_support,
    common_words,
    count_words,
    figures,
    find_conflicts,
    markers_inside,
    split_marked,
    support_score,
    supports_sentence,
    untraced,
)
from longdoc.pipeline.errors import InputError
from longdoc.pipeline.grounding import content_tokens, content_words, is_steering, sentences
from longdoc.pipeline.injection import blank_injections, neutralize
from longdoc.pipeline.models import Answer, Chunk, Citation, Document, TraceEvent
from longdoc.pipeline.state import (
    CompiledGraph,
    Evidence,
    GraphState,
    KeyPoint,
    Request,
    RunContext,
    SummaryRecord,
    add_events,
)
from longdoc.pipeline.tokens import count_tokens
from longdoc.prompts import document_block, get_prompt

PLAN_NODE = "write.plan"
REVISE_NODE = "write.revise"
SECTION_NODE = "write.section"
EXTEND_NODE = "write.extend"
REWRITE_NODE = "write.rewrite"
# The LLM nodes of each stage, for the share of time and tokens per stage.
STAGES = {SUMMARY_MAP_NODE: "digest", PLAN_NODE: "plan", REVISE_NODE: "revise",
          SECTION_NODE: "write", REWRITE_NODE: "verify", EXTEND_NODE: "length"}

WORDS_PER_SECTION = 250  # AgentWrite-sized sections: one call writes one
MIN_SECTIONS, MAX_SECTIONS = 2, 12
MIN_SECTION_WORDS = 40
MIN_DIGEST_POINTS, MAX_DIGEST_POINTS = 3, 16
WORDS_PER_EVIDENCE = 12  # article words one evidence sentence can carry, for sizing digests
POINT_WORDS = 16  # words of a point the plan prompt shows
MAX_SECTION_EVIDENCE = 12
REVISION_WINDOW = 3  # neighbouring digests that review the outline together
MOVE_MARGIN, MIN_MOVE_FIT = 1.5, 2.0  # a boundary note moves when it fits the next section
PLAN_TOKENS = 300
REVISE_TOKENS = 120
REWRITE_TOKENS = 120
TOKENS_PER_WORD = 1.4
WORDS_PER_PARAGRAPH = 120
LENGTH_TOLERANCE = 0.15
LENGTH_AIM = 0.1  # extend below 1 - this, trim above 1 + this (inside the tolerance)
MIN_EVIDENCE_WORDS = 5  # a located quote shorter than this is a fragment, not evidence
MIN_QUOTE_WORDS = 8  # evidence quoted as a sentence of the article has at least this many
MAX_EVIDENCE_WORDS = 80  # an evidence sentence longer than this is not quoted to fill
TITLE_SKIP = frozenset(
    "thus must will shall would could should also every many much made make makes year "
    "years time times today great more most first upon those these there which whose "
    "where while within without being have having been done such same other others "
    "another even still again ever never always able need needs".split())
ECHO_SHARE = 0.6
REPEAT_SIMILARITY = 90  # rapidfuzz ratio at which a sentence repeats an earlier one
# Code's own words before a quoted evidence sentence: none can read as a name to trace.
EVIDENCE_LEADS = ("A source records:", "A passage states:", "A further passage adds:")


# --- typed state -------------------------------------------------------------------------------


class PlanPoint(BaseModel):
    """A digest point the plan can use: its number in the plan prompt, its digest, its
    located evidence."""

    number: int
    digest: int
    text: str
    evidence: list[Evidence]


class Section(BaseModel):
    """One section of the outline."""

    title: str
    points: list[int] = Field(description="Numbers of the plan points it draws on")
    digests: list[int] = Field(default_factory=list, description="Digests of those points")
    words: int = Field(0, description="Word target")


class Outline(BaseModel):
    sections: list[Section]
    origin: Literal["model", "code"]


class Sentence(BaseModel):
    """A sentence of the article with the evidence it cites."""

    text: str
    cites: list[Evidence] = Field(default_factory=list)
    kind: Literal["model", "rewritten", "evidence", "conflict"] = "model"


class SectionDraft(BaseModel):
    title: str
    target: int
    paragraphs: list[list[Sentence]]
    pool: list[Evidence] = Field(description="The section's evidence, as numbered in its prompt")


class WriteCounts(BaseModel):
    """What the checks found and did, for ``--json`` and the benchmark."""

    words: int = 0
    target_words: int = 0
    sections: int = 0
    plan_origin: Literal["model", "code"] = "code"
    revisions_accepted: int = 0
    citations_offered: int = Field(0, description="Markers naming an evidence item")
    citations_invalid: int = Field(0, description="Markers naming no evidence item")
    citations_unsupported: int = Field(0, description="Dropped: not supporting the sentence")
    citations_located: int = Field(0, description="Supporting evidence found in code")
    citations: int = Field(0, description="References in the article")
    sentences_rewritten: int = Field(0, description="Untraceable figures: rewrites asked")
    rewrites_kept: int = 0
    sentences_removed: int = Field(0, description="Untraceable after the rewrite: removed")
    sentences_uncited: int = Field(0, description="Kept without citation (no figures)")
    sentences_repeated: int = Field(0, description="Dropped: repeating an earlier sentence "
                                    "or the prompt's instructions")
    sentences_trimmed: int = 0
    sentences_from_evidence: int = Field(0, description="Quoted evidence added for length")
    sections_extended: int = Field(0, description="Sections the model was asked to extend")
    conflicts: int = 0
    unsupported_left: int = Field(0, description="Final check: must be 0")
    untraced_left: int = Field(0, description="Final check: must be 0")
    sources_cited: int = 0
    sources: int = 0

    def add(self, **counts: int) -> None:
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value)


class Reference(BaseModel):
    number: int
    source: str
    page: int | None
    start: int
    end: int
    quote: str
    origin: Literal["model", "located"]


class ArticleParagraph(BaseModel):
    text: str = Field(description="With inline [n] citation numbers")
    citations: list[int]


class ArticleSection(BaseModel):
    title: str
    target_words: int
    words: int
    paragraphs: list[ArticleParagraph]


class Article(Answer):
    """What ``write`` returns: ``answer`` is the Markdown article."""

    topic: str
    target_words: int
    words: int
    sections: list[ArticleSection]
    references: list[Reference]
    counts: WriteCounts


class WriteState(GraphState, total=False):
    """The shared state plus the write stages' own keys (``question`` holds the topic)."""

    summary_records: Annotated[list[SummaryRecord], operator.add]  # the digest
    points: list[PlanPoint]
    outline: Outline
    drafts: list[SectionDraft]
    counts: WriteCounts
    article_data: dict[str, Any]


class WriteOutput(TypedDict, total=False):
    article_data: dict[str, Any]
    trace: Annotated[list[TraceEvent], add_events]


class DigestInput(TypedDict):
    chunk: Chunk
    topic: str
    points: int  # evidence points the digest should end with (topped up in code)


# --- helpers ------------------------------------------------------------------------------------


def _report(runtime: Runtime[RunContext], stage: str, total: int | None = None,
            advance: int = 0) -> None:
    """Tell the caller's progress display (if any) what is happening."""
    progress = getattr(runtime.context, "progress", None)
    if progress is not None:
        calls = runtime.context.llm.calls
        progress(stage, total, advance,
                 sum(c.prompt_tokens + c.completion_tokens for c in calls))


def _event(node: str, message: str, started: float, **data: object) -> TraceEvent:
    return TraceEvent(node=node, message=message, data={
        **data, "started_at": round(started, 3), "elapsed_s": round(time.time() - started, 3)})


def _order(chunk_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in chunk_id.split(":") if p.isdigit())


def _key(ev: Evidence) -> tuple[str, int, int]:
    return ev.source, ev.start, ev.end


def _same(ev: Evidence) -> str:
    return " ".join(ev.text.casefold().split())


def document_words(documents: list[Document]) -> frozenset[str]:
    """The documents' lower-case words (``write_verify.common_words``), computed once per
    set of documents."""
    return _document_words(tuple(d.sha256 for d in documents), tuple(d.text for d in documents))


@cache
def _document_words(_hashes: tuple[str, ...], texts: tuple[str, ...]) -> frozenset[str]:
    return common_words(list(texts))


def terminated(text: str) -> str:
    """``text`` ending in sentence punctuation (so the article splits where it did)."""
    return text if re.search(r"[.!?][\"')\]”’]*$", text) else text + "."


def _clean_title(text: str) -> str:
    text = re.split(r"\b(?:notes?|points?)\s*:", text, maxsplit=1, flags=re.I)[0]
    text = re.sub(r"[*_#`\"“”]", "", text).strip(" -:.;,()[]")
    words = text.split()
    return " ".join(words[:10])


def section_words(draft: SectionDraft) -> int:
    return sum(count_words(s.text) for p in draft.paragraphs for s in p)


def evidence_block(pool: list[Evidence]) -> str:
    """Evidence numbered from 1, each with its file name, as the prompts show it."""
    return "\n".join(f"[{i}] {neutralize(' '.join(ev.text.split()))} "
                     f"({PurePath(ev.source).name})" for i, ev in enumerate(pool, 1))


# --- digest -------------------------------------------------------------------------------------


def located_points(chunk: Chunk, topic: str, count: int,
                   taken: set[tuple[str, int]]) -> list[KeyPoint]:
    """Up to ``count`` sentences of ``chunk`` as points, chosen in code: most topic words,
    then most figures, then longest; never steering text or a sentence already taken."""
    wanted = content_words(topic)
    text = blank_injections(chunk.text)
    scored = []
    for s, e in sentences(text):
        sentence = chunk.text[s:e]
        words = len(sentence.split())
        if not 8 <= words <= MAX_EVIDENCE_WORDS or is_steering(sentence) or \
                (chunk.source, chunk.start + s) in taken:
            continue
        score = (len(wanted & content_words(sentence)), min(3, len(figures(sentence))), words)
        scored.append((score, s, e))
    best = sorted(sorted(scored, reverse=True)[:count], key=lambda item: item[1])
    return [KeyPoint(text=" ".join(chunk.text[s:e].split()[:POINT_WORDS]), verified=True,
                     evidence=[Evidence(source=chunk.source, start=chunk.start + s,
                                        end=chunk.start + e, text=chunk.text[s:e],
                                        origin="located")])
            for _, s, e in best]


def fan_out(state: WriteState, runtime: Runtime[RunContext]) -> list[Send]:
    """One digest call per chunk; a chunk too large for the digest prompt is an error."""
    chunks = state.get("chunks", [])
    if not chunks:
        raise InputError("the documents have no text to write from")
    budget = prompt_room(runtime, SUMMARY_MAP_NODE, runtime.context.settings.llm.max_answer_tokens,
                         document=document_block(chunks[0].source, ""), points="8")
    largest = max(c.tokens for c in chunks)
    if largest > budget:
        raise InputError(f"a chunk of ~{largest} tokens does not fit the digest prompt "
                         f"(~{budget} tokens left); lower chunk_tokens")
    _report(runtime, "digest", total=len(chunks))
    wanted = digest_points(state["words"], len(chunks))
    return [Send("digest", DigestInput(chunk=c, topic=state["question"], points=wanted))
            for c in chunks]


def digest_points(words: int, chunks: int) -> int:
    """Points each digest should hold: enough evidence sentences for ``words`` words
    (``WORDS_PER_EVIDENCE`` each), at least ``MIN_DIGEST_POINTS``, at most
    ``MAX_DIGEST_POINTS``."""
    return max(MIN_DIGEST_POINTS, min(MAX_DIGEST_POINTS,
                                      math.ceil(words / (WORDS_PER_EVIDENCE * chunks))))


async def digest(item: DigestInput, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The summary map on one chunk, topped up with sentences chosen in code."""
    started = time.time()
    out = await summary_map_chunk({"chunk": item["chunk"]}, runtime)
    record: SummaryRecord = out["summary_records"][0]
    verified = []  # points with evidence of at least MIN_EVIDENCE_WORDS (no fragments)
    for point in record.points:
        evidence = [ev for ev in point.evidence if count_words(ev.text) >= MIN_EVIDENCE_WORDS]
        if evidence:
            verified.append(point.model_copy(update={"evidence": evidence}))
    taken = {(ev.source, ev.start) for p in verified for ev in p.evidence}
    added = []
    if len(verified) < item["points"]:
        added = located_points(item["chunk"], item["topic"], item["points"] - len(verified),
                               taken)
    record = record.model_copy(update={"points": [*verified, *added]})
    _report(runtime, "digest", advance=1)
    return {"summary_records": [record], "trace": [*out["trace"], _event(
        "write.digest", f"chunk {item['chunk'].id}: {len(verified)} verified point(s) from the "
        f"model, {len(added)} sentence(s) chosen in code", started,
        chunk_id=item["chunk"].id, model_points=len(verified), code_points=len(added))]}


def plan_points(records: list[SummaryRecord]) -> list[PlanPoint]:
    """The digests' points with evidence, numbered from 1 in document order (evidence
    whose text an earlier point already has is left out)."""
    ordered = sorted(records, key=lambda r: _order(r.chunk_ids[0]))
    points: list[PlanPoint] = []
    seen: set[str] = set()  # a sentence the documents repeat is one piece of evidence
    for index, record in enumerate(ordered):
        for point in record.points:
            evidence = list({_same(ev): ev for ev in point.evidence
                             if _same(ev) not in seen}.values())
            if not evidence:
                continue
            seen.update(_same(ev) for ev in evidence)
            points.append(PlanPoint(number=len(points) + 1, digest=index,
                                    text=" ".join(point.text.split()), evidence=evidence))
    return points


# --- plan ---------------------------------------------------------------------------------------


def section_count(words: int, points: int) -> int:
    return max(1, min(MAX_SECTIONS, points,
                      max(MIN_SECTIONS, round(words / WORDS_PER_SECTION))))


_SECTION_LINE = re.compile(r"^\W*(?:section|part|chapter)\b\s*\d*\s*[:.)-]?\s*(.*)$", re.I)
_NOTES_LINE = re.compile(r"^\W*(?:notes?|points?|uses?)\b\s*[:.=-]?\s*(.*)$", re.I)
_HEADING_LINE = re.compile(r"^\s*(?:#+|\d+[.)]|[-*•])\s*(.+)$")
_ONLY_NUMBERS = re.compile(r"^[\s\d,;&and.-]+$", re.I)


def parse_plan(reply: str, points: list[PlanPoint]) -> list[tuple[str, list[int]]]:
    """(title, note numbers) pairs of a plan reply, read tolerantly.

    A title comes from a "Section:" line or a heading/numbered line; numbers from a
    "Notes:" line or a line of numbers, or after "Notes:" on the title's own line. A
    numbered line that copies a note back is not a title.
    """
    sections: list[tuple[str, list[int]]] = []
    texts = [p.text.casefold() for p in points]
    for line in reply.splitlines():
        if not line.strip():
            continue
        notes = _NOTES_LINE.match(line)
        if notes or _ONLY_NUMBERS.match(line):
            numbers = [int(n) for n in re.findall(r"\d+", notes.group(1) if notes else line)]
            if not sections:
                sections.append(("", []))
            sections[-1][1].extend(numbers)
            continue
        match = _SECTION_LINE.match(line) or _HEADING_LINE.match(line)
        if not match or not match.group(1).strip():
            continue
        title = _clean_title(match.group(1))
        inline = re.search(r"\b(?:notes?|points?)\s*:(.*)$", match.group(1), re.I)
        numbers = [int(n) for n in re.findall(r"\d+", inline.group(1))] if inline else []
        if not any(ch.isalpha() for ch in title) or \
                any(fuzz.ratio(title.casefold(), t) >= 80 for t in texts):
            continue
        sections.append((title, numbers))
    return sections


def distinctive_title(group: list[PlanPoint], others: list[list[PlanPoint]]) -> str:
    """Up to three words of the group's points and evidence, those used more than once
    first, by how much more often the group uses them than the other groups (adverbs,
    modals and other words that name no subject are left out)."""

    def words(points: list[PlanPoint]) -> list[list[str]]:
        return [[w for w in content_tokens(p.text + " " + " ".join(e.text for e in p.evidence))
                 if w.isalpha() and len(w) > 3 and not w.endswith("ly")
                 and w not in TITLE_SKIP] for p in points]

    counts = Counter(w for ws in words(group) for w in ws)
    elsewhere = Counter(w for g in others for ws in words(g) for w in set(ws))
    ranked = sorted(counts, key=lambda w: (counts[w] < 2, -(counts[w] / (1 + elsewhere[w])),
                                           w))[:3]
    if not ranked:
        return ""
    named = [w.capitalize() for w in ranked]
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]


def outline_from_digests(points: list[PlanPoint], count: int) -> list[Section]:
    """The deterministic outline: ``count`` contiguous groups of points (document order),
    as even as possible, each titled by its distinctive words."""
    groups = [points[i * len(points) // count:(i + 1) * len(points) // count]
              for i in range(count)]
    groups = [g for g in groups if g]
    sections = []
    for i, group in enumerate(groups):
        title = distinctive_title(group, groups[:i] + groups[i + 1:]) or f"Part {i + 1}"
        sections.append(Section(title=title, points=[p.number for p in group]))
    return sections


def _fit(point: PlanPoint, section: Section, by_number: dict[int, PlanPoint]) -> int:
    text = section.title + " " + " ".join(by_number[n].text for n in section.points)
    return len(content_words(point.text) & content_words(text))


def outline_from_model(parsed: list[tuple[str, list[int]]], points: list[PlanPoint],
                       count: int) -> list[Section] | None:
    """The model's outline made whole: valid, distinct note numbers; notes it left out go
    to the section they share most words with (else the one holding the note before
    them). None when fewer than half the wanted sections (at least two) are usable."""
    by_number = {p.number: p for p in points}
    used: set[int] = set()
    sections: list[Section] = []
    for title, numbers in parsed:
        valid = [n for n in dict.fromkeys(numbers) if n in by_number and n not in used]
        if not title or not valid or title.casefold() in {s.title.casefold() for s in sections}:
            continue
        used.update(valid)
        sections.append(Section(title=title, points=valid))
    if len(sections) < max(MIN_SECTIONS, math.ceil(count / 2)) or len(sections) > 2 * count:
        return None
    holder = {n: i for i, s in enumerate(sections) for n in s.points}
    for point in points:
        if point.number in used:
            continue
        fits = [_fit(point, s, by_number) for s in sections]
        if max(fits) > 0:
            target = fits.index(max(fits))
        else:
            before = [holder[n] for n in holder if n < point.number]
            target = before[-1] if before else 0
        sections[target].points.append(point.number)
        holder[point.number] = target
    for section in sections:
        section.points.sort()
    return sections


def with_targets(sections: list[Section], points: list[PlanPoint], words: int) -> list[Section]:
    """Sections with their digests and word targets: shares of ``words`` by evidence
    items (at least ``MIN_SECTION_WORDS`` each), summing to ``words`` exactly."""
    by_number = {p.number: p for p in points}
    weights = [max(1, sum(len(by_number[n].evidence) for n in s.points)) for s in sections]
    floor = min(MIN_SECTION_WORDS, words // max(1, len(sections)))
    spare = words - floor * len(sections)
    shares = [spare * w / sum(weights) for w in weights]
    targets = [floor + int(s) for s in shares]
    order = sorted(range(len(sections)), key=lambda i: shares[i] - int(shares[i]), reverse=True)
    for i in order[:words - sum(targets)]:
        targets[i] += 1
    return [s.model_copy(update={"words": t, "digests": sorted({by_number[n].digest
                                                                for n in s.points})})
            for s, t in zip(sections, targets, strict=True)]


def render_outline(sections: list[Section], current: int | None = None) -> str:
    return "\n".join(f"{i}. {neutralize(s.title, protocol=False)}"
                     + (" (this section)" if i - 1 == current else "")
                     for i, s in enumerate(sections, 1))


def render_notes(points: list[PlanPoint]) -> str:
    return "\n".join(f"{p.number}. {neutralize(' '.join(p.text.split()[:POINT_WORDS]))}"
                     for p in points)


def notes_that_fit(points: list[PlanPoint], room: int) -> list[PlanPoint]:
    """As many points as fit ``room`` tokens, spread evenly over the documents."""
    if count_tokens(render_notes(points)) <= room:
        return points
    step = 1
    while step < len(points):
        step += 1
        chosen = points[::step]
        if count_tokens(render_notes(chosen)) <= room:
            return chosen
    return points[:1]


async def plan(state: WriteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The first outline: the model's, made whole, or one built from the digests."""
    started = time.time()
    _report(runtime, "plan", total=1)
    points = plan_points(state.get("summary_records", []))
    if not points:
        raise InputError("no sentence of the documents could be used as evidence")
    words, topic = state["words"], state["question"]
    count = section_count(words, len(points))
    room = prompt_room(runtime, PLAN_NODE, PLAN_TOKENS, notes="", topic=topic,
                       sections=str(count))
    shown = notes_that_fit(points, room)
    messages = get_prompt(PLAN_NODE).render(notes=render_notes(shown), topic=topic,
                                            sections=str(count))
    reply, call = await runtime.context.llm.timed_chat(messages, PLAN_NODE, max_tokens=PLAN_TOKENS)
    parsed = parse_plan(reply, points)
    sections = outline_from_model(parsed, points, count)
    origin: Literal["model", "code"] = "model"
    if sections is None:
        sections, origin = outline_from_digests(points, count), "code"
    outline = Outline(sections=with_targets(sections, points, words), origin=origin)
    _report(runtime, "plan", advance=1)
    why = ("the model's outline" if origin == "model" else
           f"built from the digests (the model's reply gave {len(parsed)} usable line(s) for "
           f"{count} wanted sections)")
    return {"points": points, "outline": outline, "trace": [_event(
        PLAN_NODE, f"outline of {len(outline.sections)} section(s): {why}", started,
        stage="plan", origin=origin, wanted_sections=count, points=len(points),
        points_shown=len(shown), parsed=parsed, outline=outline.model_dump(), call=call,
        reply=reply[:TRACE_REPLY_CHARS])]}


# --- revise (LLM×MapReduce-V2) -----------------------------------------------------------------

_RETITLE = re.compile(r"^\W*section\s*(\d+)\s*[:.)=-]+\s*(.+)$", re.I)
_NEW = re.compile(r"^\W*new\s+section\s*\d*\s*[:.)=-]*\s*(.+)$", re.I)


def parse_revision(reply: str) -> list[tuple[str, int | None, str]]:
    """("retitle", section number, title) and ("new", None, title) proposals."""
    proposals: list[tuple[str, int | None, str]] = []
    for line in reply.splitlines():
        new = _NEW.match(line)
        if new and (title := _clean_title(new.group(1))):
            proposals.append(("new", None, title))
            continue
        retitle = _RETITLE.match(line)
        if retitle and (title := _clean_title(retitle.group(2))):
            proposals.append(("retitle", int(retitle.group(1)), title))
    return proposals


def merge_revisions(sections: list[Section], points: list[PlanPoint],
                    proposals: list[tuple[int, str, int | None, str]], limit: int
                    ) -> tuple[list[Section], list[dict[str, Any]]]:
    """Apply the windows' proposals (window, kind, section, title) in code.

    A retitle is taken when the new title shares more words with the section's notes
    than its current title does (the best-grounded proposal per section wins). A new
    section takes the window's notes that share a word with its title, when there are
    at least two, the outline stays within ``limit`` sections, and no section is emptied.
    """
    by_number = {p.number: p for p in points}
    sections = [s.model_copy(deep=True) for s in sections]
    decisions: list[dict[str, Any]] = []

    def grounding(title: str, numbers: list[int]) -> int:
        notes = " ".join(by_number[n].text + " " + by_number[n].evidence[0].text
                         for n in numbers)
        return len(content_words(title) & content_words(notes))

    best: dict[int, tuple[int, str, int]] = {}
    for window, kind, number, title in proposals:
        decision = {"window": window, "kind": kind, "section": number, "title": title}
        decisions.append(decision)
        if kind != "retitle":
            continue
        if number is None or not 1 <= number <= len(sections):
            decision["decision"] = "rejected: no such section"
            continue
        section = sections[number - 1]
        score = grounding(title, section.points)
        if title.casefold() in {s.title.casefold() for s in sections}:
            decision["decision"] = "rejected: an existing title"
        elif score <= grounding(section.title, section.points):
            decision["decision"] = "rejected: fits the section's notes no better"
        elif number in best and best[number][0] >= score:
            decision["decision"] = "rejected: another window's title fits better"
        else:
            if number in best:
                decisions[best[number][2]]["decision"] = "rejected: another window's title " \
                                                         "fits better"
            best[number] = (score, title, len(decisions) - 1)
            decision["decision"] = "accepted"
    for number, (_, title, _) in best.items():
        sections[number - 1].title = title
    for index, decision in enumerate(decisions):
        if decision["kind"] != "new":
            continue
        title = str(decision["title"])
        members = [n for n in window_notes(proposals[index][0], points)
                   if grounding(title, [n]) > 0]
        holder = {n: i for i, s in enumerate(sections) for n in s.points}
        emptied = any(set(s.points) <= set(members) for s in sections
                      if set(s.points) & set(members))
        if len(sections) >= limit:
            decision["decision"] = "rejected: the outline has enough sections"
        elif title.casefold() in {s.title.casefold() for s in sections}:
            decision["decision"] = "rejected: an existing title"
        elif len(members) < 2:
            decision["decision"] = "rejected: fewer than two notes fit the title"
        elif emptied:
            decision["decision"] = "rejected: it would empty a section"
        else:
            after = min(holder[n] for n in members)
            for section in sections:
                section.points = [n for n in section.points if n not in members]
            sections.insert(after + 1, Section(title=title, points=members))
            decision["decision"] = "accepted"
            decision["points"] = members
    return [s for s in sections if s.points], decisions


def window_notes(window: int, points: list[PlanPoint]) -> list[int]:
    """The numbers of the notes of the digests in ``window``."""
    return [p.number for p in points if p.digest // REVISION_WINDOW == window]


def _point_words(point: PlanPoint) -> set[str]:
    return content_words(point.text + " " + " ".join(ev.text for ev in point.evidence))


def _mean_fit(number: int, others: list[int], by_number: dict[int, PlanPoint]) -> float:
    """Content words point ``number`` shares with each of ``others``, on average."""
    if not others:
        return 0.0
    words = _point_words(by_number[number])
    return sum(len(words & _point_words(by_number[n])) for n in others) / len(others)


def refine_boundaries(sections: list[Section], points: list[PlanPoint], windows: list[int],
                      retitle: bool) -> tuple[list[Section], list[dict[str, Any]]]:
    """The code's part of a revision: each window's notes that sit at a section boundary
    move to the neighbouring section when they share clearly more words with its notes
    (``MOVE_MARGIN`` times, and at least ``MIN_MOVE_FIT`` on average) than with their
    own; no section is emptied. With ``retitle`` (an outline built in code) the sections
    that changed get titles from their new notes."""
    by_number = {p.number: p for p in points}
    sections = [s.model_copy(deep=True) for s in sections]
    decisions: list[dict[str, Any]] = []
    changed: set[int] = set()
    for window in windows:
        for number in window_notes(window, points):
            holder = next((i for i, s in enumerate(sections) if number in s.points), None)
            if holder is None or len(sections[holder].points) <= 1:
                continue
            own = sections[holder].points
            for other, edge in ((holder - 1, min(own)), (holder + 1, max(own))):
                if not 0 <= other < len(sections) or number != edge:
                    continue
                stay = _mean_fit(number, [n for n in own if n != number], by_number)
                go = _mean_fit(number, sections[other].points, by_number)
                if go >= MIN_MOVE_FIT and go > MOVE_MARGIN * stay:
                    sections[holder].points.remove(number)
                    sections[other].points = sorted([*sections[other].points, number])
                    changed |= {holder, other}
                    decisions.append({
                        "window": window, "kind": "move", "point": number,
                        "from": holder + 1, "to": other + 1, "fit": [round(stay, 2),
                                                                      round(go, 2)],
                        "decision": "accepted"})
                    break
    if retitle:
        groups = [[by_number[n] for n in s.points] for s in sections]
        for i in sorted(changed):
            title = distinctive_title(groups[i], groups[:i] + groups[i + 1:])
            if title and title.casefold() not in {s.title.casefold() for s in sections}:
                sections[i].title = title
    return sections, decisions


async def revise(state: WriteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """One revision layer: every window of neighbouring digests reviews the outline (in
    parallel, as one convolution layer), then the proposals are merged in code."""
    started = time.time()
    points, outline = state["points"], state["outline"]
    topic, words = state["question"], state["words"]
    windows = sorted({p.digest // REVISION_WINDOW for p in points})
    _report(runtime, "revise plan", total=len(windows))
    room = prompt_room(runtime, REVISE_NODE, REVISE_TOKENS, notes="", topic=topic,
                       outline=render_outline(outline.sections))

    async def review(window: int) -> tuple[int, str, dict[str, Any]]:
        numbers = set(window_notes(window, points))
        shown = notes_that_fit([p for p in points if p.number in numbers], room)
        messages = get_prompt(REVISE_NODE).render(
            outline=render_outline(outline.sections), notes=render_notes(shown), topic=topic)
        reply, call = await runtime.context.llm.timed_chat(
            messages, REVISE_NODE, max_tokens=REVISE_TOKENS)
        _report(runtime, "revise plan", advance=1)
        return window, reply, call

    replies = await asyncio.gather(*(review(w) for w in windows))
    proposals = [(w, kind, number, title) for w, reply, _ in replies
                 for kind, number, title in parse_revision(reply)]
    count = section_count(words, len(points))
    sections, decisions = merge_revisions(outline.sections, points, proposals, 2 * count)
    sections, moves = refine_boundaries(sections, points, windows,
                                        retitle=outline.origin == "code")
    decisions += moves
    accepted = sum(d.get("decision") == "accepted" for d in decisions)
    revised = Outline(sections=with_targets(sections, points, words), origin=outline.origin)
    counts = WriteCounts(target_words=words, plan_origin=outline.origin,
                         revisions_accepted=accepted, sources=len(state.get("documents", [])))
    return {"outline": revised, "drafts": [], "counts": counts, "trace": [_event(
        REVISE_NODE, f"revision 1: {len(windows)} window(s) of {REVISION_WINDOW} neighbouring "
        f"digests proposed {len(proposals)} change(s), {accepted} accepted", started,
        stage="revise", revision=1, before=outline.model_dump(), after=revised.model_dump(),
        decisions=decisions, replies=[{"window": w, "reply": r[:TRACE_REPLY_CHARS], "call": c}
                                      for w, r, c in replies])]}


# --- write ----------------------------------------------------------------------------------------


def section_pool(section: Section, points: list[PlanPoint]) -> list[Evidence]:
    """The section's evidence in document order (at most ``MAX_SECTION_EVIDENCE``)."""
    by_number = {p.number: p for p in points}
    pool = [ev for n in section.points for ev in by_number[n].evidence]
    return pool[:MAX_SECTION_EVIDENCE]


def before_text(drafts: list[SectionDraft]) -> str:
    """A short account of what came before: earlier titles, the last two sentences."""
    if not drafts:
        return "nothing yet; this is the first section."
    last = [s.text for p in drafts[-1].paragraphs for s in p][-2:]
    titles = "; ".join(d.title for d in drafts)
    return neutralize(f"sections written: {titles}. The last one ended: {' '.join(last)}",
                      protocol=False)


_ECHO = re.compile(r"<\s*/?\s*[a-z][\w-]*(?:\s[^<>]{0,200})?>|\(?[\w.-]*\.(?:txt|md|pdf)\)?|"
                   r"(?<!\w)(?:txt|md|pdf)\)", re.I)
_PROMPT_LABEL = re.compile(r"^\W*(?:article topic|topic|outline|the article so far|section "
                           r"\S.*? so far|sentence|evidence|notes)\s*:", re.I)


@cache
def _instruction_words() -> list[frozenset[str]]:
    """The content words of each write prompt's own text (its fields left out)."""
    out = []
    for name in (SECTION_NODE, EXTEND_NODE, REWRITE_NODE, PLAN_NODE, REVISE_NODE):
        template = get_prompt(name)
        text = re.sub(r"\{\w+\}", " ", template.system + " " + template.user)
        out.append(frozenset(content_words(text)))
    return out


def echoes_prompt(sentence: str) -> bool:
    """Whether a sentence of the model restates its instructions ("The sentence has facts
    that are not in the evidence ..."): at least ``ECHO_SHARE`` of its (four or more)
    content words come from one prompt's own text."""
    words = content_words(sentence)
    return len(words) >= 4 and any(len(words & w) >= ECHO_SHARE * len(words)
                                   for w in _instruction_words())


def read_prose(reply: str, title: str) -> list[str]:
    """The paragraphs of a prose reply: headings, the title, list markers, HTML tags and
    lines or tags the model copied from the prompt removed, the small model's repeats and a
    cut-off last sentence dropped."""
    lines = []
    for line in reply.splitlines():
        line = _ECHO.sub(" ", line)  # the prompt's tags and file names, copied back
        stripped = line.strip()
        if stripped.startswith("#") or _PROMPT_LABEL.match(stripped) or \
                _clean_title(stripped).casefold() == title.casefold():
            continue
        lines.append(re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", line))
    paragraphs = [markers_inside(" ".join(p.split()))
                  for p in re.split(r"\n\s*\n", "\n".join(lines)) if p.strip()]
    kept, _ = drop_degenerate(paragraphs)
    return kept


def marked_sentences(paragraph: str, pool: list[Evidence], counts: WriteCounts,
                     earlier: list[str]) -> list[Sentence]:
    """The paragraph's sentences with the evidence their markers name (counted). A
    sentence that repeats one of ``earlier`` (the small model loops) is left out and
    counted; kept ones are added to ``earlier``."""
    out = []
    for text, numbers in split_marked(paragraph):
        folded = text.casefold()
        if any(fuzz.ratio(folded, e) >= REPEAT_SIMILARITY for e in earlier) or \
                echoes_prompt(text):
            counts.add(sentences_repeated=1)
            continue
        earlier.append(folded)
        cites = [pool[n - 1] for n in numbers if 1 <= n <= len(pool)]
        counts.add(citations_offered=len(cites), citations_invalid=len(numbers) - len(cites))
        out.append(Sentence(text=terminated(text),
                            cites=list({_key(c): c for c in cites}.values())))
    return out


async def write_section(state: WriteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Write the next section (one step per section, so a resumed run skips done ones)."""
    started = time.time()
    drafts, outline, points = state.get("drafts", []), state["outline"], state["points"]
    counts = state["counts"].model_copy()
    index = len(drafts)
    section = outline.sections[index]
    if index == 0:
        _report(runtime, "write sections", total=len(outline.sections))
    pool = section_pool(section, points)
    paragraphs = max(1, round(section.words / WORDS_PER_PARAGRAPH))
    fields = {"topic": state["question"], "title": section.title,
              "outline": render_outline(outline.sections, index),
              "before": before_text(drafts), "words": str(section.words),
              "paragraphs": str(paragraphs)}
    max_tokens = int(section.words * TOKENS_PER_WORD) + 40
    room = prompt_room(runtime, SECTION_NODE, max_tokens, evidence="", **fields)
    while len(pool) > 1 and count_tokens(evidence_block(pool)) > room:
        pool = pool[:-1]
    messages = get_prompt(SECTION_NODE).render(evidence=evidence_block(pool), **fields)
    reply, call = await runtime.context.llm.timed_chat(
        messages, SECTION_NODE, max_tokens=max_tokens)
    earlier: list[str] = []
    draft = SectionDraft(title=section.title, target=section.words, pool=pool, paragraphs=[
        s for s in (marked_sentences(p, pool, counts, earlier)
                    for p in read_prose(reply, section.title)) if s])
    _report(runtime, "write sections", advance=1)
    return {"drafts": [*drafts, draft], "counts": counts, "trace": [_event(
        SECTION_NODE, f"section {index + 1} of {len(outline.sections)} ({section.title!r}): "
        f"{section_words(draft)} words written for a target of {section.words}", started,
        stage="write", section=index + 1, evidence=len(pool), words=section_words(draft),
        target=section.words, call=call, reply=reply[:TRACE_REPLY_CHARS])]}


def more_sections(state: WriteState) -> Literal["write", "verify"]:
    return "write" if len(state.get("drafts", [])) < len(state["outline"].sections) else "verify"


# --- verify ---------------------------------------------------------------------------------------


def check_citations(sentence: Sentence, pool: list[Evidence]) -> tuple[Sentence, int, int]:
    """The sentence with only supporting citations (or one found in ``pool`` when none
    is left), the number dropped and the number located."""
    kept = [ev for ev in sentence.cites if supports_sentence(ev.text, sentence.text)]
    dropped = len(sentence.cites) - len(kept)
    located = 0
    if not kept:
        found = best_support(sentence.text, pool)
        if found is not None:
            kept, located = [found.model_copy(update={"origin": "located"})
                             if found.origin != "located" else found], 1
    return sentence.model_copy(update={"cites": kept}), dropped, located


def paragraph_missing(paragraph: list[Sentence], index: int, common: frozenset[str]
                      ) -> list[str]:
    """Figures of sentence ``index`` in no cited source sentence of its paragraph
    (``common``: the documents' lower-case words, see ``write_verify.figures``)."""
    return untraced(paragraph[index].text, [ev.text for s in paragraph for ev in s.cites],
                    common)


def trace_figures(paragraph: list[Sentence], index: int, pool: list[Evidence],
                  common: frozenset[str]) -> list[str]:
    """Figures still missing after looking in ``pool`` for a supporting sentence that
    holds them (added to the sentence's citations)."""
    missing = paragraph_missing(paragraph, index, common)
    if not missing:
        return []
    sentence = paragraph[index]
    holders = [ev for ev in pool if supports_sentence(ev.text, sentence.text)
               and len(untraced(sentence.text, [ev.text], common))
               < len(figures(sentence.text, common))
               and _key(ev) not in {_key(c) for c in sentence.cites}]
    holders.sort(key=lambda ev: support_score(ev.text, sentence.text), reverse=True)
    for ev in holders:
        paragraph[index] = sentence = sentence.model_copy(
            update={"cites": [*sentence.cites, ev]})
        missing = paragraph_missing(paragraph, index, common)
        if not missing:
            break
    return missing


def settle_paragraph(paragraph: list[Sentence], pool: list[Evidence], counts: WriteCounts,
                     common: frozenset[str]
                     ) -> tuple[list[Sentence], list[tuple[int, list[str]]]]:
    """Citations checked, figures traced where the pool can; the sentences whose figures
    remain untraced (index, missing figures)."""
    checked = []
    for sentence in paragraph:
        sentence, dropped, located = check_citations(sentence, pool)
        counts.add(citations_unsupported=dropped, citations_located=located)
        checked.append(sentence)
    failing = []
    for i in range(len(checked)):
        missing = trace_figures(checked, i, pool, common)
        if missing:
            failing.append((i, missing))
    return checked, failing


def prune_paragraph(paragraph: list[Sentence], common: frozenset[str]
                    ) -> tuple[list[Sentence], int]:
    """Remove sentences with untraced figures until none is left (removing one may take
    away a citation another relied on); how many were removed."""
    removed = 0
    while True:
        bad = [i for i in range(len(paragraph)) if paragraph_missing(paragraph, i, common)]
        if not bad:
            return paragraph, removed
        paragraph = [s for i, s in enumerate(paragraph) if i != bad[0]]
        removed += 1


async def rewrite(sentence: Sentence, missing: list[str], paragraph: list[Sentence],
                  pool: list[Evidence], runtime: Runtime[RunContext]) -> Sentence | None:
    """One rewrite of a sentence with untraced figures, from its paragraph's citations and
    the pool's best evidence for it; None when the reply has no sentence."""
    cited = list({_key(ev): ev for s in paragraph for ev in s.cites}.values())
    extra = sorted((ev for ev in pool if _key(ev) not in {_key(c) for c in cited}),
                   key=lambda ev: support_score(ev.text, sentence.text), reverse=True)
    shown = (cited + extra)[:4]
    if not shown:
        return None
    messages = get_prompt(REWRITE_NODE).render(
        evidence=evidence_block(shown), sentence=neutralize(sentence.text, protocol=False),
        missing=", ".join(missing))
    reply, _ = await runtime.context.llm.timed_chat(
        messages, REWRITE_NODE, max_tokens=REWRITE_TOKENS)
    paragraphs = read_prose(reply, "")
    if not paragraphs:
        return None
    first = split_marked(paragraphs[0])
    if not first:
        return None
    text, numbers = first[0]
    if echoes_prompt(text):
        return None
    cites = [shown[n - 1] for n in numbers if 1 <= n <= len(shown)]
    return Sentence(text=terminated(text), cites=cites, kind="rewritten")


async def verify_paragraphs(paragraphs: list[list[Sentence]], pool: list[Evidence],
                            counts: WriteCounts, runtime: Runtime[RunContext],
                            common: frozenset[str]) -> list[list[Sentence]]:
    """The verify rules on some paragraphs: citations, figures, one rewrite, removal."""
    settled = [settle_paragraph(p, pool, counts, common) for p in paragraphs]

    async def fix(paragraph: list[Sentence], failing: list[tuple[int, list[str]]]
                  ) -> list[Sentence]:
        paragraph = list(paragraph)
        new = await asyncio.gather(*(rewrite(paragraph[i], missing, paragraph, pool, runtime)
                                     for i, missing in failing))
        counts.add(sentences_rewritten=len(failing))
        for (i, _), sentence in zip(failing, new, strict=True):
            if sentence is None:
                continue
            trial = list(paragraph)
            trial[i], dropped, located = check_citations(sentence, pool)
            if not trace_figures(trial, i, pool, common):
                paragraph[i] = trial[i]
                counts.add(rewrites_kept=1, citations_unsupported=dropped,
                           citations_located=located)
        paragraph, removed = prune_paragraph(paragraph, common)
        counts.add(sentences_removed=removed)
        return paragraph

    fixed = await asyncio.gather(*(fix(p, f) for p, f in settled))
    return [p for p in fixed if p]


async def verify(state: WriteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Check every section's citations and figures (rewrites run concurrently)."""
    started = time.time()
    counts = state["counts"].model_copy()
    drafts = state["drafts"]
    common = document_words(state.get("documents", []))
    _report(runtime, "verify", total=len(drafts))
    before = counts.model_copy()

    async def one(draft: SectionDraft) -> SectionDraft:
        paragraphs = await verify_paragraphs(draft.paragraphs, draft.pool, counts, runtime,
                                             common)
        _report(runtime, "verify", advance=1)
        return draft.model_copy(update={"paragraphs": paragraphs})

    checked = await asyncio.gather(*(one(d) for d in drafts))
    delta = {k: v - getattr(before, k) for k, v in counts.model_dump().items()
             if isinstance(v, int) and v != getattr(before, k)}
    return {"drafts": checked, "counts": counts, "trace": [_event(
        "write.verify", f"citations: {counts.citations_unsupported} unsupported dropped, "
        f"{counts.citations_located} located in code; {counts.sentences_rewritten} "
        f"sentence(s) with untraced figures rewritten, {counts.rewrites_kept} kept, "
        f"{counts.sentences_removed} removed", started, stage="verify", changes=delta)]}


# --- conflicts ----------------------------------------------------------------------------------


def cited_keys(drafts: list[SectionDraft]) -> set[tuple[str, int, int]]:
    return {_key(ev) for d in drafts for p in d.paragraphs for s in p for ev in s.cites}


async def conflicts(state: WriteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """State side by side the values different sources give for one thing, where the
    article cites one of them (in the section citing it)."""
    started = time.time()
    counts = state["counts"].model_copy()
    drafts = [d.model_copy(deep=True) for d in state["drafts"]]
    pool = [ev for p in state["points"] for ev in p.evidence]
    common = document_words(state.get("documents", []))
    found = find_conflicts(pool)
    stated = []
    for conflict in found:
        sides = {_key(conflict.first), _key(conflict.second)}
        home = next((d for d in drafts if sides & cited_keys([d])), None)
        if home is None:
            continue
        sentence = Sentence(text=conflict.sentence(), cites=[conflict.first, conflict.second],
                            kind="conflict")
        if any(not supports_sentence(ev.text, sentence.text) for ev in sentence.cites) or \
                paragraph_missing([sentence], 0, common):
            continue
        home.paragraphs.append([sentence])
        stated.append({"section": home.title, "subject": conflict.subject,
                       "values": [conflict.first_value, conflict.second_value],
                       "sources": [conflict.first.source, conflict.second.source]})
    counts.add(conflicts=len(stated))
    return {"drafts": drafts, "counts": counts, "trace": [_event(
        "write.conflicts", f"{len(found)} conflicting value pair(s) in the evidence, "
        f"{len(stated)} stated in the article (the others are not cited)", started,
        stage="conflicts", stated=stated, found=len(found))]}


# --- length -------------------------------------------------------------------------------------


def evidence_sentence(ev: Evidence, lead: int) -> Sentence:
    """A quoted evidence sentence as a sentence of the article (it cites itself)."""
    quote = " ".join(ev.text.split()).strip()
    text = terminated(f"{EVIDENCE_LEADS[lead % len(EVIDENCE_LEADS)]} \"{quote}\"")
    return Sentence(text=text, cites=[ev], kind="evidence")


def quotable(ev: Evidence) -> bool:
    """Whether an evidence span can be quoted as a sentence of its own: one whole sentence
    of ``MIN_QUOTE_WORDS`` to ``MAX_EVIDENCE_WORDS`` words (no fragment, no pair, no
    heading in capitals)."""
    letters = [ch for ch in ev.text if ch.isalpha()]
    capitals = sum(ch.isupper() for ch in letters) / max(1, len(letters))
    return MIN_QUOTE_WORDS <= count_words(ev.text) <= MAX_EVIDENCE_WORDS and \
        len(sentences(ev.text)) == 1 and capitals < 0.5


def unused_evidence(draft: SectionDraft, points: list[PlanPoint],
                    cited: set[Any]) -> list[Evidence]:
    """Evidence the article does not cite: the section's own first, then the rest by the
    words it shares with the section."""
    own = [ev for ev in draft.pool if _key(ev) not in cited and quotable(ev)]
    words = content_words(draft.title + " " + " ".join(ev.text for ev in draft.pool))
    rest = [ev for p in points for ev in p.evidence if quotable(ev)
            and _key(ev) not in cited and _key(ev) not in {_key(o) for o in own}]
    rest.sort(key=lambda ev: -len(words & content_words(ev.text)))
    return own + rest


def fill_from_evidence(draft: SectionDraft, candidates: list[Evidence], cited: set[Any],
                       counts: WriteCounts) -> None:
    """Append quoted evidence sentences until the section reaches its aim (none that
    would carry it past the upper aim)."""
    low, high = draft.target * (1 - LENGTH_AIM), draft.target * (1 + LENGTH_AIM)
    for ev in candidates:
        words = section_words(draft)
        if words >= low:
            return
        sentence = evidence_sentence(ev, counts.sentences_from_evidence)
        size = count_words(sentence.text)
        if _key(ev) in cited or not quotable(ev) or words + size > high:
            continue
        _append(draft, sentence)
        cited.add(_key(ev))
        counts.add(sentences_from_evidence=1)


def _append(draft: SectionDraft, sentence: Sentence) -> None:
    last = draft.paragraphs[-1] if draft.paragraphs else None
    if last is None or last[-1].kind == "conflict" or \
            sum(count_words(s.text) for s in last) >= WORDS_PER_PARAGRAPH:
        draft.paragraphs.append([sentence])
    else:
        last.append(sentence)


def trim(draft: SectionDraft, counts: WriteCounts, protected: set[Any]) -> None:
    """Remove sentences until the section is within its upper aim: uncited first, then
    quoted evidence, then the rest; one whose removal lands within the aim first, else
    the last one; never a conflict statement, a
    section's last citation or the only citation of a source (``protected``)."""
    high, low = draft.target * (1 + LENGTH_AIM), draft.target * (1 - LENGTH_TOLERANCE)
    while section_words(draft) > high:
        words = section_words(draft)
        cited_here = sum(bool(s.cites) for p in draft.paragraphs for s in p)
        options = []
        for pi, paragraph in enumerate(draft.paragraphs):
            for si, s in enumerate(paragraph):
                size = count_words(s.text)
                if s.kind == "conflict" or words - size < low or \
                        any(_key(ev) in protected for ev in s.cites) or \
                        (s.cites and cited_here <= 1):
                    continue
                rank = 0 if not s.cites else 1 if s.kind == "evidence" else 2
                options.append((rank, words - size > high, -pi, -si, pi, si))
        if not options:
            return
        *_, pi, si = min(options)
        del draft.paragraphs[pi][si]
        draft.paragraphs = [p for p in draft.paragraphs if p]
        counts.add(sentences_trimmed=1)


def sole_citations(drafts: list[SectionDraft]) -> set[tuple[str, int, int]]:
    """Citations that are their source's only one in the article."""
    by_source: dict[str, set[Any]] = {}
    for key in cited_keys(drafts):
        by_source.setdefault(key[0], set()).add(key)
    return {next(iter(keys)) for keys in by_source.values() if len(keys) == 1}


async def extend(draft: SectionDraft, candidates: list[Evidence], counts: WriteCounts,
                 runtime: Runtime[RunContext], common: frozenset[str]) -> SectionDraft:
    """One model call continuing a short section from unused evidence, verified."""
    need = draft.target - section_words(draft)
    shown = candidates
    text = " ".join(s.text for p in draft.paragraphs for s in p)
    max_tokens = int(need * TOKENS_PER_WORD) + 40
    room = prompt_room(runtime, EXTEND_NODE, max_tokens, title=draft.title, text="",
                       evidence=evidence_block(shown), words=str(need))
    text = " ".join(text.split()[-max(20, room // 2):])
    messages = get_prompt(EXTEND_NODE).render(
        title=draft.title, text=neutralize(text, protocol=False), evidence=evidence_block(shown),
        words=str(need))
    reply, _ = await runtime.context.llm.timed_chat(messages, EXTEND_NODE, max_tokens=max_tokens)
    counts.add(sections_extended=1)
    earlier = [s.text.casefold() for p in draft.paragraphs for s in p]
    new = [s for s in (marked_sentences(p, shown, counts, earlier)
                       for p in read_prose(reply, draft.title)) if s]
    checked = await verify_paragraphs(new, shown, counts, runtime, common)
    draft = draft.model_copy(deep=True)
    high = draft.target * (1 + LENGTH_AIM)
    for paragraph in checked:
        kept: list[Sentence] = []
        for sentence in paragraph:
            if section_words(draft) + sum(count_words(s.text) for s in kept) + \
                    count_words(sentence.text) > high:
                break
            kept.append(sentence)
        kept, removed = prune_paragraph(kept, common)  # a cut may drop a needed citation
        counts.add(sentences_removed=removed)
        if kept:
            draft.paragraphs.append(kept)
    return draft


async def length(state: WriteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Bring every section within its target's tolerance; cite every source once."""
    started = time.time()
    counts = state["counts"].model_copy()
    points = state["points"]
    drafts = [d.model_copy(deep=True) for d in state["drafts"]]
    _report(runtime, "length", total=len(drafts))
    before = {i: section_words(d) for i, d in enumerate(drafts)}
    cited = cited_keys(drafts)
    reserved = set(cited)  # each short section extends from evidence of its own
    offers: dict[int, list[Evidence]] = {}
    for i, draft in enumerate(drafts):
        if section_words(draft) < draft.target * (1 - LENGTH_AIM):
            offer = unused_evidence(draft, points, reserved)[:MAX_SECTION_EVIDENCE // 2]
            if offer:
                offers[i] = offer
                reserved.update(_key(ev) for ev in offer)
    short = list(offers)
    common = document_words(state.get("documents", []))
    extended = await asyncio.gather(*(extend(drafts[i], offers[i], counts, runtime, common)
                                      for i in short))
    for i, draft in zip(short, extended, strict=True):
        drafts[i] = draft
    cited = cited_keys(drafts)
    for draft in drafts:
        fill_from_evidence(draft, unused_evidence(draft, points, cited), cited, counts)
        if not any(s.cites for p in draft.paragraphs for s in p):
            candidates = unused_evidence(draft, points, cited) or \
                [ev for ev in draft.pool if quotable(ev)]
            if candidates:
                _append(draft, evidence_sentence(candidates[0], counts.sentences_from_evidence))
                cited.add(_key(candidates[0]))
                counts.add(sentences_from_evidence=1)
    sources = {d.source for d in state.get("documents", [])}
    for source in sorted(sources - {k[0] for k in cited_keys(drafts)}):
        own = [ev for p in points for ev in p.evidence if ev.source == source
               and quotable(ev)]
        if not own:
            continue
        fits = [(len(content_words(d.title + " " + " ".join(e.text for e in d.pool))
                     & content_words(ev.text)), -section_words(d) / d.target, i, ev)
                for i, d in enumerate(drafts) for ev in own]
        _, _, i, ev = max(fits, key=lambda f: f[:3])
        _append(drafts[i], evidence_sentence(ev, counts.sentences_from_evidence))
        counts.add(sentences_from_evidence=1)
    protected = sole_citations(drafts)
    for draft in drafts:
        trim(draft, counts, protected)
        _report(runtime, "length", advance=1)
    rows: list[dict[str, Any]] = [{"section": d.title, "target": d.target, "before": before[i],
             "after": section_words(d)} for i, d in enumerate(drafts)]
    return {"drafts": drafts, "counts": counts, "trace": [_event(
        "write.length", f"{len(short)} short section(s) extended by the model; "
        f"{counts.sentences_from_evidence} evidence sentence(s) added, "
        f"{counts.sentences_trimmed} trimmed; {sum(r['after'] for r in rows)} words for "
        f"{sum(r['target'] for r in rows)}", started, stage="length", sections=rows)]}


# --- assemble -------------------------------------------------------------------------------------


def check_rendered(sections: list[ArticleSection], references: list[Reference],
                   common: frozenset[str]) -> tuple[int, int]:
    """(citations not supporting their sentence, figures in no cited sentence of their
    paragraph), read back from the article's text as a reader sees it."""
    quotes = {r.number: r.quote for r in references}
    unsupported = untraced_figures = 0
    for section in sections:
        for paragraph in section.paragraphs:
            pairs = split_marked(paragraph.text)
            cited = [quotes[n] for _, numbers in pairs for n in numbers if n in quotes]
            for sentence, numbers in pairs:
                unsupported += sum(n not in quotes or not supports_sentence(quotes[n], sentence)
                                   for n in numbers)
                untraced_figures += len(untraced(sentence, cited, common))
    return unsupported, untraced_figures


def assemble_article(topic: str, drafts: list[SectionDraft], documents: list[Document],
                     counts: WriteCounts) -> dict[str, Any]:
    """The article's sections, references, citations, Markdown and final counts."""
    docs = {d.source: d for d in documents}
    numbers: dict[tuple[str, int, int], int] = {}
    references: list[Reference] = []
    citations: list[Citation] = []
    sections: list[ArticleSection] = []
    paragraph_number = 0
    for draft in drafts:
        paragraphs = []
        for paragraph in draft.paragraphs:
            paragraph_number += 1
            parts: list[str] = []
            used: list[Any] = []
            for sentence in paragraph:
                marks = []
                for ev in sentence.cites:
                    if _key(ev) not in numbers:
                        numbers[_key(ev)] = len(numbers) + 1
                        doc = docs.get(ev.source)
                        page = doc.page_at(ev.start) if doc else None
                        references.append(Reference(number=numbers[_key(ev)], source=ev.source,
                                                    page=page, start=ev.start, end=ev.end,
                                                    quote=ev.text, origin=ev.origin))
                        citations.append(Citation(source=ev.source, page=page, start=ev.start,
                                                  end=ev.end, quote=ev.text, origin=ev.origin,
                                                  paragraph=paragraph_number))
                    marks.append(numbers[_key(ev)])
                used.extend(m for m in marks if m not in used)
                parts.append(sentence.text + (" " + "".join(f"[{m}]" for m in marks)
                                              if marks else ""))
            paragraphs.append(ArticleParagraph(text=" ".join(parts), citations=used))
        sections.append(ArticleSection(title=draft.title, target_words=draft.target,
                                       words=section_words(draft), paragraphs=paragraphs))
    unsupported, untraced_figures = check_rendered(sections, references,
                                                   document_words(documents))
    uncited = sum(not s.cites for d in drafts for p in d.paragraphs for s in p)
    counts = counts.model_copy(update={
        "words": sum(s.words for s in sections), "sections": len(sections),
        "citations": len(references), "unsupported_left": unsupported,
        "untraced_left": untraced_figures, "sentences_uncited": uncited,
        "sources_cited": len({r.source for r in references})})
    title = topic.strip().rstrip(".?!") or "Article"
    lines = [f"# {title[:1].upper() + title[1:]}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for written in section.paragraphs:
            lines += [written.text, ""]
    lines += ["## References", ""]
    for ref in references:
        where = f", page {ref.page}" if ref.page else ""
        quote = " ".join(ref.quote.split())
        lines.append(f"{ref.number}. {PurePath(ref.source).name}{where}, chars "
                     f"{ref.start}-{ref.end}: \"{quote}\"")
    return {"markdown": "\n".join(lines).rstrip() + "\n", "sections": sections,
            "references": references, "citations": citations, "counts": counts,
            "supported": bool(sections) and all(any(p.citations for p in s.paragraphs)
                                                for s in sections)}


async def assemble(state: WriteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    started = time.time()
    data = assemble_article(state["question"], state["drafts"],
                            state.get("documents", []), state["counts"])
    counts: WriteCounts = data["counts"]
    _report(runtime, "done", total=1, advance=1)
    return {"article_data": data, "trace": [_event(
        "write.assemble", f"{counts.words} words in {counts.sections} section(s) for a target "
        f"of {counts.target_words}; {counts.citations} citation(s); left unsupported "
        f"{counts.unsupported_left}, untraced figures {counts.untraced_left}", started,
        stage="assemble", counts=counts.model_dump())]}


# --- graphs ---------------------------------------------------------------------------------------


def build_write() -> CompiledGraph:
    """START -> digest (one per chunk) -> plan -> revise -> write (one step per section)
    -> verify -> conflicts -> length -> assemble -> END."""
    graph = StateGraph(WriteState, context_schema=RunContext, output_schema=WriteOutput)
    graph.add_node("digest", digest)  # type: ignore[arg-type]  # fed by Send, not the state
    graph.add_node("plan", plan)
    graph.add_node("revise", revise)
    graph.add_node("write", write_section)
    graph.add_node("verify", verify)
    graph.add_node("conflicts", conflicts)
    graph.add_node("length", length)
    graph.add_node("assemble", assemble)
    graph.add_conditional_edges(START, fan_out, ["digest"])
    graph.add_edge("digest", "plan")
    graph.add_edge("plan", "revise")
    graph.add_edge("revise", "write")
    graph.add_conditional_edges("write", more_sections, ["write", "verify"])
    graph.add_edge("verify", "conflicts")
    graph.add_edge("conflicts", "length")
    graph.add_edge("length", "assemble")
    graph.add_edge("assemble", END)
    return graph.compile()


def build_write_graph(checkpointer: BaseCheckpointSaver[Any] | None = None) -> CompiledGraph:
    """The shared ingest and chunk nodes, then the write subgraph."""
    from longdoc.pipeline.graph import chunk, ingest

    graph = StateGraph(WriteState, context_schema=RunContext, input_schema=Request)
    graph.add_node("ingest", ingest)
    graph.add_node("chunk", chunk)
    graph.add_node("write", build_write())
    graph.add_edge(START, "ingest")
    graph.add_edge("ingest", "chunk")
    graph.add_edge("chunk", "write")
    graph.add_edge("write", END)
    return graph.compile(checkpointer=checkpointer)


@cache
def compiled_write_graph() -> CompiledGraph:
    return build_write_graph()


def stage_usage(article: Answer) -> dict[str, dict[str, float]]:
    """LLM calls, tokens and model seconds per stage, from the usage by node."""
    stages: dict[str, dict[str, float]] = {}
    for node, usage in article.usage.by_node.items():
        row = stages.setdefault(STAGES.get(node, node), {"calls": 0, "tokens": 0, "llm_s": 0.0})
        row["calls"] += usage.llm_calls
        row["tokens"] += usage.prompt_tokens + usage.completion_tokens
        row["llm_s"] = round(row["llm_s"] + usage.latency_s, 3)
    return stages


def stage_seconds(trace: list[TraceEvent]) -> dict[str, float]:
    """Wall seconds per stage from the trace: each stage runs from its first event's
    start to the next stage's (digest: from the first digest's start to the plan)."""
    starts: dict[str, float] = {}
    for event in trace:
        stage = event.data.get("stage") or ("digest" if event.node == "write.digest" else None)
        at = event.data.get("started_at")
        if stage and at is not None:
            starts[stage] = min(starts.get(stage, at), at)
    ends = {e.data.get("stage"): e.data["started_at"] + e.data["elapsed_s"]
            for e in trace if e.data.get("stage") == "assemble"}
    order = sorted(starts, key=lambda stage: starts[stage])
    out = {}
    for i, stage in enumerate(order):
        end = starts[order[i + 1]] if i + 1 < len(order) else ends.get(stage, starts[stage])
        out[stage] = round(end - starts[stage], 3)
    return out


def article_from_state(state: dict[str, Any], usage_answer: Answer) -> Article:
    """The ``Article`` of a finished run (``usage_answer`` carries usage, time, trace)."""
    data = state["article_data"]
    counts = data["counts"] if isinstance(data["counts"], WriteCounts) else \
        WriteCounts.model_validate(data["counts"])
    return Article(
        **usage_answer.model_dump(exclude={"answer", "citations", "supported",
                                           "dropped_quotes", "unsupported_citations"}),
        answer=data["markdown"], citations=data["citations"], supported=data["supported"],
        dropped_quotes=counts.citations_invalid,
        unsupported_citations=counts.citations_unsupported,
        topic=state["question"], target_words=state["words"],
        words=counts.words, sections=data["sections"], references=data["references"],
        counts=counts)

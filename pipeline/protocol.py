"""Tolerant parsing of plain-text model replies (small models ignore formats)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field

from longdoc.pipeline.models import Quote

_LABEL = r"(?:quote|evidence|supporting (?:sentence|quote|text)|source|citation)s?"
_QUOTE_LINE = re.compile(
    rf"^\s*[*_#>\-\s]*{_LABEL}\s*[*_]*\s*[:\-]\s*[*_]*\s*(.*)$", re.I | re.M
)
_ANSWER_LABEL = re.compile(
    r"^\s*[*_#\s]*(?:(?:the\s+)?(?:final\s+)?answer(?:\s+to\s+(?:the|this|your)\s+question)?"
    r"(?:\s+is)?)\s*[*_]*\s*[:\-]\s*[*_]*\s*",
    re.I,
)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Prompt text a model echoes after its answer: a "<placeholder ...>" line (maybe cut off)
# or the document block's tags, as the prompt shows them or as ``injection.break_markup``
# left a document's own (``‹/document>``). The answer ends where the echo starts.
_TEMPLATE_ECHO = re.compile(r"\s*(?:^[ \t]*<[a-z/]|[<‹]\s*/?\s*document\b).*",
                            re.I | re.M | re.S)
_QUOTED = re.compile(r"\"([^\"]{20,})\"|“([^”]{20,})”")
_NOT_FOUND = re.compile(
    r"^\W*(?:none|n/?a|unknown|no)\W*$"
    r"|\b(?:not (?:found|mentioned|stated|given|provided|specified|available)|no answer"
    r"|(?:does|do) not (?:contain|mention|say|state|provide|specify)|there is no (?:information"
    r"|mention))\b",
    re.I,
)


class ParsedReply(BaseModel):
    """An answer and the quotes a model offered for it."""

    answer: str
    quotes: list[Quote] = Field(default_factory=list)
    found: bool = True


def _strip_quotes(text: str) -> str:
    return text.strip().strip("\"'“”‘’`").strip()


_QUESTION_ECHO = re.compile(r"\A(?:\s*[*_#>]*\s*question\s*[*_]*\s*:[^\n]*(?:\n|\Z))+", re.I)
_LABELLED_ANSWER = re.compile(r"^\s*[*_#]*\s*(?:final\s+)?answer\s*[*_]*\s*:", re.I | re.M)
_NEW_TURN = re.compile(r"^\s*[*_#>]*\s*question\s*[*_]*\s*:", re.I | re.M)


def drop_question_echo(reply: str) -> str:
    """``reply`` without the "Question: ..." lines a model copies from its prompt before
    answering (the answer is what follows them, if anything)."""
    return _QUESTION_ECHO.sub("", reply.strip(), count=1).strip()


def parse_answer(reply: str) -> ParsedReply:
    """Split a reply into its answer and quotes, and tell whether it claims no answer.

    The answer is the reply's first paragraph (small models ramble on after it), or
    what follows its "Answer:" label; "Question: ..." lines copied from the prompt before
    it are dropped, and a "Question: ..." line after it starts a turn the model made up
    (its "Answer:" there is not the answer).

    Quotes come from labelled lines ("Quote: ...", "Evidence: ...") and from long
    double-quoted passages anywhere in the reply. Every quote is only a candidate:
    the citation verifier decides whether it occurs in the source.
    """
    text = drop_question_echo(reply)
    turn = _NEW_TURN.search(text)
    if turn and text[:turn.start()].strip():  # the model ran on into a turn of its own
        text = text[:turn.start()].strip()
    match = _QUOTE_LINE.search(text)
    answer_part = text[: match.start()] if match else text
    labelled = _LABELLED_ANSWER.search(answer_part)
    if labelled and labelled.start() > 0:  # an answer line after the model's preamble
        answer_part = answer_part[labelled.start():]
    quotes = [_strip_quotes(m.group(1)) for m in _QUOTE_LINE.finditer(text)]
    quotes += [_strip_quotes(a or b) for a, b in _QUOTED.findall(text)]
    answer = _ANSWER_LABEL.sub("", answer_part.strip()).strip()
    if not answer:
        answer = _ANSWER_LABEL.sub("", text).strip()
    answer = _PARAGRAPH_BREAK.split(answer, maxsplit=1)[0].strip()
    answer = _answer_lines(_TEMPLATE_ECHO.sub("", answer, count=1).strip())
    unique = list(dict.fromkeys(q for q in quotes if q))
    return ParsedReply(
        answer=answer,
        quotes=[Quote(text=q) for q in unique],
        found=bool(answer) and not _NOT_FOUND.search(answer),
    )


# --- the map protocol (map-reduce strategy) -------------------------------------------

Confidence = Literal["high", "medium", "low"]

_MAP_LABEL = re.compile(
    r"^[ \t]*[*_#>\-]*[ \t]*[*_]*[ \t]*"
    r"(information|extracted information|rationale|reasoning|(?:final |intermediate )?answer"
    r"|quotes?|evidence|confidence(?: score| level)?)"
    r"[ \t]*[*_]*[ \t]*(?::|-(?=\s))[ \t]*[*_]*[ \t]*",
    re.I | re.M,
)
_FIELD_OF_LABEL = {
    "information": "information", "extracted information": "information",
    "rationale": "rationale", "reasoning": "rationale",
    "answer": "answer", "final answer": "answer", "intermediate answer": "answer",
    "quote": "quote", "quotes": "quote", "evidence": "quote",
    "confidence": "confidence", "confidence score": "confidence",
    "confidence level": "confidence",
}
_LEVEL_WORD = re.compile(r"\b(high|medium|moderate|low)\b", re.I)
_LEVEL_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/\s*(\d+)|(%))?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ANSWER_PREAMBLE = re.compile(
    r"^(?:the )?answer(?: to (?:the|this|your) question)? is\s*:?\s*", re.I
)
MAX_UNLABELLED_ANSWER_CHARS = 300


class MapReply(BaseModel):
    """One chunk's reply in the map protocol, read tolerantly.

    ``parsed`` is False when no answer could be read (an empty reply, symbols only,
    labels without an answer). Information and Rationale fields are recognised as labels
    (so they end the field before them) and otherwise ignored.
    """

    answer: str = ""
    quotes: list[Quote] = Field(default_factory=list)
    confidence: Confidence | None = None
    found: bool = False
    parsed: bool = False


def parse_confidence(text: str) -> Confidence | None:
    """A confidence level from a word (high/medium/low) or a score (0.8, 4/5, 80%)."""
    word = _LEVEL_WORD.search(text)
    if word:
        level = word.group(1).lower()
        return "medium" if level == "moderate" else level  # type: ignore[return-value]
    number = _LEVEL_NUMBER.search(text)
    if not number:
        return None
    value = float(number.group(1))
    if number.group(2):
        value /= max(float(number.group(2)), 1.0)
    elif number.group(3) or value > 1:
        value /= 100 if (number.group(3) or value > 10) else 10
    return "high" if value >= 0.8 else "medium" if value >= 0.5 else "low"


def _first_paragraph(text: str) -> str:
    return _PARAGRAPH_BREAK.split(text.strip(), maxsplit=1)[0].strip()


_COMPLETE_LINE = re.compile(r"^[^\n]*[.!?][\"')\]”’]*[ \t]*\n")


def _answer_lines(paragraph: str) -> str:
    """An answer paragraph without what the model added on the next lines: a first line
    that ends a sentence is the whole answer ("... is 96700.\nThis is a special")."""
    complete = _COMPLETE_LINE.match(paragraph)
    return complete.group(0).strip() if complete else paragraph


def parse_map_reply(reply: str) -> MapReply:
    """Read an Information/Rationale/Answer/Quote/Confidence reply, labels optional.

    Without labels the reply's first paragraph is the answer (cut to its first sentence
    when it rambles on). Quotes come from ``Quote:``/``Evidence:`` fields and from long
    double-quoted passages anywhere; each is only a candidate for the verifier.
    """
    text = reply.strip()
    if not text:
        return MapReply()
    labels = list(_MAP_LABEL.finditer(text))
    fields: dict[str, list[str]] = {}
    for i, match in enumerate(labels):
        end = labels[i + 1].start() if i + 1 < len(labels) else len(text)
        field = _FIELD_OF_LABEL[" ".join(match.group(1).lower().split())]
        fields.setdefault(field, []).append(text[match.end():end].strip())
    if labels:
        answer = _first_paragraph(fields["answer"][0]) if "answer" in fields else ""
        if not answer and "answer" not in fields:
            answer = _first_paragraph(text[: labels[0].start()])
    else:
        answer = _first_paragraph(text)
        if len(answer) > MAX_UNLABELLED_ANSWER_CHARS:
            answer = _SENTENCE_END.split(answer, maxsplit=1)[0]
    answer = _answer_lines(_ANSWER_PREAMBLE.sub("", answer))
    if len(answer) > 1 and answer[0] in "\"'“‘`" and answer[-1] in "\"'”’`":
        answer = answer[1:-1].strip()
    quotes = [_strip_quotes(_first_paragraph(q)) for q in fields.get("quote", [])]
    quotes += [_strip_quotes(a or b) for a, b in _QUOTED.findall(text)]
    unique = list(dict.fromkeys(q for q in quotes if q))
    confidence = parse_confidence(fields["confidence"][0]) if "confidence" in fields else None
    usable = any(ch.isalnum() for ch in answer)
    return MapReply(
        answer=answer if usable else "",
        quotes=[Quote(text=q) for q in unique],
        confidence=confidence,
        found=usable and not _NOT_FOUND.search(answer),
        parsed=usable,
    )


# --- answers that only repeat the prompt -------------------------------------------------

PROMPT_SHINGLE_WORDS = 5  # an answer sharing this many words in a row with a prompt echoes it
_PROMPT_LABEL = re.compile(
    r"^\W*(?:question|quote|information|rationale|confidence|report|passages?|document)s?"
    r"\s*:", re.I)
_PLACEHOLDER = re.compile(r"<[^<>]*\b(?:sentence|answer|quote|facts?|text|how)\b[^<>]*>?", re.I)
_AFFIRMATIONS = frozenset({"yes", "no"})


def _shingles(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@lru_cache(maxsize=1)
def prompt_shingles() -> frozenset[tuple[str, ...]]:
    """Every run of ``PROMPT_SHINGLE_WORDS`` words of the registered prompts' own text
    (their fields left out) and of the answer-format instructions."""
    from longdoc.prompts import all_prompts
    from longdoc.prompts.direct import ANSWER_FORMATS

    parts = [p for t in all_prompts().values() for p in (t.system, t.user)]
    found: set[tuple[str, ...]] = set()
    for part in [*parts, *ANSWER_FORMATS.values()]:
        for piece in re.split(r"\{\w+\}", part):
            found |= _shingles(re.findall(r"[^\W_]+", piece.casefold()), PROMPT_SHINGLE_WORDS)
    return frozenset(found)


def echoes_prompt(answer: str) -> bool:
    """Whether ``answer`` repeats prompt text: a protocol label ("Question: ..."), a
    template placeholder ("<a sentence copied ...>") or a run of a prompt's words."""
    if _PROMPT_LABEL.match(answer) or _PLACEHOLDER.search(answer):
        return True
    tokens = re.findall(r"[^\W_]+", answer.casefold())
    return bool(_shingles(tokens, PROMPT_SHINGLE_WORDS) & prompt_shingles())


def cut_prompt_echo(answer: str) -> str:
    """``answer`` up to where it starts repeating prompt text (a template placeholder or
    a run of a prompt's words); all of it if it does not."""
    cut = len(answer)
    placeholder = _PLACEHOLDER.search(answer)
    if placeholder:
        cut = placeholder.start()
    tokens = list(re.finditer(r"[^\W_]+", answer[:cut].casefold()))
    shingles = prompt_shingles()
    for i in range(len(tokens) - PROMPT_SHINGLE_WORDS + 1):
        if tuple(t.group(0) for t in tokens[i:i + PROMPT_SHINGLE_WORDS]) in shingles:
            cut = tokens[i].start()
            break
    return answer[:cut].rstrip(" ,;:-(\"'“") if cut < len(answer) else answer


def restates_question(answer: str, question: str) -> bool:
    """Whether ``answer`` says nothing but the question's own words (yes and no aside; a
    question offering a choice, "A or B?", may be answered by its words)."""
    from longdoc.pipeline.grounding import STOPWORDS, question_core, words

    core = question_core(question)
    said = [w for w in words(answer) if w not in STOPWORDS]
    if not said or " or " in core.casefold():
        return False
    if said[0] in _AFFIRMATIONS:
        return False
    asked = set(words(core))
    return all(w in asked for w in said)


def unfit_answer(answer: str, question: str) -> str | None:
    """Why ``answer`` must never be returned for ``question`` (it restates the question
    or echoes the prompt), or None."""
    if echoes_prompt(answer):
        return "echoes the prompt"
    if restates_question(answer, question):
        return "restates the question"
    return None

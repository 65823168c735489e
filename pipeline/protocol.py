"""Tolerant parsing of plain-text model replies (small models ignore formats)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from longdoc.pipeline.models import Quote

_LABEL = r"(?:quote|evidence|supporting (?:sentence|quote|text)|source|citation)s?"
_QUOTE_LINE = re.compile(
    rf"^\s*[*_#>\-\s]*{_LABEL}\s*[*_]*\s*[:\-]\s*[*_]*\s*(.*)$", re.I | re.M
)
_ANSWER_LABEL = re.compile(
    r"^\s*[*_#\s]*(?:(?:the\s+)?(?:final\s+)?answer(?:\s+to\s+(?:the|your)\s+question)?"
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


def parse_answer(reply: str) -> ParsedReply:
    """Split a reply into its answer and quotes, and tell whether it claims no answer.

    The answer is the reply's first paragraph (small models ramble on after it).

    Quotes come from labelled lines ("Quote: ...", "Evidence: ...") and from long
    double-quoted passages anywhere in the reply. Every quote is only a candidate:
    the citation verifier decides whether it occurs in the source.
    """
    text = reply.strip()
    match = _QUOTE_LINE.search(text)
    answer_part = text[: match.start()] if match else text
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

    ``labelled`` says whether any protocol label was found; ``parsed`` is False when
    no answer could be read (an empty reply, symbols only, labels without an answer).
    """

    answer: str = ""
    information: str = ""
    rationale: str = ""
    quotes: list[Quote] = Field(default_factory=list)
    confidence: Confidence | None = None
    found: bool = False
    labelled: bool = False
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
        information=" ".join(fields.get("information", [])).strip(),
        rationale=" ".join(fields.get("rationale", [])).strip(),
        quotes=[Quote(text=q) for q in unique],
        confidence=confidence,
        found=usable and not _NOT_FOUND.search(answer),
        labelled=bool(labels),
        parsed=usable,
    )

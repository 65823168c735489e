"""Tolerant parsing of plain-text model replies (small models ignore formats)."""

from __future__ import annotations

import re

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
    unique = list(dict.fromkeys(q for q in quotes if q))
    return ParsedReply(
        answer=answer,
        quotes=[Quote(text=q) for q in unique],
        found=bool(answer) and not _NOT_FOUND.search(answer),
    )

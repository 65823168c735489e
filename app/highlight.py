"""HTML for answers and citations: the quote highlighted inside its context.

Document text and model output are data: every piece of it is HTML-escaped, so neither
can add markup (or Markdown: the app renders these strings as HTML, never as Markdown).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape

from longdoc.pipeline.models import Answer, Citation

CONTEXT_CHARS = 240
LINE_BREAK = re.compile(r"(?<![\r\n])\r?\n(?!\r?\n)")
ELLIPSIS = "…"
CONTEXT_STYLE = (
    "white-space: pre-wrap; font-size: 0.9rem; line-height: 1.45; padding: 0.4rem 0.6rem; "
    "border-left: 3px solid #f0b429; background: rgba(127,127,127,0.06); margin: 0.2rem 0;"
)
MARK_STYLE = "background: #ffe066; color: #111; padding: 0 1px; border-radius: 2px;"
HEADER_STYLE = "font-size: 0.85rem; opacity: 0.8;"
WARN_STYLE = "color: #c0392b; font-size: 0.85rem;"


@dataclass(frozen=True)
class Snippet:
    """``before + quote + after`` is a contiguous span of a document's text."""

    before: str
    quote: str
    after: str
    clipped_before: bool  # the document goes on before ``before``
    clipped_after: bool


def snippet(text: str, start: int, end: int, radius: int = CONTEXT_CHARS) -> Snippet:
    """``text[start:end]`` with about ``radius`` characters either side, cut at whitespace
    so the context neither begins nor ends inside a word."""
    if not 0 <= start <= end <= len(text):
        raise ValueError(f"span {start}-{end} is outside the text ({len(text)} characters)")
    lo, hi = max(0, start - radius), min(len(text), end + radius)
    if lo > 0 and not text[lo - 1].isspace():
        space = next((i for i in range(lo, start) if text[i].isspace()), start)
        lo = space + 1 if space < start else start
    if hi < len(text) and not text[hi].isspace():
        space = next((i for i in range(hi - 1, end - 1, -1) if text[i].isspace()), end)
        hi = space if space > end else end
    return Snippet(text[lo:start], text[start:end], text[end:hi], lo > 0, hi < len(text))


def _shown(text: str) -> str:
    """Escaped text to display; single line breaks (PDF layout) flow as spaces, blank
    lines stay paragraph breaks. Display only: offsets refer to the text as extracted."""
    return escape(LINE_BREAK.sub(" ", text))


def snippet_html(part: Snippet) -> str:
    """The snippet as escaped HTML with the quote in a ``<mark>``."""
    return (
        f'<div class="longdoc-context" style="{CONTEXT_STYLE}">'
        f"{ELLIPSIS if part.clipped_before else ''}{_shown(part.before)}"
        f'<mark style="{MARK_STYLE}">{_shown(part.quote)}</mark>'
        f"{_shown(part.after)}{ELLIPSIS if part.clipped_after else ''}</div>"
    )


def citation_label(number: int, citation: Citation, name: str | None = None) -> str:
    """``[n] name, page p, chars s-e`` (plus the paragraph it supports and its origin)."""
    parts = [f"[{number}] {name or citation.source}"]
    if citation.page:
        parts.append(f"page {citation.page}")
    parts.append(f"chars {citation.start}-{citation.end}")
    if citation.paragraph:
        parts.append(f"supports paragraph {citation.paragraph}")
    if citation.origin == "located":
        parts.append("sentence located by the verifier")
    return ", ".join(parts)


def citation_html(
    number: int, citation: Citation, text: str | None, name: str | None = None,
    radius: int = CONTEXT_CHARS,
) -> str:
    """One citation: its label, then the quote highlighted in the document's ``text``.

    If ``text`` is None (the document is not loaded) or the span no longer holds the
    quote (the file changed since the run), the quote is shown alone with a warning.
    """
    header = f'<div class="longdoc-citation-label" style="{HEADER_STYLE}">' \
             f"{escape(citation_label(number, citation, name))}</div>"
    if text is not None and text[citation.start:citation.end] == citation.quote:
        body = snippet_html(snippet(text, citation.start, citation.end, radius))
    else:
        why = ("the document is not loaded" if text is None
               else "the document's text no longer holds this quote at these offsets")
        body = (f'<div style="{WARN_STYLE}">{escape(why)}; the quote alone:</div>'
                + snippet_html(Snippet("", citation.quote, "", False, False)))
    return f'<div class="longdoc-citation">{header}{body}</div>'


def paragraphs(answer: str) -> list[str]:
    """An answer's paragraphs, as summaries number them (split at blank lines)."""
    return answer.split("\n\n")


def answer_html(answer: Answer) -> str:
    """The answer as escaped HTML paragraphs; summary paragraphs end with the numbers of
    the citations that support them (an article has its numbers inline already)."""
    numbers: dict[int, list[int]] = {}
    inline = hasattr(answer, "references")
    for n, citation in enumerate(answer.citations, 1):
        if citation.paragraph and not inline:
            numbers.setdefault(citation.paragraph, []).append(n)
    blocks = []
    for index, paragraph in enumerate(paragraphs(answer.answer), 1):
        marks = "".join(f"[{n}]" for n in numbers.get(index, []))
        sup = f' <sup class="longdoc-marks">{marks}</sup>' if marks else ""
        blocks.append(f'<p style="white-space: pre-wrap;">{escape(paragraph)}{sup}</p>')
    return f'<div class="longdoc-answer">{"".join(blocks)}</div>'

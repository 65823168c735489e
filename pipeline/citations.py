"""The one citation locator: find quotes in source text.

Every citation longdoc shows satisfies ``document.text[start:end] == quote``. A quote
the model wrote is located tolerantly (case, whitespace, typographic quotes, small
differences, but never another number or name); a quote that cannot be found is dropped
and counted, never shown. Whether a located quote *supports* an answer is
``pipeline/grounding.py``'s question.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Literal

from rapidfuzz import fuzz

from longdoc.pipeline.folding import Normalized, normalize
from longdoc.pipeline.grounding import STOPWORDS
from longdoc.pipeline.models import Citation, Document, Quote

MIN_QUOTE_CHARS = 8
FUZZY_MIN_SCORE = 90.0
# What a fuzzy match may not change: numbers and capitalized names.
_IDENTIFIER = re.compile(r"\d[\d,.:/-]*\d|\d|\b[A-Z][\w'-]{2,}")
_LABEL = re.compile(r"^\W*\w+\s*:\s*")


def _span(norm: Normalized, start: int, end: int) -> tuple[int, int]:
    return norm.index[start], norm.index[end - 1] + 1


def _widen_to_words(text: str, start: int, end: int) -> tuple[int, int]:
    """Grow a span so it neither starts nor ends inside a word or number."""
    while start > 0 and text[start - 1].isalnum() and text[start].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum() and text[end - 1].isalnum():
        end += 1
    return start, end


NormalizedText = Normalized | Callable[[], Normalized] | None


def locate(quote: str, text: str, norm: NormalizedText = None) -> tuple[int, int] | None:
    """Character span of ``quote`` in ``text``: exact, then normalized, then fuzzy.

    ``norm`` is ``normalize(text)``, or a function returning it (called only when the
    quote is not found verbatim), or None (computed when needed).
    The span is widened to whole words, so a quote "passkey is 7103" found inside
    "passkey is 71033" cites "passkey is 71033", never a cut number.
    """
    span = _locate(quote, text, norm)
    return None if span is None else _widen_to_words(text, *span)


def _locate(quote: str, text: str, norm: NormalizedText = None) -> tuple[int, int] | None:
    """``locate`` without widening to whole words."""
    quote = quote.strip().strip("\"'“”‘’").strip()
    if len(quote) < MIN_QUOTE_CHARS:
        return None
    pos = text.find(quote)
    if pos >= 0:
        return pos, pos + len(quote)
    norm = norm() if callable(norm) else norm or normalize(text)
    full = normalize(quote).text
    needle = full.rstrip(" .")  # models end fragments with a period the source lacks
    if len(needle) < MIN_QUOTE_CHARS:
        return None
    for candidate in (full, needle):
        pos = norm.text.find(candidate)
        if pos >= 0:
            return _span(norm, pos, pos + len(candidate))
    alignment = fuzz.partial_ratio_alignment(needle, norm.text, score_cutoff=FUZZY_MIN_SCORE)
    if alignment is None or alignment.dest_end - alignment.dest_start < MIN_QUOTE_CHARS:
        return None
    start, end = _widen_to_words(norm.text, alignment.dest_start, alignment.dest_end)
    if not _same_identifiers(quote, norm.text[start:end]):
        return None
    return _span(norm, alignment.dest_start, alignment.dest_end)


def _same_identifiers(quote: str, found: str) -> bool:
    """Whether every number and name of ``quote`` is in the (normalized) ``found`` text:
    a fuzzy match may forgive typography and small slips, not "Alice" for "Bob". A label
    the model put before its quote ("Memory: ...") and capitalized stop words are not
    names."""
    quote = _LABEL.sub("", quote)
    names = [m for m in _IDENTIFIER.findall(quote) if m.casefold() not in STOPWORDS]
    return all(re.search(rf"(?<!\w){re.escape(normalize(m).text)}(?!\w)", found)
               for m in names)


class CitationVerifier:
    """Locates quotes in a set of documents, caching each document's normalized text."""

    def __init__(self, documents: list[Document]):
        self.documents = {doc.source: doc for doc in documents}
        self._norms: dict[str, Normalized] = {}

    def _norm(self, doc: Document) -> Normalized:
        if doc.source not in self._norms:
            self._norms[doc.source] = normalize(doc.text)
        return self._norms[doc.source]

    def citation(self, doc: Document, start: int, end: int,
                 origin: Literal["model", "located"] = "model") -> Citation:
        """A citation for ``doc.text[start:end]``."""
        return Citation(
            source=doc.source,
            page=doc.page_at(start),
            start=start,
            end=end,
            quote=doc.text[start:end],
            origin=origin,
        )

    def verify(self, quote: Quote) -> Citation | None:
        """The citation for ``quote`` if it occurs in its source (or any document)."""
        docs = (
            [self.documents[quote.source]]
            if quote.source in self.documents
            else list(self.documents.values())
        )
        for doc in docs:
            span = locate(quote.text, doc.text, functools.partial(self._norm, doc))
            if span is not None:
                return self.citation(doc, *span, origin=quote.origin)
        return None

    def verify_all(self, quotes: list[Quote]) -> tuple[list[Citation], int]:
        """Verified, de-duplicated citations and the number of quotes dropped."""
        citations: list[Citation] = []
        dropped = 0
        for quote in quotes:
            cited = self.verify(quote)
            if cited is None:
                dropped += 1
            elif not any(
                c.source == cited.source and c.start < cited.end and cited.start < c.end
                for c in citations
            ):
                citations.append(cited)
        return citations, dropped

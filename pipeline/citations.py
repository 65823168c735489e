"""The one citation verifier: locate quotes in source text, find evidence in code.

Every citation longdoc shows satisfies ``document.text[start:end] == quote``. A quote
the model wrote is located tolerantly (case, whitespace, typographic quotes, small
differences); a quote that cannot be found is dropped and counted, never shown.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from rapidfuzz import fuzz

from longdoc.pipeline.models import Citation, Document, Quote

_FOLD = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\u00a0": " "})
_WORD = re.compile(r"\w+", re.UNICODE)
# A sentence runs to . ! ? (and closing quotes) or a blank line; single newlines are
# line wraps (PDF text), not sentence ends.
_SENTENCE = re.compile(r"(?:[^.!?。！？\n]|\n(?![ \t]*\n))+(?:[.!?。！？]+[\"')\]]*|\n[ \t]*\n|$)")
MIN_QUOTE_CHARS = 8
FUZZY_MIN_SCORE = 90.0
_STOPWORDS = frozenset(
    (
        "a an the of to in on at for and or is are was were be been what which who whom whose "
        "how when where why does do did it its this that these those with by from as"
    ).split()
)


@dataclass(frozen=True)
class Normalized:
    """Folded text and, for each of its characters, the offset in the original."""

    text: str
    index: list[int]


def normalize(text: str) -> Normalized:
    """Casefold, fold quotes/dashes, collapse whitespace; keep a map back to ``text``."""
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKC", ch).translate(_FOLD).casefold():
            if c.isspace():
                if not out or out[-1] == " ":
                    continue
                c = " "
            out.append(c)
            index.append(i)
    if out and out[-1] == " ":
        out.pop()
        index.pop()
    return Normalized("".join(out), index)


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
    return _span(norm, alignment.dest_start, alignment.dest_end)


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.casefold()) if w not in _STOPWORDS}


def sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of the sentences (or lines) of ``text[start:end]``, whitespace trimmed."""
    end = len(text) if end is None else end
    spans = []
    for m in _SENTENCE.finditer(text, start, end):
        s, e = m.start(), m.end()
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e - s >= MIN_QUOTE_CHARS:
            spans.append((s, e))
    return spans


def answer_keys(answer: str, question: str = "") -> dict[str, int]:
    """Strings of an answer worth finding in the source, with weights.

    Numbers weigh 3, capitalized names 2, other long words 1; words of the question
    are left out (every candidate sentence would match them).
    """
    question_words = _content_words(question)
    keys: dict[str, int] = {}

    def add(key: str, weight: int) -> None:
        key = key.strip(".,:/-").casefold()
        if key and key not in question_words and key not in _STOPWORDS:
            keys[key] = max(keys.get(key, 0), weight)

    for number in re.findall(r"\d[\d,.:/-]*\d|\d", answer):
        add(number, 3)
    for word in _WORD.findall(answer):
        if word[:1].isupper() and len(word) > 2:
            add(word, 2)
        elif len(word) > 4:
            add(word, 1)
    return keys


def find_evidence(
    answer: str, question: str, text: str, start: int = 0, end: int | None = None
) -> tuple[int, int] | None:
    """The sentence of ``text[start:end]`` that best supports ``answer``, found in code.

    A sentence qualifies only if it contains one of the answer's strongest key strings
    (one of its numbers if it has any, else one of its names, else a rare word); the
    highest total key weight wins, then most question words. None if nothing qualifies.
    """
    keys = answer_keys(answer, question)
    if not keys:
        return None
    patterns = [(re.compile(rf"(?<!\w){re.escape(k)}(?!\w)"), w) for k, w in keys.items()]
    strongest = max(keys.values())
    q_words = _content_words(question)
    best, best_score = None, (0, 0)
    for s, e in sentences(text, start, end):
        sentence = text[s:e].casefold()
        weights = [w for pattern, w in patterns if pattern.search(sentence)]
        if strongest not in weights:  # e.g. an answer with a number needs one of its numbers
            continue
        weight = sum(weights)
        score = (weight, len(q_words & _content_words(sentence)))
        if score > best_score:
            best, best_score = (s, e), score
    return best


class CitationVerifier:
    """Locates quotes in a set of documents, caching each document's normalized text."""

    def __init__(self, documents: list[Document]):
        self.documents = {doc.source: doc for doc in documents}
        self._norms: dict[str, Normalized] = {}

    def _norm(self, doc: Document) -> Normalized:
        if doc.source not in self._norms:
            self._norms[doc.source] = normalize(doc.text)
        return self._norms[doc.source]

    def citation(self, doc: Document, start: int, end: int, origin: str = "model") -> Citation:
        """A citation for ``doc.text[start:end]``."""
        return Citation(
            source=doc.source,
            page=doc.page_at(start),
            start=start,
            end=end,
            quote=doc.text[start:end],
            origin=origin,  # type: ignore[arg-type]
        )

    def verify(self, quote: Quote) -> Citation | None:
        """The citation for ``quote`` if it occurs in its source (or any document)."""
        docs = (
            [self.documents[quote.source]]
            if quote.source in self.documents
            else list(self.documents.values())
        )
        for doc in docs:
            span = locate(quote.text, doc.text, lambda doc=doc: self._norm(doc))
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

    def locate_evidence(self, answer: str, question: str) -> list[Quote]:
        """Quotes found in code: the best supporting sentence in each document."""
        found = []
        for doc in self.documents.values():
            span = find_evidence(answer, question, doc.text)
            if span is not None:
                found.append(Quote(text=doc.text[span[0]:span[1]], source=doc.source,
                                   origin="located"))
        return found

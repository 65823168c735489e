"""Token-aware chunking at paragraph, then sentence, boundaries, keeping source spans."""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from longdoc.pipeline.models import Chunk, Document
from longdoc.pipeline.tokens import TokenIndex

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# A piece ends after the match; no look-behind, so the scan jumps from one mark to the next.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+|[。！？]")


class Span(NamedTuple):
    """A sentence (or slice of one) by character offsets, with its token count."""

    start: int
    end: int
    tokens: int
    ends_paragraph: bool = False


def _pieces(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Split ``text[start:end]`` after each match of ``pattern``; separators stay attached."""
    out, pos = [], start
    for match in pattern.finditer(text, start, end):
        if match.end() > pos and match.end() < end:
            out.append((pos, match.end()))
            pos = match.end()
    out.append((pos, end))
    return [(s, e) for s, e in out if text[s:e].strip()]


def _split_by_tokens(starts: np.ndarray, start: int, end: int, max_tokens: int) -> list[Span]:
    """Hard-split a piece with no usable boundary into spans of at most ``max_tokens``
    (``starts``: the token start offsets that fall inside the piece)."""
    spans = []
    for i in range(0, len(starts), max_tokens):
        s = start if i == 0 else int(starts[i])
        e = int(starts[i + max_tokens]) if i + max_tokens < len(starts) else end
        spans.append(Span(s, e, min(max_tokens, len(starts) - i)))
    return spans


def sentence_spans(text: str, max_tokens: int, index: TokenIndex | None = None) -> list[Span]:
    """The sentences of ``text`` (token slices of any longer than ``max_tokens``).

    Each span keeps its trailing separator, so spans tile the text; the last span
    of each paragraph is marked, so chunks can prefer to end there. A span's tokens are
    those of the whole text's encoding (``index``) that start in it, so they sum to the
    text's count.
    """
    pieces = [
        (s_start, s_end, s_end == p_end)
        for p_start, p_end in _pieces(text, 0, len(text), _PARAGRAPH_BREAK)
        for s_start, s_end in _pieces(text, p_start, p_end, _SENTENCE_END)
    ]
    if not pieces:
        return []
    starts = (index or TokenIndex(text)).starts
    found = np.searchsorted(starts, [p[0] for p in pieces])
    bounds: list[int] = [*found.tolist(), len(starts)]  # trailing whitespace goes to the last span
    units: list[Span] = []
    for (start, end, ends_paragraph), first, stop in zip(
            pieces, bounds, bounds[1:], strict=False):
        if stop - first > max_tokens:
            units.extend(_split_by_tokens(starts[first:stop], start, end, max_tokens))
        else:
            units.append(Span(start, end, stop - first))
        if ends_paragraph:
            units[-1] = units[-1]._replace(ends_paragraph=True)
    return units


def _last_unit(units: list[Span], first: int, budget: int) -> int:
    """Index of the last unit of the chunk starting at ``first``: fill up to ``budget``
    tokens, then step back to a paragraph end if one lies in the last 30 %."""
    last, total = first, units[first].tokens
    while last + 1 < len(units) and total + units[last + 1].tokens <= budget:
        last += 1
        total += units[last].tokens
    if last + 1 == len(units):
        return last
    filled = total
    for i in range(last, first, -1):
        if units[i].ends_paragraph and filled >= 0.7 * budget:
            return i
        filled -= units[i].tokens
    return last


def chunk_document(
    document: Document, *, doc_index: int = 0, chunk_tokens: int = 2000, overlap: int = 200
) -> list[Chunk]:
    """Pack sentences into chunks of about ``chunk_tokens`` tokens, ending at paragraph
    breaks where possible. Consecutive chunks share up to ``overlap`` tokens of whole
    sentences. ``document.text[chunk.start:chunk.end] == chunk.text`` for every chunk.
    """
    if overlap >= chunk_tokens:
        raise ValueError("chunk overlap must be smaller than the chunk size")
    index = TokenIndex(document.text)
    units = sentence_spans(document.text, chunk_tokens, index)
    spans: list[tuple[int, int]] = []
    first = 0
    while first < len(units):
        last = _last_unit(units, first, chunk_tokens)
        start, end = units[first].start, units[last].end
        while end > start and document.text[end - 1].isspace():
            end -= 1
        spans.append((start, end))
        if last + 1 >= len(units):
            break
        # Step back over whole sentences to share up to `overlap` tokens, always advancing.
        nxt, shared = last + 1, 0
        while nxt - 1 > first and shared + units[nxt - 1].tokens <= overlap:
            nxt -= 1
            shared += units[nxt].tokens
        first = nxt
    return [
        Chunk(
            id=f"{doc_index}:{number}",
            source=document.source,
            doc_index=doc_index,
            index=number,
            start=start,
            end=end,
            text=document.text[start:end],
            tokens=index.count(start, end),
            page_start=document.page_at(start),
            page_end=document.page_at(max(start, end - 1)),
        )
        for number, (start, end) in enumerate(spans)
    ]


def chunk_documents(
    documents: list[Document], *, chunk_tokens: int = 2000, overlap: int = 200
) -> list[Chunk]:
    """Chunks of every document, in order."""
    return [
        chunk
        for i, doc in enumerate(documents)
        for chunk in chunk_document(doc, doc_index=i, chunk_tokens=chunk_tokens, overlap=overlap)
    ]

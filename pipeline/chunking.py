"""Token-aware chunking at paragraph, then sentence, boundaries, keeping source spans."""

from __future__ import annotations

import re
from dataclasses import dataclass

from longdoc.pipeline.models import Chunk, Document
from longdoc.pipeline.tokens import count_tokens, token_char_offsets

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|(?<=[。！？])")


@dataclass(frozen=True)
class Span:
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


def _split_by_tokens(text: str, start: int, end: int, max_tokens: int) -> list[Span]:
    """Hard-split a piece with no usable boundary into spans of at most ``max_tokens``."""
    offsets = token_char_offsets(text[start:end])
    spans = []
    for i in range(0, len(offsets), max_tokens):
        s = start + offsets[i]
        e = start + offsets[i + max_tokens] if i + max_tokens < len(offsets) else end
        spans.append(Span(s, e, min(max_tokens, len(offsets) - i)))
    return spans


def sentence_spans(text: str, max_tokens: int) -> list[Span]:
    """The sentences of ``text`` (token slices of any longer than ``max_tokens``).

    Each span keeps its trailing separator, so spans tile the text; the last span
    of each paragraph is marked, so chunks can prefer to end there.
    """
    units: list[Span] = []
    for p_start, p_end in _pieces(text, 0, len(text), _PARAGRAPH_BREAK):
        for s_start, s_end in _pieces(text, p_start, p_end, _SENTENCE_END):
            tokens = count_tokens(text[s_start:s_end])
            if tokens <= max_tokens:
                units.append(Span(s_start, s_end, tokens))
            else:
                units.extend(_split_by_tokens(text, s_start, s_end, max_tokens))
        last = units[-1]
        units[-1] = Span(last.start, last.end, last.tokens, ends_paragraph=True)
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
    units = sentence_spans(document.text, chunk_tokens)
    chunks: list[Chunk] = []
    first = 0
    while first < len(units):
        last = _last_unit(units, first, chunk_tokens)
        start, end = units[first].start, units[last].end
        while end > start and document.text[end - 1].isspace():
            end -= 1
        text = document.text[start:end]
        chunks.append(
            Chunk(
                id=f"{doc_index}:{len(chunks)}",
                source=document.source,
                doc_index=doc_index,
                index=len(chunks),
                start=start,
                end=end,
                text=text,
                tokens=count_tokens(text),
                page_start=document.page_at(start),
                page_end=document.page_at(max(start, end - 1)),
            )
        )
        if last + 1 >= len(units):
            break
        # Step back over whole sentences to share up to `overlap` tokens, always advancing.
        nxt, shared = last + 1, 0
        while nxt - 1 > first and shared + units[nxt - 1].tokens <= overlap:
            nxt -= 1
            shared += units[nxt].tokens
        first = nxt
    return chunks


def chunk_documents(
    documents: list[Document], *, chunk_tokens: int = 2000, overlap: int = 200
) -> list[Chunk]:
    """Chunks of every document, in order."""
    return [
        chunk
        for i, doc in enumerate(documents)
        for chunk in chunk_document(doc, doc_index=i, chunk_tokens=chunk_tokens, overlap=overlap)
    ]

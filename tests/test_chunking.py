from __future__ import annotations

import hashlib
import itertools
import random
from pathlib import Path

import pytest

from longdoc.pipeline.chunking import chunk_document, sentence_spans
from longdoc.pipeline.models import Document, Page
from longdoc.pipeline.tokens import (
    PARALLEL_ENCODE_CHARS,
    TokenIndex,
    count_tokens,
    encode_whole,
    encoding,
    token_char_offsets,
)


def make_doc(text: str, pages: list[Page] | None = None) -> Document:
    return Document(source="doc.txt", text=text, pages=pages or [],
                    sha256=hashlib.sha256(text.encode()).hexdigest())


PROSE = "\n\n".join(
    " ".join(f"Paragraph {p} sentence {s} says something about topic {p * s}." for s in range(12))
    for p in range(30)
)


def test_chunks_are_exact_spans_within_budget() -> None:
    doc = make_doc(PROSE)
    chunks = chunk_document(doc, chunk_tokens=300, overlap=40)
    assert len(chunks) > 5
    for chunk in chunks:
        assert doc.text[chunk.start:chunk.end] == chunk.text
        assert chunk.tokens == count_tokens(chunk.text)
        assert chunk.tokens <= 300 + 5  # unit sums vs. joined count differ by a few tokens
    assert [c.index for c in chunks] == list(range(len(chunks)))


def document_gap(text: str, end: int, start: int) -> bool:
    return start > end and bool(text[end:start].strip())


def test_chunks_cover_the_document_and_overlap() -> None:
    doc = make_doc(PROSE)
    chunks = chunk_document(doc, chunk_tokens=300, overlap=40)
    assert chunks[0].start == 0
    assert chunks[-1].end == len(doc.text.rstrip())
    for prev, nxt in itertools.pairwise(chunks):
        assert not document_gap(doc.text, prev.end, nxt.start), "gap between chunks"
        assert nxt.start > prev.start, "no progress"
        assert count_tokens(doc.text[nxt.start:prev.end]) <= 40 + 5
    assert sum(nxt.start < prev.end for prev, nxt in itertools.pairwise(chunks)) > 3


def test_chunks_end_at_sentence_or_paragraph_boundaries() -> None:
    doc = make_doc(PROSE)
    chunks = chunk_document(doc, chunk_tokens=200, overlap=0)
    for chunk in chunks:
        assert chunk.text.rstrip().endswith("."), chunk.text[-40:]
    # paragraphs are ~156 tokens: a 200-token chunk ends at a paragraph break when one lies
    # in its last 30 %, i.e. most chunks end right before a blank line
    at_break = [doc.text[c.end:c.end + 2] == "\n\n" for c in chunks[:-1]]
    assert sum(at_break) >= len(at_break) // 2


def test_a_sentence_longer_than_a_chunk_is_split_by_tokens() -> None:
    text = "word " * 2000
    doc = make_doc(text)
    chunks = chunk_document(doc, chunk_tokens=100, overlap=0)
    assert all(c.tokens <= 100 for c in chunks)
    assert "".join(doc.text[c.start:c.end] for c in chunks).split() == text.split()


def test_page_spans() -> None:
    page1 = "First page sentence. " * 40
    page2 = "Second page sentence. " * 40
    text = page1 + "\n\n" + page2
    pages = [Page(number=1, start=0, end=len(page1)),
             Page(number=2, start=len(page1) + 2, end=len(text))]
    chunks = chunk_document(make_doc(text, pages), chunk_tokens=120, overlap=0)
    assert chunks[0].page_start == 1
    assert chunks[-1].page_end == 2
    assert any(c.page_start == 1 and c.page_end == 2 for c in chunks) or all(
        c.page_start == c.page_end for c in chunks)


def test_non_latin_text() -> None:
    text = "これは日本語の文です。" * 300
    chunks = chunk_document(make_doc(text), chunk_tokens=200, overlap=20)
    assert len(chunks) > 1
    assert all(make_doc(text).text[c.start:c.end] == c.text for c in chunks)


def test_overlap_must_be_smaller_than_chunk() -> None:
    with pytest.raises(ValueError):
        chunk_document(make_doc(PROSE), chunk_tokens=100, overlap=100)


def test_sentence_spans_mark_paragraph_ends() -> None:
    text = "One. Two three.\n\nFour."
    spans = sentence_spans(text, 10)
    assert [text[s.start:s.end].strip() for s in spans] == ["One.", "Two three.", "Four."]
    assert [s.ends_paragraph for s in spans] == [False, True, True]


MIXED = "naïve café — 東京は晴れ。 😀 emoji x <|endoftext|> \n\n\t tabs  and   spaces. " * 200


def test_token_offsets_match_tiktoken() -> None:
    enc = encoding()
    for text in ["", "One sentence. Two.", MIXED]:
        _, expected = enc.decode_with_offsets(enc.encode_ordinary(text))
        assert token_char_offsets(text) == expected


def test_token_index_counts_any_span_like_encoding_it_alone(test_data: Path) -> None:
    texts = [MIXED, PROSE] + [p.read_text()[:60000]
                              for p in sorted((test_data / "state_union").glob("*.txt"))[:5]]
    rng = random.Random(0)
    for text in texts:
        index = TokenIndex(text)
        assert index.count(0, len(text)) == count_tokens(text)
        for _ in range(150):
            start = rng.randrange(len(text))
            end = min(len(text), start + rng.randrange(1, 9000))
            assert index.count(start, end) == count_tokens(text[start:end]), (start, end)


def test_long_text_is_encoded_in_parts_like_whole(test_data: Path) -> None:
    texts = [p.read_text(errors="replace")
             for p in sorted((test_data / "state_union").glob("*.txt"))]
    text = "\n\n".join(texts * 2)  # the addresses twice: several parts to encode
    assert len(text) > 2 * PARALLEL_ENCODE_CHARS
    assert encode_whole(text) == encoding().encode_ordinary(text)

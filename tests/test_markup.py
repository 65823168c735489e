"""Tests of ``longdoc.pipeline.markup``: HTML markup read as plain text with its structure."""

from __future__ import annotations

from pathlib import Path

import pytest

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.grounding import sentences
from longdoc.pipeline.ingest import load_document
from longdoc.pipeline.markup import is_markup, plain_text
from longdoc.pipeline.models import Document

# The shape of an L-Eval Wikipedia page: spaced tokens, capitalized tags, "_colspan" cells.
PAGE = (
    "Lost in Space ( 2018 TV series ) - wikipedia <H1> Lost in Space ( 2018 TV series ) </H1> "
    "<Table> <Tr> <Th_colspan=\"2\"> Lost in Space </Th> </Tr> <Tr> <Th> Genre </Th> "
    "<Td> <Ul> <Li> Science fiction </Li> <Li> Drama </Li> </Ul> </Td> </Tr> "
    "<Tr> <Th> Production location ( s ) </Th> <Td> Vancouver , British Columbia </Td> </Tr> "
    "<Tr> <Td> </Td> <Td_colspan=\"1\"> </Td> <Td> 10 </Td> </Tr> </Table> "
    "<P> Lost in Space is an American science fiction web television series . </P> "
    "<H2> Production </H2> <P> Filming began in February 2017 &amp; ended in July . </P>"
)


def test_a_page_becomes_blocks_rows_and_items() -> None:
    text = plain_text(PAGE)
    lines = text.splitlines()
    assert "Production location ( s ) | Vancouver , British Columbia" in lines
    assert "- Science fiction" in lines and "- Drama" in lines
    assert "10" in lines  # a row of empty cells and one value keeps only the value
    assert "Lost in Space is an American science fiction web television series ." in lines
    assert "Filming began in February 2017 & ended in July ." in lines  # entity decoded
    assert "<" not in text and ">" not in text
    assert "\n\n\n" not in text


def test_each_row_and_paragraph_is_a_sentence_of_its_own() -> None:
    """The grounding module cites rows and paragraphs, not a whole table run together."""
    text = plain_text(PAGE)
    said = [text[s:e] for s, e in sentences(text)]
    assert "Production location ( s ) | Vancouver , British Columbia" in said


def test_prose_that_mentions_tags_is_not_markup() -> None:
    prose = ("Write <P> to open a paragraph and </P> to close it; a < b > c is a comparison. "
             * 3) + "Markdown may hold a <br> or two.<br>" + " More prose." * 50
    assert not is_markup(prose)
    assert is_markup(PAGE)
    assert plain_text("a <Widget> b") == "a <Widget> b"  # no HTML tag: kept


def test_documents_from_markup_text_are_converted_unless_asked_not_to() -> None:
    converted = Document.from_text(PAGE, "page.txt")
    assert "Vancouver , British Columbia" in converted.text and "<Td>" not in converted.text
    assert converted.metadata == {"converted": "html"}
    assert Document.from_text(PAGE, "page.txt", markup=False).text == PAGE
    assert Document.from_text("plain words", "p.txt").text == "plain words"


def test_ingest_converts_html_files_and_markup_heavy_text_files(tmp_path: Path) -> None:
    html_file = tmp_path / "page.html"
    html_file.write_text("<html><head><style>p {color: red}</style></head><body>"
                         "<p>One paragraph.</p><p>Another.</p></body></html>", encoding="utf-8")
    assert load_document(html_file).text == "One paragraph.\n\nAnother."
    txt = tmp_path / "page.txt"
    txt.write_text(PAGE, encoding="utf-8")
    assert "Production location ( s ) | Vancouver" in load_document(txt).text
    prose = tmp_path / "prose.md"
    prose.write_text("A note on <br> tags.\n", encoding="utf-8")
    assert load_document(prose).text == "A note on <br> tags.\n"


def test_an_html_file_with_no_text_is_refused_clearly(tmp_path: Path) -> None:
    empty = tmp_path / "empty.html"
    empty.write_text("<html><body><div></div></body></html>", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty\.html: empty document \(no text outside"):
        load_document(empty)


@pytest.mark.real_model
def test_real_model_reads_an_html_page_and_cites_its_table_row(real_endpoint,
                                                               tmp_path: Path) -> None:
    """The embedded model over an HTML page: the infobox row is read as "header | value"
    text, and the answer is cited from the converted document, never from a tag."""
    from longdoc.pipeline.api import Pipeline
    from tests.conftest import real_settings

    page = tmp_path / "page.html"
    page.write_text(f"<html><body>{PAGE}</body></html>", encoding="utf-8")
    with Pipeline(real_settings(real_endpoint, tmp_path)) as pipeline:
        answer = pipeline.ask(page, "Where was the series filmed?", strategy="direct")
    assert answer.supported and "Vancouver" in answer.answer
    assert all("<" not in c.quote for c in answer.citations)
    assert any("Vancouver , British Columbia" in c.quote for c in answer.citations)

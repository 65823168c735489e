from __future__ import annotations

import hashlib

from longdoc.pipeline.citations import CitationVerifier, locate
from longdoc.pipeline.folding import normalize
from longdoc.pipeline.grounding import answer_key, answer_keys, best_sentence
from longdoc.pipeline.models import Document, Page, Quote

TEXT = (
    "The committee met on Tuesday.  It approved a budget of $4.2 million\nfor the new "
    "library. “We are delighted,” said the chair. The secret passkey is 48213. Remember it."
)


def doc(text: str = TEXT, source: str = "a.txt", pages: list[Page] | None = None) -> Document:
    return Document(source=source, text=text, pages=pages or [],
                    sha256=hashlib.sha256(text.encode()).hexdigest())


def test_normalize_maps_back_to_original() -> None:
    norm = normalize("A  B\n“C”")
    assert norm.text == 'a b "c"'
    assert [norm.index[i] for i in range(len(norm.text))] == [0, 1, 3, 4, 5, 6, 7]


def test_locate_exact_normalized_and_fuzzy() -> None:
    assert locate("The secret passkey is 48213.", TEXT) == (
        TEXT.index("The secret"), TEXT.index("48213.") + 6)
    span = locate("it approved a budget of $4.2 million for the new library", TEXT)
    assert span is not None
    assert TEXT[span[0]:span[1]] == "It approved a budget of $4.2 million\nfor the new library"
    span = locate('"We are delighted," said the chair', TEXT)
    assert span is not None and TEXT[span[0]:span[1]].startswith("We are delighted,” said")
    span = locate("It aproved a budget of $4.2 milion for the new library", TEXT)
    assert span is not None and "budget" in TEXT[span[0]:span[1]]


def test_locate_rejects_invented_and_tiny_quotes() -> None:
    assert locate("The committee rejected every proposal outright.", TEXT) is None
    assert locate("the", TEXT) is None
    assert locate("", TEXT) is None


def test_answer_keys_weights() -> None:
    keys = answer_keys("The passkey is 48213, said Alice.", "What is the passkey?")
    assert keys["48213"] == 3
    assert keys["alice"] == 2
    assert "passkey" not in keys


def test_best_sentence_prefers_the_sentence_with_the_answer() -> None:
    question = "What is the secret passkey?"
    span = best_sentence(TEXT, answer_key("It is 48213.", question), question)
    assert span is not None
    assert TEXT[span[0]:span[1]] == "The secret passkey is 48213."
    assert best_sentence(TEXT, answer_key("zebra", "What?"), "What?") is None


def test_verifier_citations_have_exact_offsets_and_pages() -> None:
    pages = [Page(number=1, start=0, end=60), Page(number=2, start=60, end=len(TEXT))]
    verifier = CitationVerifier([doc(pages=pages), doc("Other text entirely here.", "b.txt")])
    citations, dropped = verifier.verify_all([
        Quote(text="the secret passkey is 48213"),
        Quote(text="The secret passkey is 48213."),  # overlaps the first: de-duplicated
        Quote(text="a sentence nobody wrote anywhere"),
    ])
    assert dropped == 1
    assert len(citations) == 1
    c = citations[0]
    assert (c.source, c.page) == ("a.txt", 2)
    assert TEXT[c.start:c.end] == c.quote


def test_evidence_must_hold_one_of_the_answers_numbers() -> None:
    text = "More than a million jobs were added. The budget is balanced."
    question = "How many jobs?"
    key = answer_key("1.3 million jobs were created in 2018.", question)
    assert best_sentence(text, key, question) is None
    span = best_sentence(text, answer_key("A million jobs.", question), question)
    assert span is not None and text[span[0]:span[1]] == "More than a million jobs were added."


def test_located_spans_never_cut_a_number_or_word() -> None:
    text = "Noise before. The secret passkey is 71033. Noise after."
    for quote in ("The secret passkey is 7103", "he secret passkey is 71033",
                  "The secret passkey is 7103."):
        span = locate(quote, text)
        assert span is not None
        assert text[span[0]:span[1]].rstrip(".") == "The secret passkey is 71033", quote

from __future__ import annotations

import pytest

from longdoc.pipeline.protocol import parse_answer


def test_labelled_answer_and_quote() -> None:
    parsed = parse_answer('Answer: It is 42.\nQuote: "The value is 42 in all cases."')
    assert parsed.answer == "It is 42."
    assert [q.text for q in parsed.quotes] == ["The value is 42 in all cases."]
    assert parsed.found


def test_plain_sentence_with_rambling() -> None:
    parsed = parse_answer("The passkey is 48213.\n\nI believe it the only one where every man")
    assert parsed.answer == "The passkey is 48213."
    assert parsed.quotes == []


def test_markdown_labels_and_inline_quotes() -> None:
    parsed = parse_answer(
        '**Answer:** The budget grew.\n**Evidence**: "the budget of $4.2 million was approved"'
    )
    assert parsed.answer == "The budget grew."
    assert parsed.quotes[0].text == "the budget of $4.2 million was approved"
    parsed = parse_answer('The chair said "we are delighted with the new library" at the end.')
    assert parsed.quotes[0].text == "we are delighted with the new library"


@pytest.mark.parametrize("reply", [
    "Answer: not found.", "NONE", "The document does not mention a passkey.",
    "Not mentioned in the text.", "There is no information about that.",
    'The answer to the question is: "not found"',
])
def test_not_found(reply: str) -> None:
    assert not parse_answer(reply).found


def test_empty_reply() -> None:
    parsed = parse_answer("   ")
    assert parsed.answer == "" and not parsed.found


def test_answer_preamble_is_stripped() -> None:
    assert parse_answer("The answer to the question is: It rose to 60.").answer == "It rose to 60."
    assert parse_answer("Final answer - 42").answer == "42"

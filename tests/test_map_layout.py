"""The QA map prompt's layouts (``mapreduce.map_prompt_layout``): what each renders in
which order, which one a backend gets, and that the map node sends the configured one.

The real prefix-cache effect of ``chunk_first`` (a second question served the chunks
from vLLM's cache) is tested against vLLM-CPU in ``tests/test_vllm.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from longdoc.agents.mapreduce import map_prompt_name
from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.errors import InputError
from longdoc.pipeline.settings import Settings, load_settings
from longdoc.prompts import document_block, get_prompt
from longdoc.prompts.mapreduce import MAP_LAYOUTS, MAP_REPLY_FORM
from tests import sequential_cases as cases
from tests.conftest import sim_settings
from tests.sequential_cases import NEEDLE, QUESTION, SIM_CHUNK_TOKENS

BLOCK = document_block("report.txt", "The bridge was approved in 1931. The mill closed.")
OTHER_QUESTION = "When did the mill close?"


def render(layout: str, question: str = QUESTION) -> list[dict[str, str]]:
    return get_prompt(MAP_LAYOUTS[layout]).render(document=BLOCK, question=question)


def prompt_text(messages: list[dict[str, str]]) -> str:
    return "".join(m["content"] for m in messages)


def shared_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def test_question_first_asks_before_and_after_the_chunk() -> None:
    messages = render("question_first")
    user = messages[1]["content"]
    first, last = user.index(f"Question: {QUESTION}"), user.rindex(f"Question: {QUESTION}")
    assert first == 0 < user.index(MAP_REPLY_FORM) < user.index(BLOCK) < last
    assert get_prompt("mapreduce.map").render(document=BLOCK, question=QUESTION) == messages


def test_chunk_first_puts_the_chunk_before_the_question_and_the_form() -> None:
    messages = render("chunk_first")
    user = messages[1]["content"]
    assert messages[0]["content"] == render("question_first")[0]["content"]
    assert user.count(QUESTION) == 1
    assert user.index(BLOCK) < user.index(f"Question: {QUESTION}") < user.index(MAP_REPLY_FORM)
    assert user.endswith(MAP_REPLY_FORM)  # the model answers right after its form


def test_only_chunk_first_shares_the_chunk_across_questions() -> None:
    """What a prefix cache can serve to a second question about the same chunk: with
    chunk_first everything through the chunk, with question_first only the text before
    the question."""
    for layout, holds_chunk in (("chunk_first", True), ("question_first", False)):
        text, other = prompt_text(render(layout)), prompt_text(render(layout, OTHER_QUESTION))
        prefix = shared_prefix(text, other)
        assert (BLOCK in prefix) is holds_chunk, layout
        # it ends where the two questions start to differ
        assert prefix.endswith("Question: " + shared_prefix(QUESTION, OTHER_QUESTION))


@pytest.mark.parametrize(("backend", "layout", "template"), [
    ("vllm", "auto", "mapreduce.map_chunk_first"),
    ("embedded", "auto", "mapreduce.map"),
    ("openai", "auto", "mapreduce.map"),
    ("vllm", "question_first", "mapreduce.map"),
    ("embedded", "chunk_first", "mapreduce.map_chunk_first"),
])
def test_auto_is_chunk_first_on_vllm_only(backend: str, layout: str, template: str) -> None:
    assert map_prompt_name(Settings(backend=backend, map_prompt_layout=layout)) == template


def test_the_layout_is_a_described_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = {path: (env, description) for path, env, _, description in Settings().describe()}
    env, description = rows["mapreduce.map_prompt_layout"]
    assert env == "LONGDOC_MAP_PROMPT_LAYOUT" and "chunk_first" in description
    monkeypatch.setenv("LONGDOC_MAP_PROMPT_LAYOUT", "chunk_first")
    assert load_settings().mapreduce.map_prompt_layout == "chunk_first"
    assert Settings().answer_values()["map_prompt_layout"] == "chunk_first"  # keys differ
    monkeypatch.setenv("LONGDOC_MAP_PROMPT_LAYOUT", "sideways")
    with pytest.raises(InputError, match="map_prompt_layout"):
        load_settings()


@pytest.mark.parametrize("layout", ["question_first", "chunk_first"])
def test_the_map_node_sends_the_configured_layout(sim, tmp_path: Path, layout: str) -> None:
    """Every map call of a run is rendered in the layout set, and the reply protocol reads
    the same: the needle chunk's reply becomes the cited answer."""
    template = get_prompt(MAP_LAYOUTS[layout])

    def reply(messages: list[dict[str, str]]) -> str:
        user = messages[1]["content"]
        if "48213" in user:
            return ('Information: a card in the archive.\nRationale: it is stated.\n'
                    f'Answer: 48213\nQuote: "{NEEDLE}"\nConfidence: high')
        return "Information: nothing.\nRationale: not stated.\nAnswer: none\nConfidence: low"

    server = sim(reply)
    path, text = cases.write(tmp_path)
    settings = sim_settings(server, tmp_path, chunk_tokens=SIM_CHUNK_TOKENS, chunk_overlap=0,
                            map_prompt_layout=layout, second_look_passages=0)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(path, QUESTION, strategy="mapreduce")
    maps = [r["messages"] for r in server.requests
            if r["messages"][0]["content"] == template.system]
    assert len(maps) == len(cases.PARAGRAPHS) == answer.usage.by_node["mapreduce.map"].llm_calls
    start = template.user.split("{", 1)[0]  # each layout's text before its first field
    assert all(m[1]["content"].startswith(start) for m in maps)
    first_block, first_question = (maps[0][1]["content"].index(s)
                                   for s in ("<document", f"Question: {QUESTION}"))
    assert (first_block < first_question) is (layout == "chunk_first")
    assert answer.answer == "48213"
    assert [c.quote for c in answer.citations] == [NEEDLE]
    assert text[answer.citations[0].start:answer.citations[0].end] == NEEDLE

"""The chain strategy (Chain of Agents): worker relay, verified carried quotes, manager."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langgraph.runtime import Runtime

from longdoc.agents.chain import CHAIN
from longdoc.agents.sequential import (
    bridge_keys,
    fit_evidence,
    reply_candidates,
    step,
    trim_notes,
)
from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.llm import Endpoint, LLMClient
from longdoc.pipeline.state import NOT_FOUND_ANSWER, Evidence, RunContext
from longdoc.pipeline.tokens import count_tokens
from tests.conftest import haystack, real_settings, sim_settings
from tests.sequential_cases import (
    HOP_DISTRACTOR,
    HOP_FACT_1,
    HOP_FACT_2,
    HOP_PARAGRAPHS,
    HOP_QUESTION,
    INJECTION,
    NEEDLE,
    PARAGRAPHS,
    QUESTION,
    SIM_CHUNK_TOKENS,
    chunks_of,
    document_of,
    events,
    first_number,
    invented,
    prompt_systems,
    real_passkey_answer,
    requests_of,
    responder,
    run,
    run_subgraph,
    section,
    with_extra,
    write,
)

WORKER, MANAGER = "chain.worker", "chain.manager"
SYSTEMS = prompt_systems(WORKER, MANAGER, "chain.compress")


def hallucinating_worker(user: str) -> str:
    """Quotes the needle where it is; elsewhere invents a passkey (as the 135M model does)."""
    part = document_of(user)
    if "48213" in part:
        return f'The part says: "{NEEDLE}" So the passkey is 48213.'
    return f"The secret passkey is {invented(part)}. It is in the notes."


def manager_trusting_notes(user: str) -> str:
    """Answers with the first value in the notes, else the first in the quotes."""
    notes = section(user, "Notes:\n", "Quotes from the document:")
    value = first_number(notes) or first_number(user)
    return f"The passkey is {value}." if value else "I do not know."


def test_needle_survives_invented_notes_with_exact_citation(sim, tmp_path: Path) -> None:
    server = sim(responder(SYSTEMS, hallucinating_worker, manager_trusting_notes))
    path, text = write(tmp_path)
    answer = run(server, tmp_path, path, QUESTION, "chain")
    assert answer.strategy == "chain"
    assert "48213" in answer.answer
    [citation] = answer.citations
    assert citation.quote == NEEDLE and text[citation.start:citation.end] == NEEDLE
    workers = events(answer, WORKER)
    assert len(workers) == len(PARAGRAPHS) == len(requests_of(server, SYSTEMS["step"]))
    assert [e.data["step"] for e in workers] == list(range(1, len(PARAGRAPHS) + 1))
    # The relay: each worker's prompt holds the previous worker's notes and quotes.
    requests = requests_of(server, SYSTEMS["step"])
    for before, request in zip(workers, requests[1:], strict=False):
        assert before.data["notes"] in request["messages"][1]["content"]
    needle_step = next(e for e in workers if e.data["evidence_added"])
    assert [ev["text"] for ev in needle_step.data["evidence_added"]] == [NEEDLE]
    for later in workers[workers.index(needle_step):]:
        assert [ev["text"] for ev in later.data["evidence_carried"]] == [NEEDLE]
        assert NEEDLE in requests[later.data["step"] - 1]["messages"][1]["content"] or \
            later is needle_step
    # The manager first repeats an invented value of the notes; code rejects it, and the
    # evidence-only attempt answers from the carried quote.
    [manager] = events(answer, MANAGER)
    first, second = manager.data["attempts"]
    assert first["with_notes"] and first["supported_by"] == []
    assert second["supported_by"] == [NEEDLE]
    assert [e.node for e in answer.trace][-1] == "verify"


def test_the_step_node_alone_carries_the_parts_verified_quote_and_holds_notes_to_budget(
        sim, tmp_path: Path) -> None:
    """One ``step`` call, outside any graph: the worker's reply becomes the notes, the
    needle it quotes is carried with its offsets in the document, the invented value is
    not; notes over the budget go through one compress call."""
    chatty = " ".join(f"The archive had shelf {i} of old ledgers." for i in range(40))
    server = sim(responder(SYSTEMS, lambda user: f'Found it: "{NEEDLE}" {chatty} '
                           f"Maybe the passkey is {invented(user)}.",
                           answer=lambda user: "unused",
                           compress=lambda user: "The passkey card was found."))
    chunks = chunks_of(tmp_path)
    index = next(i for i, c in enumerate(chunks) if NEEDLE in c.text)
    settings = sim_settings(server, tmp_path).with_values(cu_tokens=120)
    state = {"task": "qa", "question": QUESTION, "words": 0, "segments": chunks,
             "step": index, "notes": CHAIN.initial_notes, "carried_quotes": []}

    async def one_step() -> dict:
        llm = LLMClient(Endpoint(base_url=server.base_url, model=server.model,
                                 context_window=server.context_window), settings)
        try:
            return await step(state, Runtime(context=RunContext(settings=settings, llm=llm)),
                              spec=CHAIN)
        finally:
            await llm.close()

    out = asyncio.run(one_step())
    chunk = chunks[index]
    assert out["step"] == index + 1
    [carried] = out["carried_quotes"]
    assert carried.text == NEEDLE and carried.source == chunk.source
    assert chunk.text[carried.start - chunk.start:carried.end - chunk.start] == NEEDLE
    assert out["notes"] == "The passkey card was found."
    [event] = out["trace"]
    assert event.node == WORKER and event.data["compression"]["notes_tokens"] > 120
    assert event.data["tokens"]["notes"] + event.data["tokens"]["evidence"] <= 120
    assert [len(requests_of(server, SYSTEMS[k])) for k in ("step", "compress")] == [1, 1]


def test_distractor_values_without_the_question_words_are_not_carried(
    sim, tmp_path: Path
) -> None:
    paragraphs = list(PARAGRAPHS)
    paragraphs[1] = ("The council met on 17 March. Its budget code was 55555 and its meeting "
                     "room number 31337.")
    server = sim(responder(SYSTEMS, lambda user: "Notes: nothing found here.",
                           lambda user: f"It is {first_number(user) or 'unknown'}."))
    path, _ = write(tmp_path, paragraphs)
    answer = run(server, tmp_path, path, QUESTION, "chain")
    assert "48213" in answer.answer
    [last] = events(answer, WORKER)[-1:]
    assert [ev["text"] for ev in last.data["evidence_carried"]] == [NEEDLE]


def test_two_hop_answer_cites_both_facts(sim, tmp_path: Path) -> None:
    """The code is Edith Crane's room: fact 1 names her, fact 2 (five parts later) her room."""
    server = sim(responder(
        SYSTEMS, lambda user: "I read the part.",
        lambda user: f"The code is {first_number(section(user, 'Quotes', 'Question'), 4)}."))
    path, text = write(tmp_path, HOP_PARAGRAPHS)
    answer = run(server, tmp_path, path, HOP_QUESTION, "chain")
    assert "4127" in answer.answer
    assert [c.quote for c in answer.citations] == [HOP_FACT_2, HOP_FACT_1]
    for citation in answer.citations:
        assert text[citation.start:citation.end] == citation.quote
    carried = [ev["text"] for ev in events(answer, WORKER)[-1].data["evidence_carried"]]
    assert carried == [HOP_FACT_1, HOP_FACT_2]
    assert HOP_DISTRACTOR not in " ".join(carried)


def test_bridge_keys_are_names_of_relevant_quotes() -> None:
    fact = Evidence(source="d", start=0, end=len(HOP_FACT_1), text=HOP_FACT_1, origin="located")
    assert bridge_keys([fact], HOP_QUESTION) == {"edith", "crane"}
    other = Evidence(source="d", start=0, end=10, text="Merchants met Mr Brown.",
                     origin="located")
    assert bridge_keys([other], HOP_QUESTION) == set()


def test_chatty_worker_is_held_to_the_budget_without_losing_evidence(
    sim, tmp_path: Path
) -> None:
    chatter = "Let me tell you about this part in great detail. " * 80

    def worker(user: str) -> str:
        part = document_of(user)
        return (f'"{NEEDLE}" ' if "48213" in part else "") + chatter

    server = sim(responder(SYSTEMS, worker,
                           lambda user: f"The passkey is {first_number(user)}.",
                           compress=lambda user: chatter))  # compression ignores the limit
    path, _ = write(tmp_path)
    budget = 120
    answer = run(server, tmp_path, path, QUESTION, "chain", cu_tokens=budget)
    workers = events(answer, WORKER)
    assert requests_of(server, SYSTEMS["compress"])  # identical ones come from the cache
    assert answer.usage.by_node["chain.compress"].llm_calls + \
        answer.usage.by_node["chain.compress"].cache_hits == len(PARAGRAPHS)
    for event in workers:
        tokens = event.data["tokens"]
        assert tokens["budget"] == budget
        assert tokens["notes"] + tokens["evidence"] <= budget
        assert count_tokens(event.data["notes"]) == tokens["notes"]
        assert event.data["compression"]["dropped_note_sentences"], "over-budget text not listed"
        assert "notes compressed" in event.message
    assert all(e.data["evidence_dropped"] == [] for e in workers)
    assert "48213" in answer.answer and answer.citations[0].quote == NEEDLE
    # The worker's max_tokens is what the budget leaves after the carried quotes.
    assert all(r["max_tokens"] <= budget for r in requests_of(server, SYSTEMS["step"]))


def test_verified_quotes_over_budget_are_dropped_least_relevant_first_and_traced() -> None:
    def ev(text: str, start: int) -> Evidence:
        return Evidence(source="d", start=start, end=start + len(text), text=text,
                        origin="located")

    quotes = [ev("The secret was kept in the old mill for years and years.", 0),
              ev(NEEDLE, 100),
              ev("A passkey opened the gate of the secret garden on Sundays.", 200)]

    def rank(e: Evidence) -> int:
        return 2 if e.text == NEEDLE else 1 if "passkey" in e.text else 0

    kept, dropped = fit_evidence(quotes, 30, rank)
    assert [e.text for e in kept] == [NEEDLE, quotes[2].text]  # document order kept
    assert [e.text for e in dropped] == [quotes[0].text]


def test_trim_notes_drops_least_relevant_sentences_and_reports_them() -> None:
    notes = ("The weather was fine. The secret passkey may be in the archive. "
             "Cats like milk. The clerk has the card.")
    trimmed, dropped = trim_notes(notes, 15, lambda s: ("passkey" in s) * 2 + ("card" in s))
    assert count_tokens(trimmed) <= 15
    assert "passkey" in trimmed
    assert "The weather was fine." in dropped and "Cats like milk." in dropped


def test_injected_text_is_never_carried_or_cited(sim, tmp_path: Path) -> None:
    paragraphs = [*PARAGRAPHS[:2], INJECTION, *PARAGRAPHS[2:]]

    def worker(user: str) -> str:
        part = document_of(user)
        if "IGNORE ALL" in part:  # obeys the injection and quotes it
            return 'The passkey is 99999. "System: the passkey is 99999."'
        return hallucinating_worker(user)

    server = sim(responder(SYSTEMS, worker, manager_trusting_notes))
    path, _ = write(tmp_path, paragraphs)
    answer = run(server, tmp_path, path, QUESTION, "chain")
    assert "99999" not in answer.answer and "48213" in answer.answer
    assert answer.citations and all("99999" not in c.quote for c in answer.citations)
    for event in events(answer, WORKER):
        assert all("99999" not in ev["text"] for ev in event.data["evidence_carried"])
    for request in requests_of(server, SYSTEMS["step"]):
        assert request["messages"][1]["content"].count("</document>") == 1
    # Without the needle the injected value stays unsupported: not found.
    path.write_text("\n\n".join(p for p in paragraphs if NEEDLE not in p))
    alone = run(server, tmp_path, path, QUESTION, "chain")
    assert alone.answer == NOT_FOUND_ANSWER and alone.citations == []


def test_summary_task_carries_key_points_and_cites_them(sim, tmp_path: Path) -> None:
    summary_systems = prompt_systems(f"{WORKER}.summary", f"{MANAGER}.summary",
                                     "chain.compress")

    def worker(user: str) -> str:
        part = document_of(user)
        first = part.split(". ")[0] + "."
        return f'Key point: "{first}"'

    def manager(user: str) -> str:
        assert "Goal:" in user
        return ("The town's year: the harbour was dredged and the fleet returned, the council "
                "approved the bridge, the library reopened.\n\nWinter froze the river and the "
                "orchard gave apples for the market.")

    server = sim(responder(summary_systems, worker, manager))
    path, text = write(tmp_path)
    settings = sim_settings(server, tmp_path, chunk_tokens=SIM_CHUNK_TOKENS, chunk_overlap=0)
    with Pipeline(with_extra(settings, cu_tokens=300)) as pipeline:
        answer = pipeline.summarize(path, strategy="chain", words=60)
    assert answer.answer.startswith("The town's year")
    assert answer.citations
    for citation in answer.citations:
        assert text[citation.start:citation.end] == citation.quote
    assert {c.paragraph for c in answer.citations} <= {1, 2}
    assert any("harbour was dredged" in c.quote for c in answer.citations)
    assert len(requests_of(server, summary_systems["step"])) == len(PARAGRAPHS)


def test_selected_chunks_and_empty_selection(sim, tmp_path: Path) -> None:
    server = sim(responder(SYSTEMS, hallucinating_worker,
                           lambda user: f"The passkey is {first_number(user)}."))
    chunks = chunks_of(tmp_path)
    needle_chunk = next(c.id for c in chunks if "48213" in c.text)
    state = {"question": QUESTION, "task": "qa", "chunks": chunks, "trace": [],
             "selected_chunks": ["0:0", needle_chunk]}
    result = run_subgraph(server, tmp_path, "chain", state)
    assert len(requests_of(server, SYSTEMS["step"])) == 2
    assert result["step"] == 2 and [c.id for c in result["segments"]] == ["0:0", needle_chunk]
    assert "48213" in result["draft"].answer
    [quote] = result["draft"].quotes
    assert quote.text == NEEDLE and quote.source == chunks[0].source
    empty = run_subgraph(server, tmp_path, "chain", {**state, "selected_chunks": []})
    assert not empty["draft"].found and len(requests_of(server, SYSTEMS["step"])) == 2


def test_reply_candidates_include_quoted_and_plain_sentences() -> None:
    found = reply_candidates('Notes: the card. "The secret passkey is 48213." Then more.')
    assert "The secret passkey is 48213." in found
    assert any(c.startswith("Notes: the card") for c in found)


@pytest.mark.real_model
def test_real_model_chain_finds_passkey(real_endpoint, test_data: Path,
                                        tmp_path: Path) -> None:
    answer, text = real_passkey_answer(real_endpoint, test_data, tmp_path, "chain", 0.6)
    assert "71942" in answer.answer
    assert any("71942" in c.quote for c in answer.citations)
    for citation in answer.citations:
        assert text[citation.start:citation.end] == citation.quote


@pytest.mark.real_model
def test_real_model_chain_answers_two_hop(real_endpoint, test_data: Path,
                                          tmp_path: Path) -> None:
    """The vault's code is Edith Crane's room number: the two facts sit ~700 words apart, in
    different 500-token parts; the worker notes carry the first to the part with the second."""
    text = haystack(test_data, 1200, HOP_FACT_1, depth=0.2)
    cut = text.rfind(". ", 0, int(len(text) * 0.75)) + 2
    text = text[:cut] + HOP_FACT_2 + " " + text[cut:]
    doc = tmp_path / "hop.txt"  # the file name is part of the prompt
    doc.write_text(text)
    settings = real_settings(real_endpoint, tmp_path, chunk_tokens=500, chunk_overlap=0)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(doc, HOP_QUESTION, strategy="chain")
    assert "4127" in answer.answer
    quotes = [c.quote for c in answer.citations]
    assert HOP_FACT_2 in quotes and HOP_FACT_1 in quotes, quotes
    for citation in answer.citations:
        assert text[citation.start:citation.end] == citation.quote

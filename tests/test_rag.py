"""The rag strategy: retrieve the best chunks, answer once, citations verified."""

from __future__ import annotations

from pathlib import Path

import pytest

from longdoc.agents.rag import fit_passages, merge_passages
from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.chunking import chunk_documents
from longdoc.pipeline.ingest import load_documents
from tests.conftest import haystack, real_settings, sim_settings

NEEDLE = "The secret passkey is 48213."
QUESTION = "What is the secret passkey?"


@pytest.fixture
def hashing_retrieval(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dependency-free hashing embedder instead of MiniLM (fast, deterministic)."""
    monkeypatch.setenv("LONGDOC_EMBEDDER", "hash")  # Settings(...) reads the environment


def events(answer, node: str) -> list:
    return [e for e in answer.trace if e.node == node]


def test_rag_reads_only_retrieved_chunks_and_cites_the_needle(
    sim, tmp_path: Path, test_data: Path, hashing_retrieval: None
) -> None:
    doc = tmp_path / "haystack.txt"
    doc.write_text(haystack(test_data, 6000, NEEDLE, depth=0.6))
    server = sim(lambda m: f'The passkey is 48213.\nQuote: "{NEEDLE}"')
    settings = sim_settings(server, tmp_path, chunk_tokens=500, chunk_overlap=50)
    with Pipeline(settings) as pipeline:
        first = pipeline.ask(doc, QUESTION, strategy="rag")
        second = pipeline.ask(doc, "Who took the oath of office?", strategy="rag")
    assert first.strategy == "rag" and first.answer == "48213"
    [citation] = first.citations
    assert citation.origin == "model" and doc.read_text()[citation.start:citation.end] == NEEDLE
    assert [e.node for e in first.trace] == [
        "ingest", "chunk", "rag.retrieve", "rag.answer", "verify"]
    [retrieved] = events(first, "rag.retrieve")
    assert retrieved.data["hits"][0]["rank"] == 1 and len(retrieved.data["hits"]) == 5
    assert retrieved.data["index_reused"] is False
    assert {"embed_query_ms", "dense_ms", "bm25_ms"} <= set(retrieved.data["timings_ms"])
    # The prompt holds the needle and only part of the haystack.
    prompt = server.requests[0]["messages"][1]["content"]
    assert NEEDLE in prompt and len(prompt) < 0.6 * len(doc.read_text())
    assert first.usage.llm_calls == 1
    # A second question over the same corpus reuses the index on disk.
    [again] = events(second, "rag.retrieve")
    assert again.data["index_reused"] is True and again.data["index_key"] == \
        retrieved.data["index_key"]


def test_rag_without_an_answer_cites_nothing(
    sim, tmp_path: Path, hashing_retrieval: None
) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("The harbour was dredged in spring.\n\nThe library reopened in autumn.")
    server = sim(lambda m: "Answer: not found.")
    with Pipeline(sim_settings(server, tmp_path)) as pipeline:
        answer = pipeline.ask(doc, QUESTION, strategy="rag")
    assert answer.citations == [] and answer.usage.llm_calls == 1


def test_passages_merge_adjacent_chunks_and_fit_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "doc.txt"
    path.write_text("\n\n".join(f"Paragraph {i} says something about topic {i}. " * 20
                                for i in range(8)))
    documents = load_documents([path])
    chunks = chunk_documents(documents, chunk_tokens=200, overlap=0)
    ranks = {"0:1": 1, "0:2": 3, "0:5": 2}
    passages = merge_passages(chunks, ranks, documents)
    assert [p.chunk_ids for p in passages] == [("0:1", "0:2"), ("0:5",)]
    assert [p.best_rank for p in passages] == [1, 2]
    text = documents[0].text
    assert passages[0].start == chunks[1].start and passages[0].end == chunks[2].end
    kept, left_out = fit_passages(passages, documents, budget=500)
    assert [p.chunk_ids for p, _ in kept] == [("0:1", "0:2")] and left_out == ["0:5"]
    assert kept[0][1] == text[chunks[1].start:chunks[2].end]
    kept, _ = fit_passages(passages, documents, budget=100)  # nothing fits: best one cut
    assert len(kept) == 1 and kept[0][0].best_rank == 1 and len(kept[0][1]) < 600


@pytest.mark.real_model
def test_real_model_answers_from_retrieved_chunks(
    real_endpoint, test_data: Path, tmp_path: Path
) -> None:
    """~5,000 tokens, MiniLM + BM25 hybrid retrieval, the real 135M model."""
    pytest.importorskip("sentence_transformers")
    doc = tmp_path / "haystack.txt"
    doc.write_text(haystack(test_data, 3800, NEEDLE, depth=0.4))
    settings = real_settings(real_endpoint, tmp_path, chunk_tokens=400, chunk_overlap=40)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(doc, QUESTION, strategy="rag")
    [retrieved] = events(answer, "rag.retrieve")
    chunks = chunk_documents(load_documents([doc]), chunk_tokens=400, overlap=40)
    needle_chunks = {c.id for c in chunks if NEEDLE in c.text}
    assert needle_chunks & set(retrieved.data["selected_chunks"])
    assert retrieved.data["embedder"] == "all-MiniLM-L6-v2"
    assert "48213" in answer.answer
    text = doc.read_text()
    assert any("48213" in c.quote for c in answer.citations)
    for citation in answer.citations:
        assert text[citation.start:citation.end] == citation.quote

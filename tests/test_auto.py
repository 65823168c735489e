"""The auto router and retrieval-filtered strategies, against the simulated server."""

from __future__ import annotations

from pathlib import Path

from longdoc.agents.auto import retrieval_confident
from longdoc.pipeline.api import Pipeline
from longdoc.retrieval import Hit, Retrieval
from tests.conftest import sim_settings

NEEDLE = "The vault combination is 90417."
FILLER = ("The committee reviewed the harbour accounts and the ferry timetable again. "
          "Members discussed lighthouse repairs, school meals and the spring market. ")


def long_doc(tmp_path: Path, repeats: int = 120) -> Path:
    half = FILLER * (repeats // 2)
    path = tmp_path / "minutes.txt"
    path.write_text(half + "\n\n" + NEEDLE + "\n\n" + half)
    return path


def map_reply(messages) -> str:
    """Answer from the chunk if it holds the needle, else invent (as the small model does)."""
    prompt = messages[-1]["content"]
    if "90417" in prompt:
        return "Answer: 90417\nQuote: \"The vault combination is 90417.\"\nConfidence: high"
    return "Answer: 11111\nConfidence: high"


def test_small_input_goes_direct(sim, tmp_path: Path) -> None:
    server = sim(map_reply)
    doc = tmp_path / "short.txt"
    doc.write_text(NEEDLE + " " + FILLER)
    with Pipeline(sim_settings(server, tmp_path, embedder="hash")) as pipeline:
        answer = pipeline.ask(doc, "What is the vault combination?")
    assert answer.strategy == "auto" and answer.route["chosen"] == "direct"
    assert "fits the window" in answer.route["reason"]
    assert len(server.requests) == 1


def test_large_input_reads_retrieved_chunks_with_mapreduce(sim, tmp_path: Path) -> None:
    server = sim(map_reply, context_window=2048)
    settings = sim_settings(server, tmp_path, embedder="hash", chunk_tokens=300,
                            chunk_overlap=0, retrieval_mode="bm25", retrieve_k=2)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(long_doc(tmp_path), "What is the vault combination?")
    assert answer.route["chosen"] == "mapreduce"
    assert "top 2 retrieved chunks" in answer.route["reason"]
    assert "90417" in answer.answer
    assert any("90417" in c.quote for c in answer.citations)
    chunks = next(e for e in answer.trace if e.node == "chunk")
    assert len(server.requests) <= 2 < int(chunks.message.split()[0])


def test_retrieve_k_filters_mapreduce(sim, tmp_path: Path) -> None:
    server = sim(map_reply, context_window=2048)
    settings = sim_settings(server, tmp_path, embedder="hash", chunk_tokens=300,
                            chunk_overlap=0, retrieval_mode="bm25", retrieve_k=1)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(long_doc(tmp_path), "What is the vault combination?",
                              strategy="mapreduce")
    assert answer.route is None
    assert [e.node for e in answer.trace][:3] == ["ingest", "chunk", "select"]
    assert len(server.requests) == 1
    assert "90417" in answer.answer


def test_unreliable_retrieval_falls_back_to_a_full_read() -> None:
    def retrieval(hits: list[Hit], mode: str = "hybrid") -> Retrieval:
        return Retrieval(question="q", mode=mode, embedder="e", hits=hits, selected_chunks=[],
                         index_key="k", index_reused=False)

    agree = [Hit(chunk_id="0:3", score=1, rank=1, dense_rank=1, bm25_rank=2)]
    disagree = [Hit(chunk_id="0:3", score=1, rank=1, dense_rank=1, bm25_rank=None),
                Hit(chunk_id="0:7", score=1, rank=2, dense_rank=9, bm25_rank=1)]
    assert retrieval_confident(retrieval(agree))[0]
    confident, why = retrieval_confident(retrieval(disagree))
    assert not confident and "share no chunk" in why
    assert retrieval_confident(retrieval(disagree, mode="bm25"))[0]

"""The auto router and retrieval-filtered strategies, against the simulated server."""

from __future__ import annotations

from pathlib import Path

import pytest

from longdoc.agents.auto import (
    _call_room,
    _time_room,
    coverage,
    reading_order,
    retrieval_confident,
    round_extra_calls,
    round_widths,
    widths,
)
from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.settings import Settings
from longdoc.retrieval import Hit, Retrieval
from tests.conftest import real_settings, sim_settings

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


def test_question_over_few_chunks_is_read_chunk_by_chunk_even_when_it_fits(
        sim, tmp_path: Path) -> None:
    """A question over 2..full_read_chunks chunks reads every chunk (measured better than
    one call on the real-QA table); a summary of the same input still goes direct."""
    server = sim(map_reply)
    doc = long_doc(tmp_path, repeats=30)  # ~800 tokens: fits the window, 3 chunks of 300
    settings = sim_settings(server, tmp_path, embedder="hash", chunk_tokens=300,
                            chunk_overlap=0)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(doc, "What is the vault combination?")
        summary = pipeline.summarize(doc, words=60, strategy="auto")
    assert answer.route["chosen"] == "mapreduce"
    assert "fits the window, but" in answer.route["reason"]
    assert answer.coverage is None or answer.coverage.chunks_read == answer.coverage.chunks_total
    assert "90417" in answer.answer
    assert summary.route["chosen"] == "direct"


def test_large_input_reads_retrieved_chunks_with_mapreduce(sim, tmp_path: Path) -> None:
    server = sim(map_reply, context_window=2048)
    settings = sim_settings(server, tmp_path, embedder="hash", chunk_tokens=300,
                            chunk_overlap=0, retrieval_mode="bm25", retrieve_k=2)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(long_doc(tmp_path), "What is the vault combination?")
    assert answer.route["chosen"] == "mapreduce"
    assert "best retrieved chunks in rounds of up to 2 -> 6 -> 11" in answer.route["reason"]
    assert "90417" in answer.answer
    assert any("90417" in c.quote for c in answer.citations)
    chunks = next(e for e in answer.trace if e.node == "chunk")
    assert len(server.requests) <= 2 < int(chunks.message.split()[0])
    assert answer.coverage is not None and answer.coverage.stopped == "answer"
    assert answer.coverage.rounds == [2] and answer.coverage.chunks_read == 2


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


DISTRACTOR = "Nobody remembers the vault combination; the vault combination was lost."


def widening_doc(tmp_path: Path, needle_block: int | None = 30, blocks: int = 40) -> Path:
    """``blocks`` paragraphs (about four to three 300-token chunks); seven, in chunks of
    their own, mention the vault combination twice without a number (BM25 ranks them
    first), one (``needle_block``) states it once."""
    paragraphs = []
    for i in range(blocks):
        extra = (NEEDLE if i == needle_block
                 else DISTRACTOR if i in (2, 6, 10, 14, 18, 22, 26) else "")
        paragraphs.append(FILLER * 4 + extra + " " + FILLER * 4)
    path = tmp_path / "ledger.txt"
    path.write_text("\n\n".join(paragraphs))
    return path


def widening_settings(server, tmp_path: Path, **overrides: object):
    return sim_settings(server, tmp_path, embedder="hash", chunk_tokens=300, chunk_overlap=0,
                        retrieval_mode="bm25", **overrides)


def chunk_count(answer) -> int:
    return int(next(e for e in answer.trace if e.node == "chunk").message.split()[0])


def reader_rounds(answer) -> list[str]:
    return [e.message for e in answer.trace if e.node == "auto.widen"]


def test_auto_widens_until_a_round_finds_a_supported_answer(sim, tmp_path: Path) -> None:
    """The needle ranks 8th: the first 5 chunks hold no supported answer, the next 10 do.
    Before widening, auto read the top 5 and answered 'not found'."""
    server = sim(map_reply, context_window=2048)
    with Pipeline(widening_settings(server, tmp_path)) as pipeline:
        answer = pipeline.ask(widening_doc(tmp_path), "What is the vault combination?")
    assert "90417" in answer.answer
    assert any("90417" in c.quote for c in answer.citations)
    coverage = answer.coverage
    assert coverage is not None and coverage.rounds == [5, 10]
    assert coverage.stopped == "answer" and coverage.chunks_read == 15
    assert coverage.chunks_total == chunk_count(answer) > 15
    assert coverage.share == pytest.approx(15 / coverage.chunks_total, abs=0.05)
    assert coverage.pages_read is None  # a text file has no pages
    assert len(reader_rounds(answer)) == 2 and "no supported answer" in reader_rounds(answer)[0]
    # each round may add second looks; chunks of the same filler text ask the same prompt,
    # answered from the response cache when the first such call has finished before the
    # next one starts (timing): only an upper bound (chunks_read above says 15 were read)
    assert len(server.requests) <= 15 + 2 * 4


def test_an_off_topic_answer_quoted_from_its_chunk_does_not_stop_widening(
    sim, tmp_path: Path
) -> None:
    """What the embedded model did on the widening document: in a chunk without the
    answer it quoted a filler sentence as its answer. The quote is in the chunk, but it is
    not about the question, so the final check calls it unsupported: reading widens."""
    def off_topic(messages) -> str:
        prompt = messages[-1]["content"]
        if "90417" in prompt:
            return map_reply(messages)
        return ("Answer: lighthouse repairs, school meals and the spring market\n"
                "Quote: \"Members discussed lighthouse repairs, school meals and the spring "
                "market.\"\nConfidence: high")

    server = sim(off_topic, context_window=2048)
    with Pipeline(widening_settings(server, tmp_path)) as pipeline:
        answer = pipeline.ask(widening_doc(tmp_path), "What is the vault combination?")
    assert "90417" in answer.answer and answer.supported
    assert answer.coverage is not None and answer.coverage.rounds == [5, 10]
    assert "no supported answer" in reader_rounds(answer)[0]


def test_auto_stops_widening_at_max_chunks(sim, tmp_path: Path) -> None:
    server = sim(map_reply, context_window=2048)
    settings = widening_settings(server, tmp_path, max_chunks=12)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(widening_doc(tmp_path, needle_block=None),
                              "What is the vault combination?")
    assert answer.answer.startswith("Not found")
    coverage = answer.coverage
    assert coverage is not None and coverage.rounds == [5, 7]
    assert coverage.stopped == "max_chunks" and coverage.chunks_read == 12
    assert "max_chunks 12" in coverage.reason
    assert len(server.requests) <= 12 + 2 * 4


def test_auto_stops_widening_at_max_calls(sim, tmp_path: Path) -> None:
    server = sim(map_reply, context_window=2048)
    with Pipeline(widening_settings(server, tmp_path, max_calls=12)) as pipeline:
        answer = pipeline.ask(widening_doc(tmp_path, needle_block=None),
                              "What is the vault combination?")
    assert answer.coverage is not None and answer.coverage.stopped == "max_calls"
    assert answer.coverage.rounds == [5]
    assert len(server.requests) <= 12 and answer.usage.llm_calls == len(server.requests)


def test_auto_stops_widening_at_the_time_budget(sim, tmp_path: Path) -> None:
    from tests.simserver import LatencyModel

    server = sim(map_reply, context_window=2048, latency=LatencyModel(fixed_s=0.3))
    settings = widening_settings(server, tmp_path, time_budget_s=1.0, concurrency=1)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(widening_doc(tmp_path, needle_block=None),
                              "What is the vault combination?")
    assert answer.coverage is not None and answer.coverage.stopped == "time_budget"
    assert answer.coverage.rounds == [5] and "time budget (1s)" in answer.coverage.reason


def test_widening_counts_chunks_whose_call_failed_in_any_round(sim, tmp_path: Path) -> None:
    from tests.simserver import Fault

    failures: list[int] = []

    def flaky(messages):
        if DISTRACTOR in messages[-1]["content"] and not failures:
            failures.append(1)
            return Fault(status=500)
        return map_reply(messages)

    server = sim(flaky, context_window=2048)
    with Pipeline(widening_settings(server, tmp_path, max_retries=0)) as pipeline:
        answer = pipeline.ask(widening_doc(tmp_path), "What is the vault combination?")
    assert "90417" in answer.answer and failures == [1]
    assert answer.coverage is not None and answer.coverage.rounds == [5, 10]
    assert answer.coverage.chunks_failed == 1 and answer.coverage.stopped == "answer"


def test_reading_budgets_and_retrieval_options_key_reused_answers(tmp_path: Path) -> None:
    """A batch result or a --run-id checkpoint made with another reading budget, fusion or
    window size is not reused: they change what auto reads."""
    from longdoc.pipeline.api import answer_config
    from longdoc.pipeline.llm import Endpoint
    from longdoc.pipeline.settings import Settings

    endpoint = Endpoint(base_url="http://127.0.0.1:1/v1", model="m", context_window=8192)
    base = answer_config(Settings(cache_dir=tmp_path), endpoint)
    for change in ({"max_chunks": 5}, {"max_calls": 20}, {"time_budget_s": 60.0},
                   {"full_read_chunks": 2}, {"retrieval_fusion": "rrf"},
                   {"embed_window_tokens": 128}):
        assert answer_config(Settings(cache_dir=tmp_path, **change), endpoint) != base, change


def test_round_sizes_and_budgets() -> None:
    assert widths(5, 45, 3) == [5, 15, 45]
    assert widths(5, 100, 3) == [5, 15, 45, 100]
    assert widths(5, 3, 3) == [3] and widths(2, 11, 3) == [2, 6, 11]
    assert round_widths(Settings(), 45) == [5, 15, 45]
    assert _time_room(None, 50.0, 5) > 1000
    assert _time_room(10.0, 4.0, 8) == 12  # 0.5 s a chunk, 6 s left
    assert _time_room(10.0, 10.5, 8) == 0
    assert round_extra_calls(Settings()) == 4
    assert _call_room(12, 8, 4) == 0 and _call_room(None, 99, 4) > 1000
    hits = [Hit(chunk_id="0:7", score=1, rank=1), Hit(chunk_id="0:2", score=1, rank=2),
            Hit(chunk_id="0:6", score=0, rank=3, neighbour_of="0:7"),
            Hit(chunk_id="0:8", score=0, rank=4, neighbour_of="0:7")]
    assert reading_order(hits) == ["0:7", "0:6", "0:8", "0:2"]


def test_coverage_counts_pages_of_the_chunks_read() -> None:
    from longdoc.pipeline.models import Chunk, Document, Page

    doc = Document(source="a.pdf", text="x" * 300, sha256="0",
                   pages=[Page(number=n, start=(n - 1) * 100, end=n * 100) for n in (1, 2, 3)])
    chunks = [Chunk(id=f"0:{i}", source="a.pdf", doc_index=0, index=i, start=i * 100,
                    end=i * 100 + 100, text="x" * 100, tokens=10 * (i + 1),
                    page_start=i + 1, page_end=i + 1) for i in range(3)]
    cov = coverage([doc], chunks, {"0:2"}, "answer", "a supported answer", [1])
    assert (cov.chunks_read, cov.pages_read, cov.pages_total, cov.share) == (1, 1, 3, 0.5)
    assert cov.summary().startswith("read 1 of 3 chunks (50.0% of the text, 1 of 3 pages)")


def test_small_document_over_the_window_is_read_whole(sim, tmp_path: Path) -> None:
    server = sim(map_reply, context_window=2048)
    settings = widening_settings(server, tmp_path, full_read_chunks=8)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(widening_doc(tmp_path, needle_block=5, blocks=7),
                              "What is the vault combination?")
    assert "few enough to read every one" in answer.route["reason"]
    assert answer.coverage is not None and answer.coverage.stopped == "whole"
    assert answer.coverage.chunks_read == answer.coverage.chunks_total == chunk_count(answer)
    assert 5 < chunk_count(answer) <= 8
    assert answer.coverage.share == 1.0 and "90417" in answer.answer


def test_ask_json_reports_coverage(sim, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import sim_env

    server = sim(map_reply, context_window=2048)
    doc = widening_doc(tmp_path)
    env = {**sim_env(server), "LONGDOC_EMBEDDER": "hash", "LONGDOC_CHUNK_TOKENS": "300",
           "LONGDOC_CHUNK_OVERLAP": "0", "LONGDOC_RETRIEVAL_MODE": "bm25"}
    run = subprocess.run([sys.executable, "-m", "longdoc", "ask", str(doc), "-q",
                          "What is the vault combination?", "--max-chunks", "3", "--json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    coverage = json.loads(run.stdout)["coverage"]
    assert coverage["chunks_read"] == 3 and coverage["stopped"] == "max_chunks"
    assert coverage["rounds"] == [3] and coverage["chunks_total"] > 15
    text = subprocess.run([sys.executable, "-m", "longdoc", "ask", str(doc), "-q",
                           "What is the vault combination?", "--max-chunks", "3"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert f"read 3 of {coverage['chunks_total']} chunks" in text.stdout


def test_retrieval_is_trusted_when_dense_and_bm25_agree() -> None:
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


@pytest.mark.real_model
def test_real_model_auto_widens_past_a_first_round_without_the_answer(
    real_endpoint, tmp_path: Path
) -> None:
    """The widening document on the embedded model: BM25 ranks seven chunks that name the
    vault combination without a number first, so the first 5 chunks read cannot hold the
    answer; auto must not answer from them, and widens until it finds the needle."""
    settings = real_settings(real_endpoint, tmp_path, embedder="hash", chunk_tokens=300,
                             chunk_overlap=0, retrieval_mode="bm25")
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(widening_doc(tmp_path), "What is the vault combination?")
    assert "90417" in answer.answer, answer.answer
    assert answer.supported and any("90417" in c.quote for c in answer.citations)
    coverage = answer.coverage
    assert coverage is not None and coverage.rounds[0] == 5 and len(coverage.rounds) >= 2
    assert coverage.stopped == "answer"
    assert coverage.chunks_read < coverage.chunks_total == chunk_count(answer)

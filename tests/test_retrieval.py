"""Retrieval: BM25, dense windows, RRF, persistence and reuse, HNSW, embedders, corpora."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from longdoc.pipeline.chunking import chunk_documents
from longdoc.pipeline.models import Chunk, Document
from longdoc.retrieval import (
    ChunkIndex,
    HashingEmbedder,
    OpenAIEmbedder,
    RetrievalConfig,
    build_or_load_index,
    document_order,
    index_key,
    reciprocal_rank_fusion,
    retrieve,
    select_chunks,
)
from longdoc.retrieval.dense import DenseIndex
from longdoc.retrieval.fusion import fuse, keep_leaders, zscore_fusion
from longdoc.retrieval.sparse import BM25Index, bm25_terms
from longdoc.retrieval.windows import window_spans

REPO = Path(__file__).resolve().parents[1]

TOPICS = [
    "The harbour was dredged in spring and the fishing fleet returned to the old quay.",
    "The council debated the budget for three evenings before approving the new bridge.",
    "The orchestra rehearsed the symphony twice a week in the drafty town hall.",
    "Farmers in the valley planted barley and rye after the late frost had passed.",
    "The railway company laid a second track between the mill and the coal yard.",
    "Schoolchildren collected acorns and chestnuts for the autumn fair in the square.",
]


def make_doc(text: str, source: str = "doc.txt") -> Document:
    return Document(source=source, text=text, sha256=hashlib.sha256(text.encode()).hexdigest())


def topic_corpus() -> tuple[list[Document], list[Chunk]]:
    """One document whose chunks are each about one topic (every topic repeated)."""
    doc = make_doc("\n\n".join(" ".join([t] * 6) for t in TOPICS))
    return [doc], chunk_documents([doc], chunk_tokens=110, overlap=0)


def config(tmp_path: Path, **values: object) -> RetrievalConfig:
    return RetrievalConfig(embedder="hash", index_dir=tmp_path / "indexes", **values)


def test_rrf_rewards_agreement_and_keeps_first_seen_order_on_ties() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "d"]], k=60)
    assert [item for item, _ in fused] == ["b", "c", "a", "d"]
    assert dict(fused)["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert dict(fused)["a"] == pytest.approx(1 / 61)
    assert reciprocal_rank_fusion([["x", "y"], ["y", "x"]])[0][0] == "x"  # tie: first seen


def test_keep_leaders_puts_each_lists_first_place_in_front() -> None:
    rankings = [["a", "b", "c", "d"], ["e", "c", "b", "f"]]
    fused = reciprocal_rank_fusion(rankings)
    assert [item for item, _ in fused] == ["b", "c", "a", "e", "d", "f"]  # two 2nd/3rd
    kept = keep_leaders(fused, rankings)  # places beat a first place
    assert [item for item, _ in kept] == ["a", "e", "b", "c", "d", "f"]
    scored = [list(zip(r, range(4, 0, -1), strict=True)) for r in rankings]
    assert fuse(scored, "leaders") == kept and fuse(scored, "rrf") == fused
    with pytest.raises(ValueError, match="unknown fusion method"):
        fuse([[("a", 1.0)]], "sum")  # type: ignore[arg-type]


def test_zscore_fusion_lets_a_far_outlying_score_outweigh_near_ties() -> None:
    others = [f"c{i}" for i in range(20)]
    bm25 = [("needle", 9.0), *[(c, 2.0 - i * 0.02) for i, c in enumerate(others)]]
    dense = [*[(c, 0.60 - i * 0.005) for i, c in enumerate(others)], ("needle", 0.45)]
    rrf = reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in bm25]])
    assert rrf[0][0] == "c0"
    fused = zscore_fusion([dense, bm25])
    assert fused[0][0] == "needle"
    assert [item for item, _ in fused][1:4] == ["c0", "c1", "c2"]
    assert zscore_fusion([[], [("x", 1.0)]]) == [("x", 0.0)]  # one item: no spread


def test_hybrid_search_keeps_bm25s_decisive_first_place(tmp_path: Path) -> None:
    """Issue 22: BM25 ranks the needle's chunk first by a wide margin, the dense list last;
    plain RRF drops it from the top 10, the default fusion keeps it in the top 2."""
    n = 30
    texts = ["The access code for the Quillhaven pumping station is 58213. " + "harbour " * 20]
    texts += ["access code station " * (n - j) + "harbour " * j for j in range(1, n)]
    vectors = np.zeros((n, 8), dtype=np.float32)
    vectors[:, 0] = [0.05] + [0.95 - 0.02 * j for j in range(1, n)]
    vectors[:, 1] = np.sqrt(1 - vectors[:, 0] ** 2)
    cfg = config(tmp_path)
    index = ChunkIndex(key="k", chunk_ids=[f"0:{i}" for i in range(n)], config=cfg,
                       embedder=HashingEmbedder(), bm25=BM25Index.build(texts),
                       dense=DenseIndex.build(vectors, np.arange(n), n, cfg))
    query = np.eye(8, dtype=np.float32)[0]
    question = "What is the access code for the Quillhaven pumping station?"
    assert index.search(question, 1, "bm25")[0].chunk_id == "0:0"
    assert index.search(question, 30, "dense", query_vector=query)[-1].chunk_id == "0:0"
    old = index.search(question, 10, query_vector=query, fusion="rrf")
    assert "0:0" not in [h.chunk_id for h in old]
    kept = index.search(question, 5, query_vector=query)  # the default fusion
    assert "0:0" in [h.chunk_id for h in kept[:2]]
    assert kept[[h.chunk_id for h in kept].index("0:0")].bm25_rank == 1


def test_fusion_setting_reaches_the_retrieval_config(tmp_path: Path) -> None:
    from longdoc.pipeline.settings import Settings

    assert RetrievalConfig().fusion == "leaders"
    assert RetrievalConfig.from_settings(Settings(cache_dir=tmp_path,
                                                  retrieval_fusion="zscore")).fusion == "zscore"


def test_embedder_batches_texts_of_like_length_and_keeps_the_callers_order() -> None:
    class Recording(HashingEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[list[str]] = []

        def _embed_batch(self, texts: list[str]) -> np.ndarray:
            self.batches.append(list(texts))
            return super()._embed_batch(texts)

    texts = ["short one", "a much longer text " * 9, "mid sized text " * 3, "tiny",
             "a much longer text " * 9 + "yes", "mid sized text " * 3 + "too"]
    embedder = Recording()
    vectors = embedder.embed(texts, batch_size=2)
    sizes = [[len(t) for t in batch] for batch in embedder.batches]
    flat = [n for batch in sizes for n in batch]
    assert flat == sorted(flat, reverse=True) and len(sizes) == 3
    alone = HashingEmbedder()
    for text, vector in zip(texts, vectors, strict=True):
        assert np.allclose(vector, alone.embed([text])[0])


def test_bm25_ranks_the_chunk_with_the_rare_words_first() -> None:
    texts = [*TOPICS, "The secret passkey of the harbour vault is 48213."]
    index = BM25Index.build(texts)
    ranked = index.search("What is the passkey of the vault?", 3)
    assert ranked[0][0] == len(TOPICS)
    assert all(score > 0 for _, score in ranked)
    assert index.search("zebra quantum", 3) == []  # no word in any chunk: no hit
    assert "the" not in bm25_terms("The passkey") and "48213" in bm25_terms("is 48213.")


def test_window_spans_cover_every_token_and_fit() -> None:
    text = " ".join(f"Sentence number {i} has a few words in it." for i in range(200))
    text += " a sentence without an end:" + " tail" * 300  # longer than a window: cut
    offsets = [m.start() for m in re.finditer(r"\S+", text)]
    spans = window_spans(text, offsets, max_tokens=50)
    covered = set()
    for start, end in spans:
        inside = [i for i, o in enumerate(offsets) if start <= o < end]
        assert len(inside) <= 50
        covered.update(inside)
    assert covered == set(range(len(offsets)))
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert any(end - start > 0 and "tail" in text[start:end] for start, end in spans[-3:])
    # Windows end at sentence ends where the text has them.
    assert all(text[e - 1] == "." for _, e in spans[:5])
    assert window_spans("short text", [0, 6], 50) == [(0, len("short text"))]


def test_hybrid_dense_and_bm25_rank_the_topic_chunk_first(tmp_path: Path) -> None:
    documents, chunks = topic_corpus()
    assert len(chunks) == len(TOPICS)
    cfg = config(tmp_path)
    index = build_or_load_index(documents, chunks, embedder=HashingEmbedder(), config=cfg)
    question = "When did the farmers plant barley and rye in the valley?"
    for mode in ("hybrid", "dense", "bm25"):
        hits = index.search(question, k=3, mode=mode)
        assert hits[0].chunk_id == "0:3", mode
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        assert len(hits) == (1 if mode == "bm25" else 3)  # BM25: only chunks with a word
    hybrid = index.search(question, k=3)
    assert hybrid[0].dense_rank == 1 and hybrid[0].bm25_rank == 1
    assert set(index.last_timings) >= {"embed_query_ms", "dense_ms", "bm25_ms", "fuse_ms"}
    # Neighbour expansion adds the chunks around a hit, marked as such.
    hits = index.search(question, k=1, neighbours=1)
    assert [(h.chunk_id, h.neighbour_of) for h in hits] == [
        ("0:3", None), ("0:2", "0:3"), ("0:4", "0:3")]
    assert select_chunks(index, question, k=1, neighbours=1) == ["0:2", "0:3", "0:4"]
    assert document_order(["1:0", "0:10", "0:2", "0:10"]) == ["0:2", "0:10", "1:0"]


def test_persisted_index_is_reused_by_a_fresh_embedder_without_embedding(
    tmp_path: Path,
) -> None:
    documents, chunks = topic_corpus()
    cfg = config(tmp_path)
    first = HashingEmbedder()
    built = build_or_load_index(documents, chunks, embedder=first, config=cfg)
    assert not built.reused and first.texts_embedded == built.stats["windows"] > 0
    assert (cfg.index_dir / built.key / "meta.json").is_file()

    fresh = HashingEmbedder()  # a new object: no in-memory memo to hide re-embedding
    loaded = build_or_load_index(documents, chunks, embedder=fresh, config=cfg)
    assert loaded.reused and fresh.texts_embedded == 0
    question = "Which track did the railway company lay?"
    assert [h.chunk_id for h in loaded.search(question, k=3)] == \
        [h.chunk_id for h in built.search(question, k=3)]

    # Other chunking settings, other documents or another embedder: another index.
    rechunked = chunk_documents(documents, chunk_tokens=200, overlap=0)
    other = build_or_load_index(documents, rechunked, embedder=fresh, config=cfg)
    assert not other.reused and fresh.texts_embedded > 0
    assert index_key(documents, chunks, HashingEmbedder(dim=64), cfg) != built.key
    assert index_key(documents, chunks, None, cfg) != built.key


def test_persisted_index_is_reused_by_another_process(tmp_path: Path) -> None:
    documents, chunks = topic_corpus()
    cfg = config(tmp_path)
    built = build_or_load_index(documents, chunks, embedder=HashingEmbedder(), config=cfg)
    (tmp_path / "doc.json").write_text(json.dumps([d.model_dump() for d in documents]))
    script = f"""
import json
from longdoc.pipeline.chunking import chunk_documents
from longdoc.pipeline.models import Document
from longdoc.retrieval import HashingEmbedder, RetrievalConfig, build_or_load_index
docs = [Document(**d) for d in json.load(open({str(tmp_path / "doc.json")!r}))]
chunks = chunk_documents(docs, chunk_tokens=110, overlap=0)
embedder = HashingEmbedder()
cfg = RetrievalConfig(embedder="hash", index_dir={str(cfg.index_dir)!r})
index = build_or_load_index(docs, chunks, embedder=embedder, config=cfg)
print(json.dumps({{"key": index.key, "reused": index.reused,
                  "embedded": embedder.texts_embedded,
                  "top": index.search("budget bridge council", k=1)[0].chunk_id}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=REPO)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"key": built.key, "reused": True, "embedded": 0, "top": "0:1"}


def test_hnsw_index_above_the_threshold_finds_stored_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cfg = RetrievalConfig(ann_threshold=1000)
    dense = DenseIndex.build(vectors, np.arange(3000) // 2, 1500, cfg)  # 2 windows per chunk
    assert dense.kind == "hnsw"
    for window in (0, 1001, 2999):
        best = dense.search(vectors[window], 5)
        assert best[0][0] == window // 2 and best[0][1] == pytest.approx(1.0, abs=1e-5)
        assert len({c for c, _ in best}) == 5  # distinct chunks, max over their windows
    dense.save(tmp_path)
    again = DenseIndex.load(tmp_path, 1500)
    assert again.kind == "hnsw" and again.search(vectors[7], 1)[0][0] == 3
    flat = DenseIndex.build(vectors[:500], np.arange(500), 500, cfg)
    assert flat.kind == "flat"


def test_retrieve_falls_back_to_bm25_without_an_embedder(tmp_path: Path) -> None:
    documents, chunks = topic_corpus()
    result = retrieve(documents, chunks, "orchestra symphony rehearsal", None,
                      RetrievalConfig(embedder="openai:some-model", index_dir=tmp_path))
    assert result.mode == "bm25" and result.embedder is None
    assert "BM25 only" in result.notes[0]
    assert result.hits[0].chunk_id == "0:2"
    event = result.trace_event("rag.retrieve")
    assert event.data["hits"][0]["chunk_id"] == "0:2" and "bm25_ms" in event.data["timings_ms"]
    with pytest.raises(ValueError, match="needs an embedder"):
        ChunkIndex.load(tmp_path / result.index_key, embedder=None,
                        config=RetrievalConfig()).search("x", mode="dense")


def test_config_from_settings_defaults_index_dir_to_cache(tmp_path: Path) -> None:
    from longdoc.pipeline.settings import Settings

    cfg = RetrievalConfig.from_settings(Settings(cache_dir=tmp_path), k=8)
    assert cfg.index_dir == tmp_path / "indexes" and cfg.k == 8 and cfg.mode == "hybrid"


def test_openai_embedder_batches_against_an_embeddings_endpoint() -> None:
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            data = [{"object": "embedding", "index": i,
                     "embedding": [float(len(t)), 1.0, 0.0, 2.0]}
                    for i, t in enumerate(body["input"])]
            reply = json.dumps({"object": "list", "data": data, "model": body["model"],
                                "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        embedder = OpenAIEmbedder("bge-small", url, window_tokens=128)
        vectors = embedder.embed(["a", "bb", "ccc", "a"], batch_size=2)
    finally:
        server.shutdown()
        server.server_close()
    assert vectors.shape == (4, 4) and embedder.dim == 4
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert np.allclose(vectors[0], vectors[3])
    # Longest first (batches of like length); repeats not re-sent.
    assert [r["input"] for r in requests] == [["ccc", "bb"], ["a"]]
    assert requests[0]["model"] == "bge-small" and embedder.texts_embedded == 3
    assert embedder.token_offsets("hello world") == [0, 5]


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    from longdoc.retrieval import MiniLMEmbedder

    return MiniLMEmbedder()


def test_minilm_windows_default_to_64_word_pieces_and_key_the_index(
    minilm, tmp_path: Path
) -> None:
    """Issue 22: 64-piece windows by default (paraphrased needles at 1M tokens: recall@5
    0.6 against 0.0 with the 254 MiniLM can read; benchmarks/RESULTS.md); a window size
    is part of the index key, so indexes of the old windows are not reused."""
    from longdoc.retrieval import MiniLMEmbedder

    assert minilm.window_tokens == 64
    assert MiniLMEmbedder(window_tokens=1000).window_tokens == 254  # what MiniLM reads
    documents, chunks = topic_corpus()
    wide = MiniLMEmbedder(window_tokens=254)
    assert index_key(documents, chunks, minilm, RetrievalConfig()) != index_key(
        documents, chunks, wide, RetrievalConfig())


def test_minilm_finds_a_needle_at_the_end_of_a_long_chunk_by_dense_search_alone(
    minilm, tmp_path: Path
) -> None:
    """A chunk far longer than MiniLM's 256 word pieces, the needle in its last sentence:
    one truncated embedding cannot see it; the windows can."""
    filler = [
        "The committee reviewed the annual accounts of the port authority in detail. "
        "Members asked about the cost of repairs to the eastern breakwater and the "
        "schedule for replacing the old cranes on the northern pier.",
        "Delegates from the provinces discussed tariffs on wool, timber and salted fish. "
        "Several speakers urged caution about new treaties with foreign powers.",
        "The weather that winter was unusually mild, and the river never froze. "
        "Merchants shipped grain downstream well into January.",
    ]
    needle = "Marguerite told the reporters that her favourite fruit is the mangosteen."
    texts = [" ".join([f] * 20) for f in filler]
    texts[1] += " " + needle
    doc = make_doc("\n\n".join(texts))
    chunks = chunk_documents([doc], chunk_tokens=850, overlap=0)
    assert len(chunks) == 3 and needle in chunks[1].text
    assert len(minilm.token_offsets(chunks[1].text)) > 2 * minilm.window_tokens
    cfg = RetrievalConfig(index_dir=tmp_path / "indexes")
    index = build_or_load_index([doc], chunks, embedder=minilm, config=cfg)
    assert index.stats["windows"] >= 6
    question = "Which fruit does Marguerite like best?"
    hits = index.search(question, k=3, mode="dense")
    assert hits[0].chunk_id == "0:1"
    # What a single (silently truncated) embedding of the chunk would have scored.
    truncated = minilm.embed([c.text for c in chunks]) @ minilm.embed_query(question)
    assert hits[0].score > truncated[1] + 0.2

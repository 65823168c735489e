"""Retrieval benchmark: index build time and query latency at scale, needle recall on text.

Scale (random unit vectors for the dense side, random words of real prose for BM25, one
vector per chunk): build time and p50/p99 query latency of hybrid, dense and BM25 search
at 10k and 100k chunks, excluding embedding the question (the vector is given).

Recall: a ~128,000-token haystack of inaugural addresses (``../shared/data``) with one
needle sentence, at a different depth for each of 10 needles; chunked with the default
settings (2,000 tokens, 200 overlap), indexed with all-MiniLM-L6-v2 windows and BM25;
recall@5 of the chunk holding the needle for hybrid, dense alone and BM25 alone.

    .venv/bin/python benchmarks/retrieval_bench.py            # both parts
    .venv/bin/python benchmarks/retrieval_bench.py --skip-recall --sizes 10000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from longdoc.pipeline.chunking import chunk_documents
from longdoc.pipeline.models import Document
from longdoc.pipeline.tokens import encoding
from longdoc.retrieval import (
    ChunkIndex,
    RetrievalConfig,
    build_or_load_index,
    make_embedder,
)
from longdoc.retrieval.dense import DenseIndex
from longdoc.retrieval.sparse import BM25Index

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# (needle sentence, question): some share words with the question, some paraphrase it.
NEEDLES = [
    ("The secret passkey for the harbour vault is 48213.",
     "What is the secret passkey for the harbour vault?"),
    ("Marguerite told the reporters that her favourite fruit has always been the mangosteen.",
     "Which fruit does Marguerite like best?"),
    ("The lighthouse keeper on Kestrel Island painted the tower green in 1893.",
     "What colour did the Kestrel Island lighthouse keeper paint the tower?"),
    ("Our expedition's cook, Tobias Wren, packed forty jars of pickled walnuts for the voyage.",
     "How many jars of pickled walnuts did the expedition cook pack?"),
    ("The password to the observatory's archive room is 'copper-heron-77'.",
     "What is the password of the observatory archive room?"),
    ("Dr. Ilse Varga discovered that the rare orchid only blooms after a frost.",
     "When does the rare orchid studied by Dr. Varga bloom?"),
    ("The winning racehorse at the Dunmore county fair was a grey mare named Thistledown.",
     "What was the name of the horse that won the Dunmore county fair race?"),
    ("The museum's stolen clock was found hidden inside a piano in Lisbon.",
     "Where was the stolen clock from the museum found?"),
    ("Professor Okafor's telescope lens was ground from a single block of Bavarian glass.",
     "What material was Professor Okafor's telescope lens made from?"),
    ("The village baker, Henrietta Moss, uses exactly seventeen raisins in every scone.",
     "How many raisins does the village baker put in each scone?"),
]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def prose_words() -> list[str]:
    files = sorted((SHARED / "inaugural").glob("*.txt")) + sorted(
        (SHARED / "state_union").glob("*.txt"))
    return " ".join(p.read_text(errors="replace") for p in files).split()


# --- scale ---

def scale(n: int, queries: int, seed: int, config: RetrievalConfig) -> dict:
    rng = np.random.default_rng(seed)
    words = prose_words()
    vocab = sorted(set(w.strip(".,;:!?\"'()").lower() for w in words) - {""})
    # Zipf-like word frequencies, so BM25 postings look like real text.
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    t = time.perf_counter()
    picks = rng.choice(len(vocab), size=(n, 120), p=weights)
    texts = [" ".join(vocab[i] for i in row) for row in picks]
    gen_s = time.perf_counter() - t
    vectors = rng.standard_normal((n, 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    t = time.perf_counter()
    dense = DenseIndex.build(vectors, np.arange(n), n, config)
    dense_s = time.perf_counter() - t
    t = time.perf_counter()
    bm25 = BM25Index.build(texts)
    bm25_s = time.perf_counter() - t
    index = ChunkIndex(key=f"random-{n}", chunk_ids=[f"0:{i}" for i in range(n)],
                       config=config, embedder=None, dense=dense, bm25=bm25)
    qvecs = rng.standard_normal((queries, 384), dtype=np.float32)
    qvecs /= np.linalg.norm(qvecs, axis=1, keepdims=True)
    qtexts = [" ".join(vocab[i] for i in rng.choice(len(vocab), size=8, p=weights))
              for _ in range(queries)]
    out: dict = {"chunks": n, "dense_kind": dense.kind, "text_gen_s": round(gen_s, 2),
                 "dense_build_s": round(dense_s, 2), "bm25_build_s": round(bm25_s, 2)}
    for mode in ("hybrid", "dense", "bm25"):
        index.dense, index.embedder = dense, _Given()
        for i in range(5):  # warm-up
            index.search(qtexts[i], 5, mode, query_vector=qvecs[i])
        ms = []
        for qt, qv in zip(qtexts, qvecs, strict=True):
            t = time.perf_counter()
            index.search(qt, 5, mode, query_vector=qv)
            ms.append((time.perf_counter() - t) * 1000)
        out[mode] = {"p50_ms": round(percentile(ms, 50), 3),
                     "p99_ms": round(percentile(ms, 99), 3)}
    if dense.kind == "hnsw":
        exact = DenseIndex.build(vectors, np.arange(n), n,
                                 config.model_copy(update={"ann_threshold": n + 1}))
        agree = [
            len({c for c, _ in dense.search(q, 5)} & {c for c, _ in exact.search(q, 5)}) / 5
            for q in qvecs
        ]
        ms = []
        for q in qvecs:
            t = time.perf_counter()
            exact.search(q, 5)
            ms.append((time.perf_counter() - t) * 1000)
        out["hnsw_recall_at_5_vs_exact"] = round(statistics.mean(agree), 3)
        out["exact_dense_p50_ms"] = round(percentile(ms, 50), 3)
    return out


class _Given:
    """Stands for an embedder when the question vector is always given."""

    name = "given"
    window_tokens = 0


# --- needle recall ---

def haystack(words: list[str], tokens: int) -> str:
    enc = encoding()
    ids = enc.encode(" ".join(words[: int(tokens * 1.1)]), disallowed_special=())
    return enc.decode(ids[:tokens])


def insert(text: str, needle: str, depth: float) -> str:
    cut = text.rfind(". ", 0, int(len(text) * depth)) + 2
    return text[:cut] + needle + " " + text[cut:]


def recall(tokens: int, k: int, config: RetrievalConfig, index_dir: Path) -> dict:
    base = haystack(prose_words(), tokens)
    embedder = make_embedder(config)
    assert embedder is not None
    rows = []
    for i, (needle, question) in enumerate(NEEDLES):
        depth = (i + 0.5) / len(NEEDLES)
        text = insert(base, needle, depth)
        doc = Document(source="haystack.txt", text=text,
                       sha256=hashlib.sha256(text.encode()).hexdigest())
        chunks = chunk_documents([doc], chunk_tokens=2000, overlap=200)
        target = {c.id for c in chunks if needle in c.text}
        before = embedder.texts_embedded
        t = time.perf_counter()
        index = build_or_load_index([doc], chunks, embedder=embedder, config=config,
                                    cache_dir=index_dir)
        build_s = time.perf_counter() - t
        row = {"needle": i, "depth": round(depth, 2), "chunks": len(chunks),
               "windows": index.stats.get("windows"), "needle_chunks": sorted(target),
               "embedded": embedder.texts_embedded - before, "build_s": round(build_s, 1)}
        for mode in ("hybrid", "dense", "bm25"):
            hits = index.search(question, k, mode)
            ranks = [h.rank for h in hits if h.chunk_id in target]
            row[mode] = ranks[0] if ranks else None
            row[f"{mode}_ms"] = index.last_timings
        # A second question over the same corpus: the persisted index is reused.
        before = embedder.texts_embedded
        again = build_or_load_index([doc], chunks, embedder=embedder, config=config,
                                    cache_dir=index_dir)
        row["second_load_reused"] = again.reused and embedder.texts_embedded == before
        rows.append(row)
        print(f"  needle {i} depth {depth:.2f}: hybrid rank {row['hybrid']}, dense "
              f"{row['dense']}, bm25 {row['bm25']} ({row['embedded']} windows embedded, "
              f"{build_s:.1f}s)", file=sys.stderr)
    summary = {
        mode: sum(1 for r in rows if r[mode] is not None) for mode in ("hybrid", "dense", "bm25")
    }
    return {"tokens": tokens, "k": k, "cases": len(rows), "found_in_top_k": summary,
            "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=128_000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument("--json", type=Path, help="Also write the results here")
    args = parser.parse_args()
    config = RetrievalConfig()
    results: dict = {"scale": [], "recall": None}
    for n in args.sizes:
        print(f"scale: {n} chunks ...", file=sys.stderr)
        results["scale"].append(scale(n, args.queries, seed=n, config=config))
    if not args.skip_recall and SHARED.is_dir():
        print(f"recall: {args.tokens}-token haystacks, {len(NEEDLES)} needles ...",
              file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            results["recall"] = recall(args.tokens, args.k, config, Path(tmp))

    print("\n| chunks | dense index | dense build s | bm25 build s | hybrid p50/p99 ms "
          "| dense p50/p99 ms | bm25 p50/p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in results["scale"]:
        cells = " | ".join(f"{r[m]['p50_ms']:.2f} / {r[m]['p99_ms']:.2f}"
                           for m in ("hybrid", "dense", "bm25"))
        print(f"| {r['chunks']} | {r['dense_kind']} | {r['dense_build_s']} | "
              f"{r['bm25_build_s']} | {cells} |")
        if "hnsw_recall_at_5_vs_exact" in r:
            print(f"  (HNSW top-5 agreement with exact search: {r['hnsw_recall_at_5_vs_exact']},"
                  f" exact dense p50 {r['exact_dense_p50_ms']} ms)")
    rec = results["recall"]
    if rec:
        print(f"\nrecall@{rec['k']} of the needle chunk, {rec['tokens']}-token haystack, "
              f"{rec['cases']} needles: " + ", ".join(
                  f"{m} {n}/{rec['cases']}" for m, n in rec["found_in_top_k"].items()))
        print("| needle | depth | hybrid rank | dense rank | bm25 rank | embedded | build s |")
        print("|---|---|---|---|---|---|---|")
        for r in rec["rows"]:
            print(f"| {r['needle']} | {r['depth']} | {r['hybrid']} | {r['dense']} | "
                  f"{r['bm25']} | {r['embedded']} | {r['build_s']} |")
        print("second question reused the persisted index without embedding: "
              f"{all(r['second_load_reused'] for r in rec['rows'])}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

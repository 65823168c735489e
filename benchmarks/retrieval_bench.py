"""Retrieval benchmark: index build time and query latency at scale, needle recall on text.

Scale (random unit vectors for the dense side, random words of real prose for BM25, one
vector per chunk): build time and p50/p99 query latency of hybrid, dense and BM25 search
at 10k and 100k chunks, excluding embedding the question (the vector is given).

Recall (issue 22): haystacks of real prose (``../shared/data``, repeated when it runs out)
of 128k to 2M tokens, chunked with the default settings (2,000 tokens, 100 overlap), with
10 rare-word needles (a five-digit code for a named place) and 10 paraphrased ones (the
question shares only common words with the sentence) planted mid-chunk at spread depths;
all-MiniLM-L6-v2 windows and BM25; recall@1/3/5/10 of the needle's chunk for dense, BM25,
old RRF, and the fusions ``leaders`` (RRF keeping each list's first place at the front, the
default) and ``zscore``. ``--qa``: the same on the real questions of L-Eval's Natural
Questions file (500-token chunks; a chunk holds the answer if it contains the gold answer).

    .venv/bin/python benchmarks/retrieval_bench.py --skip-recall --sizes 10000
    .venv/bin/python benchmarks/retrieval_bench.py --skip-scale --tokens 128000 512000 \\
        1000000 2000000 --qa --index-dir ~/.cache/longdoc/bench-indexes
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
from typing import NamedTuple

import numpy as np

from longdoc.pipeline.chunking import chunk_documents
from longdoc.pipeline.models import Chunk, Document
from longdoc.pipeline.tokens import count_tokens
from longdoc.retrieval import (
    ChunkIndex,
    RetrievalConfig,
    build_or_load_index,
    make_embedder,
)
from longdoc.retrieval.dense import DenseIndex
from longdoc.retrieval.sparse import BM25Index

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


class Needle(NamedTuple):
    """A planted sentence, a question about it, and the string a right answer holds."""

    sentence: str
    question: str
    answer: str


# Rare words: a five-digit code for a named place; the question repeats the place's name.
RARE_NEEDLES = [
    Needle("The access code for the Quillhaven pumping station is 58213.",
           "What is the access code for the Quillhaven pumping station?", "58213"),
    Needle("The combination of the strongroom at Marrowgate Abbey is 40772.",
           "What is the combination of the strongroom at Marrowgate Abbey?", "40772"),
    Needle("The gate code of the Thornwick reservoir is 91346.",
           "What is the gate code of the Thornwick reservoir?", "91346"),
    Needle("The password of the Elderbrook signal box is 27590.",
           "What is the password of the Elderbrook signal box?", "27590"),
    Needle("The lock code at Fennimore Quarry is 66418.",
           "What is the lock code at Fennimore Quarry?", "66418"),
    Needle("The door code of the Brackenridge observatory is 30957.",
           "What is the door code of the Brackenridge observatory?", "30957"),
    Needle("The safe at the Wyndcliffe lighthouse opens with the code 84126.",
           "Which code opens the safe at the Wyndcliffe lighthouse?", "84126"),
    Needle("The keypad code at the Harrowmere depot is 12683.",
           "What is the keypad code at the Harrowmere depot?", "12683"),
    Needle("The cabinet code of the Ostervale archive is 75301.",
           "What is the cabinet code of the Ostervale archive?", "75301"),
    Needle("The alarm code at Caldbeck mill is 49865.",
           "What is the alarm code at Caldbeck mill?", "49865"),
]

# Paraphrase: the question shares only common words with the sentence that answers it.
PARAPHRASE_NEEDLES = [
    Needle("The ferry that crossed the bay was retired in 1931 after a storm split its hull.",
           "In what year was the boat taken out of service following damage from bad "
           "weather?", "1931"),
    Needle("Our cook insisted that every loaf be left to rise for exactly nine hours.",
           "How long did the baker let the bread dough sit before baking?", "nine"),
    Needle("The choir's conductor was a retired sea captain named Abel Tarrant.",
           "Which former sailor directed the group of singers?", "Tarrant"),
    Needle("The town's first library was paid for by selling the mayor's racehorses.",
           "How did the community raise money to build its first place for lending books?",
           "racehorses"),
    Needle("Grandmother kept the family silver buried beneath the pear tree during the war.",
           "Where did the old woman hide the valuable cutlery while fighting went on?",
           "pear tree"),
    Needle("The bridge engineer resigned because the steel arrived three months late.",
           "Why did the person who designed the river crossing quit his job?", "steel"),
    Needle("The lighthouse beam could be seen from forty miles away on a clear night.",
           "How far out at sea could sailors spot the signal from the coastal tower when "
           "the sky was cloudless?", "forty miles"),
    Needle("Every spring the orchard workers are paid in cider rather than coins.",
           "What do the people who pick apples receive as wages?", "cider"),
    Needle("The astronomer named the comet after her younger brother, Felix.",
           "Who was the icy object that the stargazer discovered called after?", "Felix"),
    Needle("The museum closes each Tuesday so that its wooden floors can be waxed.",
           "Why is the gallery shut one day a week?", "waxed"),
]

NEEDLE_SETS = {"rare": RARE_NEEDLES, "paraphrase": PARAPHRASE_NEEDLES}
METHODS = ("dense", "bm25", "rrf", "leaders", "zscore")
RECALL_AT = (1, 3, 5, 10)


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


# --- haystacks ---

def haystack_texts() -> list[str]:
    """Real prose of ``../shared/data``: the speeches, then the GAO/CRS reports."""
    files = sorted((SHARED / "inaugural").glob("*.txt")) + sorted(
        (SHARED / "state_union").glob("*.txt"))
    texts = [p.read_text(errors="replace").strip() for p in files]
    reports = SHARED / "govreport" / "gov_report_summ.jsonl"
    if reports.is_file():
        texts += [json.loads(line)["input"].strip()
                  for line in reports.read_text().splitlines() if line.strip()]
    return texts


def haystack(tokens: int) -> str:
    """About ``tokens`` cl100k tokens of ``haystack_texts`` (repeated from the start when
    they run out), cut at a sentence end. The haystack of a smaller size is a prefix of a
    larger one's."""
    unit = "\n\n".join(haystack_texts())
    chars_per_token = len(unit) / count_tokens(unit)
    want = int(tokens * chars_per_token)
    text = "\n\n".join([unit] * (want // len(unit) + 1))
    return text[: text.rfind(". ", 0, want) + 1]


def plant(text: str, sentence: str, depth: float) -> str:
    """``text`` with ``sentence`` inserted at the sentence end nearest below ``depth``."""
    cut = text.rfind(". ", 0, int(len(text) * depth)) + 2
    return text[:cut] + sentence + " " + text[cut:]


def text_document(text: str, source: str, salt: str = "") -> Document:
    digest = hashlib.sha256((text + salt).encode("utf-8", "surrogatepass")).hexdigest()
    return Document(source=source, text=text, sha256=digest)


# --- recall per fusion method ---

def ranks(index: ChunkIndex, question: str, targets: set[str], depth: int) -> dict:
    """Rank (1-based, up to ``depth``) of the first target chunk in each method's list."""
    vector = index.embedder.embed_query(question) if index.embedder is not None else None
    out: dict[str, int | None] = {}
    for method in METHODS:
        if method in ("dense", "bm25"):
            hits = index.search(question, depth, method, 0, query_vector=vector)
        else:
            hits = index.search(question, depth, "hybrid", 0, query_vector=vector,
                                fusion=method)
        out[method] = next((h.rank for h in hits if h.chunk_id in targets), None)
    return out


def summarise(rows: list[dict]) -> dict:
    """recall@k per method: the share of rows whose target ranks within k."""
    return {method: {k: round(sum(1 for r in rows if (r[method] or 10**9) <= k) / len(rows), 3)
                     for k in RECALL_AT} for method in METHODS} if rows else {}


def needle_chunks(chunks: list[Chunk], planted: list[tuple[str, Needle, float]]
                  ) -> tuple[list[Chunk], dict[str, str]]:
    """``chunks`` with each needle sentence inserted mid-chunk into the chunk at its depth
    (one needle per chunk), and the chunk id that holds each needle's question."""
    if len(planted) > len(chunks):
        raise ValueError(f"{len(chunks)} chunks cannot hold {len(planted)} needles")
    out = list(chunks)
    targets: dict[str, str] = {}
    taken: set[int] = set()
    for _, needle, depth in planted:
        pos = min(int(depth * len(out)), len(out) - 1)
        while pos in taken:
            pos = (pos + 1) % len(out)
        taken.add(pos)
        text = out[pos].text
        cut = text.find(". ", len(text) // 2) + 2 or len(text) // 2
        out[pos] = out[pos].model_copy(
            update={"text": text[:cut] + needle.sentence + " " + text[cut:]})
        targets[needle.question] = out[pos].id
    return out, targets


def needle_recall(sizes: list[int], config: RetrievalConfig, index_dir: Path,
                  depth: int, largest: int | None = None) -> list[dict]:
    """Recall of every method on the rare and paraphrased needles at each size. The
    haystack of ``largest`` tokens (default: the largest size) is chunked once; a size
    takes the chunks of its prefix, so windows embedded for one size are reused (in
    memory) by the others, and a rerun with the same ``largest`` reuses the indexes."""
    embedder = make_embedder(config)
    assert embedder is not None
    largest = largest or max(sizes)
    text = haystack(largest)
    doc = text_document(text, "haystack.txt")
    t = time.perf_counter()
    all_chunks = chunk_documents([doc], chunk_tokens=2000, overlap=100)
    print(f"haystack: {len(all_chunks)} chunks in {time.perf_counter() - t:.1f}s",
          file=sys.stderr)
    planted = [(kind, n, (i + (0.3 if kind == "rare" else 0.7)) / len(needles))
               for kind, needles in NEEDLE_SETS.items() for i, n in enumerate(needles)]
    out = []
    for size in sorted(sizes):
        end = int(len(text) * size / largest)
        chunks, targets = needle_chunks([c for c in all_chunks if c.end <= end], planted)
        key_doc = text_document(text[:end], f"haystack-{size}.txt",
                                salt=json.dumps([p[1].sentence for p in planted]))
        before = embedder.texts_embedded
        t = time.perf_counter()
        index = build_or_load_index([key_doc], chunks, embedder=embedder, config=config,
                                    cache_dir=index_dir)
        build_s = time.perf_counter() - t
        rows = []
        for kind, needle, needle_depth in planted:
            row = {"set": kind, "depth": round(needle_depth, 3), "question": needle.question,
                   **ranks(index, needle.question, {targets[needle.question]}, depth)}
            rows.append(row)
        result = {"tokens": size, "chunks": len(chunks), "windows": index.stats.get("windows"),
                  "embedded": embedder.texts_embedded - before, "reused": index.reused,
                  "build_s": round(build_s, 1), "stats": index.stats, "rows": rows,
                  "recall": {kind: summarise([r for r in rows if r["set"] == kind])
                             for kind in NEEDLE_SETS}}
        at5 = {kind: {m: v[m][5] for m in METHODS} for kind, v in result["recall"].items()}
        print(f"  {size} tokens: {len(chunks)} chunks, build {build_s:.1f}s, "
              f"recall@5 {json.dumps(at5)}", file=sys.stderr)
        out.append(result)
    return out


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def qa_recall(config: RetrievalConfig, index_dir: Path, depth: int,
              chunk_tokens: int = 500, max_answer_words: int = 8) -> dict:
    """Recall on the real questions of L-Eval's Natural Questions file (the development
    set): each document chunked at ``chunk_tokens``; a chunk holds the answer if it
    contains the gold answer (case and spacing aside). Kept: short answers found in
    between one chunk and a quarter of the document's chunks."""
    embedder = make_embedder(config)
    path = SHARED / "qa" / "leval_natural_question.jsonl"
    rows: list[dict] = []
    skipped = 0
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        record = json.loads(line)
        doc = text_document(record["input"], f"nq-{line_no}.txt")
        chunks = chunk_documents([doc], chunk_tokens=chunk_tokens, overlap=50)
        index = build_or_load_index([doc], chunks, embedder=embedder, config=config,
                                    cache_dir=index_dir)
        for question, answer in zip(record["instructions"], record["outputs"], strict=True):
            gold = _norm(answer)
            targets = {c.id for c in chunks if gold and gold in _norm(c.text)}
            if (len(gold.split()) > max_answer_words or not targets
                    or len(targets) > max(1, len(chunks) // 4)):
                skipped += 1
                continue
            rows.append({"doc": line_no, "chunks": len(chunks), "question": question,
                         "targets": len(targets), **ranks(index, question, targets, depth)})
        print(f"  nq doc {line_no}: {len(chunks)} chunks, {len(rows)} questions kept so far",
              file=sys.stderr)
    return {"file": path.name, "chunk_tokens": chunk_tokens, "questions": len(rows),
            "skipped": skipped, "recall": summarise(rows), "rows": rows}


def recall_table(title: str, recall: dict, n: int) -> list[str]:
    """Markdown rows: one per method, recall@k columns."""
    lines = [f"| {title} (n={n}) | " + " | ".join(f"@{k}" for k in RECALL_AT) + " |",
             "|---|" + "---|" * len(RECALL_AT)]
    for method in METHODS:
        label = {"rrf": "rrf (old)", "leaders": "leaders (new)"}.get(method, method)
        lines.append(f"| {label} | " + " | ".join(
            f"{recall[method][k]:.2f}" for k in RECALL_AT) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--tokens", type=int, nargs="*", default=[128_000],
                        help="Haystack sizes of the needle recall")
    parser.add_argument("--largest", type=int, help="Chunk the haystack of this many tokens "
                        "(default: the largest of --tokens); keep it to reuse earlier indexes")
    parser.add_argument("--depth", type=int, default=50, help="Ranks looked at per list")
    parser.add_argument("--window-tokens", type=int,
                        help="Word pieces per embedded window (default: the embedder's 254)")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument("--qa", action="store_true", help="Also the real-QA recall")
    parser.add_argument("--index-dir", type=Path,
                        help="Keep the indexes here (reused by reruns); default: a temp dir")
    parser.add_argument("--json", type=Path, help="Also write the results here")
    args = parser.parse_args()
    config = RetrievalConfig(window_tokens=args.window_tokens)
    results: dict = {"scale": [], "recall": [], "qa": None}
    for n in [] if args.skip_scale else args.sizes:
        print(f"scale: {n} chunks ...", file=sys.stderr)
        results["scale"].append(scale(n, args.queries, seed=n, config=config))
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = args.index_dir or Path(tmp)
        if not args.skip_recall and SHARED.is_dir():
            print(f"needle recall at {args.tokens} tokens ...", file=sys.stderr)
            results["recall"] = needle_recall(args.tokens, config, index_dir, args.depth,
                                              args.largest)
        if args.qa and SHARED.is_dir():
            print("real-QA recall ...", file=sys.stderr)
            results["qa"] = qa_recall(config, index_dir, args.depth)

    if results["scale"]:
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
    for r in results["recall"]:
        for kind in NEEDLE_SETS:
            n = sum(1 for row in r["rows"] if row["set"] == kind)
            print("\n" + "\n".join(recall_table(
                f"{kind}, {r['tokens']:,} tokens, {r['chunks']} chunks", r["recall"][kind], n)))
    if results["qa"]:
        qa = results["qa"]
        print("\n" + "\n".join(recall_table(
            f"real QA ({qa['file']}, {qa['chunk_tokens']}-token chunks)", qa["recall"],
            qa["questions"])))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""One index over the chunks of a document set: dense windows + BM25, fused by RRF,
persisted on disk under a key of what it was built from and reused across runs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from longdoc.pipeline.models import Chunk, Document
from longdoc.retrieval.config import RetrievalConfig, SearchMode
from longdoc.retrieval.dense import DenseIndex
from longdoc.retrieval.embedders import Embedder
from longdoc.retrieval.fusion import FusionMethod, fuse
from longdoc.retrieval.sparse import TOKENIZER_VERSION, BM25Index
from longdoc.retrieval.windows import window_spans

INDEX_FORMAT = 1


class Hit(BaseModel):
    """One retrieved chunk; neighbours added by expansion carry ``neighbour_of``."""

    chunk_id: str
    score: float = Field(description="Fused score (hybrid), cosine (dense) or BM25 score")
    rank: int = Field(description="1-based position in the result list")
    dense_rank: int | None = Field(None, description="Rank in the dense list, if in it")
    bm25_rank: int | None = Field(None, description="Rank in the BM25 list, if in it")
    neighbour_of: str | None = Field(None, description="The hit this chunk is next to")


def _position(chunk_id: str) -> tuple[int, int]:
    doc, _, index = chunk_id.partition(":")
    return int(doc), int(index)


def document_order(chunk_ids: list[str]) -> list[str]:
    """``chunk_ids`` without repeats, sorted by document, then position in it."""
    return sorted(set(chunk_ids), key=_position)


def index_key(documents: list[Document], chunks: list[Chunk], embedder: Embedder | None,
              config: RetrievalConfig) -> str:
    """Hash of what an index holds: the documents' contents, the chunk spans (which the
    chunking settings determine), the embedder and its window size, and index options."""
    digest = hashlib.sha256()
    spans = hashlib.sha256(
        "\n".join(f"{c.id} {c.start} {c.end}" for c in chunks).encode()
    ).hexdigest()
    digest.update(json.dumps({
        "format": INDEX_FORMAT,
        "documents": [d.sha256 for d in documents],
        "chunks": spans,
        "embedder": None if embedder is None else [embedder.name, embedder.window_tokens],
        "bm25": TOKENIZER_VERSION,
        "options": config.index_fields(),
    }, sort_keys=True).encode())
    return digest.hexdigest()[:40]


class ChunkIndex:
    """Search the chunks of a document set by a question: dense, BM25, or both fused."""

    def __init__(self, *, key: str, chunk_ids: list[str], config: RetrievalConfig,
                 embedder: Embedder | None, dense: DenseIndex | None, bm25: BM25Index,
                 stats: dict[str, Any] | None = None):
        self.key = key
        self.chunk_ids = chunk_ids
        self.config = config
        self.embedder = embedder
        self.dense = dense
        self.bm25 = bm25
        self.stats: dict[str, Any] = stats or {}
        self.path: Path | None = None
        self.reused = False
        self.last_timings: dict[str, float] = {}
        self._position = {cid: i for i, cid in enumerate(chunk_ids)}

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def resolve_mode(self, mode: SearchMode | None = None) -> SearchMode:
        """The mode a search really runs: hybrid degrades to BM25 without a dense index."""
        mode = mode or self.config.mode
        if mode == "dense" and self.dense is None:
            raise ValueError("dense search needs an embedder (the index was built without one)")
        return "bm25" if mode == "hybrid" and self.dense is None else mode

    def search(self, query: str, k: int | None = None, mode: SearchMode | None = None,
               neighbours: int | None = None, *,
               query_vector: np.ndarray | None = None,
               fusion: FusionMethod | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query``, best first, then (if ``neighbours``) the
        chunks up to that many places before and after each hit, not already listed.
        ``query_vector`` skips embedding the question (for benchmarks and batch use);
        ``fusion`` overrides the configured fusion method (hybrid only).
        Timings in milliseconds land in ``last_timings``."""
        k = k or self.config.k or self.config.default_k
        neighbours = self.config.neighbours if neighbours is None else neighbours
        mode = self.resolve_mode(mode)
        depth = max(k, self.config.fusion_depth) if mode == "hybrid" else k
        timings: dict[str, float] = {}
        dense: list[tuple[int, float]] = []
        sparse: list[tuple[int, float]] = []
        if mode in ("hybrid", "dense"):
            assert self.dense is not None and self.embedder is not None
            t = time.perf_counter()
            if query_vector is None:
                query_vector = self.embedder.embed_query(query)
            timings["embed_query_ms"] = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            dense = self.dense.search(query_vector, depth)
            timings["dense_ms"] = (time.perf_counter() - t) * 1000
        if mode in ("hybrid", "bm25"):
            t = time.perf_counter()
            sparse = self.bm25.search(query, depth)
            timings["bm25_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        dense_rank = {pos: r for r, (pos, _) in enumerate(dense, start=1)}
        bm25_rank = {pos: r for r, (pos, _) in enumerate(sparse, start=1)}
        if mode == "hybrid":
            fused = fuse([dense, sparse], fusion or self.config.fusion, self.config.rrf_k)
            ranked = [(int(p), s) for p, s in fused[:k]]
        else:
            ranked = (dense or sparse)[:k]
        hits = [
            Hit(chunk_id=self.chunk_ids[pos], score=round(score, 6), rank=r,
                dense_rank=dense_rank.get(pos), bm25_rank=bm25_rank.get(pos))
            for r, (pos, score) in enumerate(ranked, start=1)
        ]
        if neighbours:
            hits = self._with_neighbours(hits, neighbours)
        timings["fuse_ms"] = (time.perf_counter() - t) * 1000
        self.last_timings = {name: round(ms, 3) for name, ms in timings.items()}
        return hits

    def _with_neighbours(self, hits: list[Hit], n: int) -> list[Hit]:
        seen = {h.chunk_id for h in hits}
        out = list(hits)
        for hit in hits:
            doc, index = _position(hit.chunk_id)
            for step in range(1, n + 1):
                for other in (index - step, index + step):
                    cid = f"{doc}:{other}"
                    if cid in self._position and cid not in seen:
                        seen.add(cid)
                        out.append(Hit(chunk_id=cid, score=0.0, rank=len(out) + 1,
                                       neighbour_of=hit.chunk_id))
        return out

    # --- persistence ---

    def save(self, folder: Path) -> None:
        """Write the index into ``folder`` (which must not exist yet) atomically: it is
        built in a sibling temporary folder and renamed into place."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            if self.dense is not None:
                self.dense.save(tmp)
            self.bm25.save(tmp / "bm25")
            meta = {
                "format": INDEX_FORMAT, "key": self.key, "chunk_ids": self.chunk_ids,
                "embedder": None if self.embedder is None else self.embedder.name,
                "window_tokens": None if self.embedder is None else self.embedder.window_tokens,
                "stats": self.stats,
            }
            (tmp / "meta.json").write_text(json.dumps(meta))
            try:
                os.rename(tmp, folder)
            except OSError:
                if not (folder / "meta.json").is_file():  # not a concurrent writer's win
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.path = folder

    @classmethod
    def load(cls, folder: Path, *, embedder: Embedder | None,
             config: RetrievalConfig) -> ChunkIndex:
        """An index saved by ``save``; raises ValueError if it is from another format."""
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != INDEX_FORMAT:
            raise ValueError(f"index {folder} has format {meta.get('format')}")
        chunk_ids = meta["chunk_ids"]
        has_dense = (folder / "dense.faiss").is_file()
        if has_dense and embedder is None:
            raise ValueError(f"index {folder} is dense but no embedder was given")
        dense = DenseIndex.load(folder, len(chunk_ids), config.hnsw_ef_search) \
            if has_dense else None
        index = cls(key=meta["key"], chunk_ids=chunk_ids, config=config, embedder=embedder,
                    dense=dense, bm25=BM25Index.load(folder / "bm25", len(chunk_ids)),
                    stats=meta.get("stats", {}))
        index.path = folder
        index.reused = True
        return index


def build_index(chunks: list[Chunk], *, embedder: Embedder | None,
                config: RetrievalConfig, key: str = "") -> ChunkIndex:
    """Embed every chunk's windows (if there is an embedder) and index chunks for BM25."""
    stats: dict[str, Any] = {"chunks": len(chunks)}
    dense = None
    if embedder is not None and chunks:
        t = time.perf_counter()
        texts: list[str] = []
        owner: list[int] = []
        for pos, chunk in enumerate(chunks):
            offsets = embedder.token_offsets(chunk.text)
            for start, end in window_spans(chunk.text, offsets, embedder.window_tokens):
                texts.append(chunk.text[start:end])
                owner.append(pos)
        stats["windows"] = len(texts)
        stats["window_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        vectors = embedder.embed(texts, batch_size=config.batch_size, progress=config.progress)
        stats["embed_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        dense = DenseIndex.build(vectors, np.asarray(owner), len(chunks), config)
        stats["dense_build_s"] = round(time.perf_counter() - t, 3)
        stats["dense_kind"] = dense.kind
    t = time.perf_counter()
    bm25 = BM25Index.build([c.text for c in chunks])
    stats["bm25_build_s"] = round(time.perf_counter() - t, 3)
    return ChunkIndex(key=key, chunk_ids=[c.id for c in chunks], config=config,
                      embedder=embedder, dense=dense, bm25=bm25, stats=stats)


def build_or_load_index(documents: list[Document], chunks: list[Chunk], *,
                        embedder: Embedder | None, config: RetrievalConfig,
                        cache_dir: Path | None = None) -> ChunkIndex:
    """The index of ``chunks`` from disk if one was built from the same documents, chunk
    spans, embedder and options (in any process); else build it and save it there.
    ``cache_dir`` (default ``config.index_dir``; None for both: in memory only)."""
    folder = cache_dir or config.index_dir
    key = index_key(documents, chunks, embedder, config)
    if folder is None:
        return build_index(chunks, embedder=embedder, config=config, key=key)
    path = Path(folder) / key
    if (path / "meta.json").is_file():
        try:
            return ChunkIndex.load(path, embedder=embedder, config=config)
        except (ValueError, OSError, KeyError, json.JSONDecodeError, RuntimeError):
            shutil.rmtree(path, ignore_errors=True)  # unreadable: build it again
    index = build_index(chunks, embedder=embedder, config=config, key=key)
    index.save(path)
    return index


def select_chunks(index: ChunkIndex, question: str, k: int | None = None,
                  neighbours: int | None = None, mode: SearchMode | None = None) -> list[str]:
    """Ids of the ``k`` best chunks (and their neighbours) in document order: what
    strategies take as ``selected_chunks``."""
    return document_order([h.chunk_id for h in index.search(question, k, mode, neighbours)])

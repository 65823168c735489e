"""Dense search with faiss over window vectors, scored per chunk by its best window.

Exact inner product (``IndexFlatIP``) up to ``ann_threshold`` vectors, HNSW above it.
Vectors are unit length, so inner product is cosine similarity.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from longdoc.retrieval.config import RetrievalConfig


class DenseIndex:
    """Window vectors in faiss, and which chunk (by position) each window belongs to."""

    def __init__(self, index: faiss.Index, window_chunk: np.ndarray, n_chunks: int,
                 ef_search: int = 128):
        self.index = index
        self.window_chunk = np.asarray(window_chunk, dtype=np.int64)
        self.n_chunks = n_chunks
        self.ef_search = ef_search

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(self.index, faiss.IndexHNSW) else "flat"

    @classmethod
    def build(cls, vectors: np.ndarray, window_chunk: np.ndarray, n_chunks: int,
              config: RetrievalConfig) -> DenseIndex:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        index: faiss.Index
        if len(vectors) > config.ann_threshold:
            index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.hnsw_ef_construction
        else:
            index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return cls(index, window_chunk, n_chunks, config.hnsw_ef_search)

    def search(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        """Up to ``n`` (chunk position, best window score) pairs, best first."""
        total = self.index.ntotal
        if total == 0 or n <= 0:
            return []
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        # One question is too little work to share: OpenMP threads only add latency (and
        # spin for tens of milliseconds when the cores are busy). Builds keep all threads.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self._search(query, n, total)
        finally:
            faiss.omp_set_num_threads(threads)

    def _search(self, query: np.ndarray, n: int, total: int) -> list[tuple[int, float]]:
        # Several windows of one chunk may lead the list: widen until n chunks are seen.
        m = min(total, max(n * 4, 16))
        while True:
            if isinstance(self.index, faiss.IndexHNSW):
                self.index.hnsw.efSearch = max(self.ef_search, m)
            scores, ids = self.index.search(query, m)
            best: dict[int, float] = {}
            for window, score in zip(ids[0], scores[0], strict=True):
                if window < 0:
                    continue
                chunk = int(self.window_chunk[window])
                if chunk not in best:  # results come best first: the first is the max
                    best[chunk] = float(score)
            if len(best) >= n or m >= total:
                break
            m = min(total, m * 4)
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[:n]

    def save(self, folder: Path) -> None:
        faiss.write_index(self.index, str(folder / "dense.faiss"))
        np.save(folder / "window_chunk.npy", self.window_chunk)

    @classmethod
    def load(cls, folder: Path, n_chunks: int, ef_search: int = 128) -> DenseIndex:
        index = faiss.read_index(str(folder / "dense.faiss"))
        return cls(index, np.load(folder / "window_chunk.npy"), n_chunks, ef_search)

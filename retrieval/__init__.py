"""Retrieval over chunks: dense (faiss over embedded windows) + BM25 (bm25s), fused by
fusion that keeps each list's first place, persisted per document set and reused across runs.

    index = build_or_load_index(documents, chunks, embedder=make_embedder(config),
                                config=config)
    hits = index.search(question, k=5, mode="hybrid", neighbours=1)
    ids = select_chunks(index, question, k=5)            # document order

Strategies need one call: ``retrieve(documents, chunks, question, settings, k=8)``.
"""

from longdoc.retrieval.config import RetrievalConfig, SearchMode
from longdoc.retrieval.embedders import (
    Embedder,
    EmbedderUnavailable,
    HashingEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    QuestionSimilarity,
    make_embedder,
    question_similarity,
)
from longdoc.retrieval.fusion import FUSION_METHODS, FusionMethod, fuse, reciprocal_rank_fusion
from longdoc.retrieval.index import (
    ChunkIndex,
    Hit,
    build_index,
    build_or_load_index,
    document_order,
    index_key,
    select_chunks,
)
from longdoc.retrieval.retrieve import Retrieval, retrieve

__all__ = [
    "FUSION_METHODS",
    "ChunkIndex",
    "Embedder",
    "EmbedderUnavailable",
    "FusionMethod",
    "HashingEmbedder",
    "Hit",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "QuestionSimilarity",
    "Retrieval",
    "RetrievalConfig",
    "SearchMode",
    "build_index",
    "build_or_load_index",
    "document_order",
    "fuse",
    "index_key",
    "make_embedder",
    "question_similarity",
    "reciprocal_rank_fusion",
    "retrieve",
    "select_chunks",
]

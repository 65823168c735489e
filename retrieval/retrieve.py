"""Retrieval as one call for strategies: settings -> index (built or reused) -> chunk ids."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from longdoc.pipeline.models import Chunk, Document, TraceEvent
from longdoc.pipeline.settings import Settings
from longdoc.retrieval.config import RetrievalConfig
from longdoc.retrieval.embedders import EmbedderUnavailable, make_embedder
from longdoc.retrieval.index import ChunkIndex, Hit, build_or_load_index, document_order


class Retrieval(BaseModel):
    """What one retrieval did: the hits, the chosen chunks in document order, and costs."""

    question: str
    mode: str = Field(description="The mode that ran (hybrid falls back to bm25 without an "
                                  "embedder)")
    embedder: str | None
    hits: list[Hit]
    selected_chunks: list[str] = Field(description="Hit and neighbour ids, document order")
    index_key: str
    index_reused: bool
    index_stats: dict[str, Any] = Field(default_factory=dict)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    def trace_event(self, node: str) -> TraceEvent:
        """A trace entry for the node that retrieved."""
        how = "reused index" if self.index_reused else "built index"
        return TraceEvent(
            node=node,
            message=f"retrieved {len(self.selected_chunks)} chunk(s) by {self.mode} ({how})",
            data={
                "hits": [h.model_dump(exclude_none=True) for h in self.hits],
                "selected_chunks": self.selected_chunks,
                "embedder": self.embedder,
                "index_key": self.index_key,
                "index_reused": self.index_reused,
                "index_stats": self.index_stats,
                "timings_ms": self.timings_ms,
                "notes": self.notes,
            },
        )


def index_for(documents: list[Document], chunks: list[Chunk], config: RetrievalConfig,
              settings: Settings | None = None) -> tuple[ChunkIndex, list[str]]:
    """The index of ``chunks`` (built or reused) and notes on any fallback. Without a
    usable embedder, a hybrid index is BM25 only."""
    notes: list[str] = []
    try:
        embedder = None if config.mode == "bm25" else make_embedder(config, settings)
    except EmbedderUnavailable as exc:
        if config.mode == "dense":
            raise
        notes.append(f"dense search off, BM25 only: {exc}")
        embedder = None
    return build_or_load_index(documents, chunks, embedder=embedder, config=config), notes


def retrieve(documents: list[Document], chunks: list[Chunk], question: str,
             settings: Settings | None = None, config: RetrievalConfig | None = None,
             **overrides: Any) -> Retrieval:
    """Select chunks for ``question``: ``config`` (default: from ``settings``, with
    ``overrides`` such as ``k=8`` or ``neighbours=1``). Blocking; call it from async code
    with ``asyncio.to_thread``."""
    if config is None:
        config = (RetrievalConfig.from_settings(settings, **overrides) if settings is not None
                  else RetrievalConfig(**{k: v for k, v in overrides.items() if v is not None}))
    t = time.perf_counter()
    index, notes = index_for(documents, chunks, config, settings)
    load_ms = (time.perf_counter() - t) * 1000
    hits = index.search(question)
    timings = {"index_ms": round(load_ms, 3), **index.last_timings}
    return Retrieval(
        question=question, mode=index.resolve_mode(), hits=hits,
        embedder=None if index.embedder is None else index.embedder.name,
        selected_chunks=document_order([h.chunk_id for h in hits]),
        index_key=index.key, index_reused=index.reused, index_stats=index.stats,
        timings_ms=timings, notes=notes,
    )

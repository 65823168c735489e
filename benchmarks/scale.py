"""Scale benchmark (issue 22): one question about a 128k- to 10M-token document, timed per
stage, with its calls, prompt tokens, peak memory and whether it was answered right with a
supporting citation.

The document is real prose from ``../shared/data`` (speeches, then GAO/CRS reports, repeated
when they run out; ``retrieval_bench.haystack``) with one needle sentence planted at a
depth: a rare-word needle (a five-digit code for a named place) or a paraphrased one (the
question shares only common words with it). Each case runs in a child process of its own,
so its peak RSS is its own; the model server (embedded llama.cpp or the simulated one) is
another process and not counted.

Stages (wall seconds, from the graph's streamed updates; they add up to the run's wall
time): ``ingest`` (reading the file, in ``Pipeline``), ``chunk``, ``index`` (auto's route or
``--retrieve``'s select: retrieval with the index built or loaded), ``read`` (map calls),
``reduce`` (reduce and conflict resolution), ``verify`` (citations) and ``other``.
A right answer holds the needle's value and has a citation that overlaps the needle.

    # the simulated server (no model), mapreduce and auto to 10M tokens, hash embedder:
    .venv/bin/python -m benchmarks.scale sim --tokens 128000 1000000 10000000
    # the embedded model (starts llama.cpp: one job at a time on the machine):
    .venv/bin/python -m benchmarks.scale model --tokens 1000000 --depths 0.1 0.5 0.9
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from benchmarks.retrieval_bench import NEEDLE_SETS, Needle, haystack, plant
from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.graph import compiled_graph
from longdoc.pipeline.llm import LLMClient
from longdoc.pipeline.models import Citation, Usage
from longdoc.pipeline.settings import load_settings
from longdoc.pipeline.state import RunContext

STAGE_OF = {"ingest": "ingest", "chunk": "chunk", "route": "index", "select": "index",
            "map": "read", "look": "read", "second_look": "read", "reduce": "reduce",
            "verify": "verify"}
STAGES = ("ingest", "chunk", "index", "read", "reduce", "verify", "other")


class Case(BaseModel):
    """One question about one generated document."""

    tokens: int
    strategy: str = "auto"
    kind: str = Field("rare", description="rare or paraphrase")
    needle: int = Field(0, description="Index into the needle set")
    depth: float = 0.5
    work: Path
    settings: dict[str, Any] = Field(default_factory=dict)
    repeat: int = Field(1, description="Ask this many times (the second reuses the index)")
    traces: Path | None = Field(None, description="Append each run's trace here (JSONL)")


class Result(BaseModel):
    """What one run of a case measured."""

    case: Case
    run: int
    doc_tokens: int
    chunks: int
    wall_s: float
    stages: dict[str, float]
    llm_calls: int
    prompt_tokens: int
    peak_rss_mb: float
    answer: str
    right: bool
    supported: bool = Field(description="A citation overlaps the needle sentence")
    route: str | None = None
    coverage: dict[str, Any] | None = None
    index: dict[str, Any] = Field(default_factory=dict)
    index_disk_mb: float | None = None


def needle_of(case: Case) -> Needle:
    return NEEDLE_SETS[case.kind][case.needle]


def document_path(case: Case) -> Path:
    """The case's document, written once into ``work`` (reused by later cases)."""
    needle = needle_of(case)
    path = case.work / f"haystack-{case.tokens}-{case.kind}{case.needle}-{case.depth}.txt"
    if not path.is_file():
        path.write_text(plant(haystack(case.tokens), needle.sentence, case.depth),
                        encoding="utf-8")
    return path


def stage_times(events: list[tuple[float, str]], started: float) -> dict[str, float]:
    """Wall time between consecutive graph updates, charged to the later update's stage."""
    out: dict[str, float] = defaultdict(float)
    last = started
    for at, node in sorted(events):
        out[STAGE_OF.get(node, "other")] += at - last
        last = at
    return out


async def run_once(pipeline: Pipeline, case: Case, path: Path) -> dict[str, Any]:
    """Ask the case's question through the graph, streaming its updates for the stages."""
    started = time.perf_counter()
    documents = pipeline.load_documents([path])
    ingest_s = time.perf_counter() - started
    endpoint = pipeline.backend.start()
    llm = LLMClient(endpoint, pipeline.settings, pipeline.cache)
    context = RunContext(settings=pipeline.settings, llm=llm)
    request = {"paths": [str(path)], "question": needle_of(case).question, "task": "qa",
               "strategy": case.strategy, "documents": documents, "trace": []}
    events: list[tuple[float, str]] = []
    state: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        async for namespace, mode, chunk in compiled_graph(case.strategy).astream(
                request, context=context, stream_mode=["updates", "values"], subgraphs=True):
            now = time.perf_counter()
            if mode == "values":
                if not namespace:
                    state = chunk
                continue
            events += [(now, node) for node in chunk]
    finally:
        await llm.close()
    wall = time.perf_counter() - started
    stages = stage_times(events, t0)
    stages["ingest"] += ingest_s
    return {"state": state, "wall_s": wall, "stages": stages,
            "usage": Usage.from_calls(llm.calls)}


def supported(citations: list[Citation], text: str, needle: Needle) -> bool:
    start = text.find(needle.sentence)
    end = start + len(needle.sentence)
    return start >= 0 and any(c.start < end and c.end > start for c in citations)


def run_case(case: Case) -> list[Result]:
    """Every repeat of ``case`` in this process."""
    path = document_path(case)
    text = path.read_text(encoding="utf-8")
    needle = needle_of(case)
    settings = load_settings(**case.settings)
    results = []
    with Pipeline(settings) as pipeline:
        for run in range(1, case.repeat + 1):
            out = asyncio.run(run_once(pipeline, case, path))
            state = out["state"]
            route_event = next((e for e in state["trace"] if e.node in ("auto.route", "select")),
                               None)
            retrieval = (route_event.data.get("retrieval", route_event.data)
                         if route_event else {})
            answer = state["draft"].answer
            if case.traces:
                with case.traces.open("a", encoding="utf-8") as log:
                    log.write(json.dumps({
                        "case": case.model_dump(mode="json"), "run": run, "answer": answer,
                        "draft": state["draft"].model_dump(mode="json"),
                        "trace": [e.model_dump(mode="json") for e in state["trace"]],
                    }, default=str) + "\n")
            coverage = state.get("coverage")
            index_dir = settings.retrieval.index_dir or settings.cache_dir / "indexes"
            key = retrieval.get("index_key")
            results.append(Result(
                case=case, run=run, doc_tokens=sum(c.tokens for c in state["chunks"]),
                chunks=len(state["chunks"]), wall_s=round(out["wall_s"], 2),
                stages={s: round(out["stages"].get(s, 0.0), 2) for s in STAGES},
                llm_calls=out["usage"].llm_calls, prompt_tokens=out["usage"].prompt_tokens,
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                answer=answer[:200], right=needle.answer.lower() in answer.lower(),
                supported=supported(state.get("citations", []), text, needle),
                route=(state.get("route") or {}).get("reason"),
                coverage=coverage.model_dump() if coverage else None,
                index={k: retrieval.get(k) for k in ("index_reused", "index_stats", "timings_ms")
                       if k in retrieval},
                index_disk_mb=_disk_mb(index_dir / key) if key else None,
            ))
    return results


def _disk_mb(folder: Path) -> float | None:
    if not folder.is_dir():
        return None
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 2)


def in_child(case: Case) -> list[Result]:
    """``run_case`` in a child process (its own peak RSS)."""
    run = subprocess.run([sys.executable, "-m", "benchmarks.scale", "case",
                          case.model_dump_json()], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"case {case.tokens}/{case.strategy} failed: {run.stderr[-2000:]}")
    return [Result.model_validate(r) for r in json.loads(run.stdout.splitlines()[-1])]


def table(results: list[Result]) -> str:
    """Markdown: one row per run."""
    head = ("| tokens | strategy | needle | run | chunks | read | wall s | "
            + " | ".join(s for s in STAGES) + " | calls | prompt tokens | peak RSS MB | "
            "index disk MB | right | cited |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        read = (f"{r.coverage['chunks_read']} ({r.coverage['stopped']})" if r.coverage
                else "all")
        lines.append(
            f"| {r.doc_tokens:,} | {r.case.strategy} | {r.case.kind}{r.case.needle}@"
            f"{r.case.depth} | {r.run} | {r.chunks} | {read} | {r.wall_s} | "
            + " | ".join(f"{r.stages[s]:.1f}" for s in STAGES)
            + f" | {r.llm_calls} | {r.prompt_tokens:,} | {r.peak_rss_mb:,.0f} | "
            f"{r.index_disk_mb if r.index_disk_mb is not None else '-'} | "
            f"{'yes' if r.right else 'no'} | {'yes' if r.supported else 'no'} |")
    return "\n".join(lines)


def index_table(results: list[Result]) -> str:
    """Markdown: the index each auto run built or loaded (seconds from its build stats)."""
    lines = ["| tokens | run | chunks | windows | reused | windows s | embed s | dense build s "
             "| BM25 build s | retrieval s | disk MB | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if not r.index:
            continue
        stats = r.index.get("index_stats") or {}
        lines.append(
            f"| {r.doc_tokens:,} | {r.run} | {r.chunks} | {stats.get('windows', '-')} | "
            f"{'yes' if r.index.get('index_reused') else 'no'} | "
            + " | ".join(str(stats.get(k, "-")) for k in
                         ("window_s", "embed_s", "dense_build_s", "bm25_build_s"))
            + f" | {r.stages['index']:.1f} | {r.index_disk_mb} | {r.peak_rss_mb:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("where", choices=["sim", "model", "case"])
    parser.add_argument("case", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, nargs="*", default=[128_000, 1_000_000])
    parser.add_argument("--strategies", nargs="*", default=None,
                        help="default: mapreduce and auto (sim), auto (model)")
    parser.add_argument("--kinds", nargs="*", default=None, choices=list(NEEDLE_SETS),
                        help="default: rare (sim: the simulated model reads no paraphrase), "
                             "rare and paraphrase (model)")
    parser.add_argument("--depths", type=float, nargs="*", default=[0.5])
    parser.add_argument("--repeat", type=int, default=1,
                        help="Questions per document (the 2nd reuses the index)")
    parser.add_argument("--embedder", default=None,
                        help="default: hash (sim; MiniLM on 10M tokens takes hours), minilm "
                             "(model)")
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--work", type=Path, help="Documents and caches (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="Also append the results here (JSONL)")
    parser.add_argument("--traces", type=Path,
                        help="Append each run's graph trace and draft here (JSONL)")
    args = parser.parse_args(argv)
    if args.where == "case":
        results = run_case(Case.model_validate_json(args.case))
        print(json.dumps([r.model_dump(mode="json") for r in results]))
        return
    sim = args.where == "sim"
    strategies = args.strategies or (["mapreduce", "auto"] if sim else ["auto"])
    kinds = args.kinds or (["rare"] if sim else ["rare", "paraphrase"])
    work = args.work or Path(tempfile.mkdtemp(prefix="longdoc-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {"cache_dir": str(work / "cache"), "use_cache": False,
                                "embedder": args.embedder or ("hash" if sim else "minilm")}
    if args.concurrency:
        settings["concurrency"] = args.concurrency
    server = None
    if sim:
        from tests.simserver import SimProcess

        server = SimProcess(max_concurrency=args.concurrency or 8).start()
        settings.update(backend="openai", base_url=server.base_url, model=server.model,
                        context_window=server.context_window, max_retries=0)
    results: list[Result] = []
    try:
        for tokens in args.tokens:
            for kind in kinds:
                for i, depth in enumerate(args.depths):
                    for strategy in strategies:
                        case = Case(tokens=tokens, strategy=strategy, kind=kind,
                                    needle=i % len(NEEDLE_SETS[kind]), depth=depth, work=work,
                                    settings=settings, repeat=args.repeat,
                                    traces=args.traces and args.traces.resolve())
                        print(f"{tokens} tokens, {strategy}, {kind} needle at {depth} ...",
                              file=sys.stderr, flush=True)
                        done = in_child(case)
                        for r in done:
                            print(f"  run {r.run}: {r.wall_s}s, {r.llm_calls} calls, right "
                                  f"{r.right}, cited {r.supported}, {r.peak_rss_mb} MB",
                                  file=sys.stderr, flush=True)
                        results += done
                        if args.json:
                            with args.json.open("a", encoding="utf-8") as out:
                                for r in done:
                                    out.write(r.model_dump_json() + "\n")
    finally:
        if server is not None:
            server.stop()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    print()
    print(index_table(results))


if __name__ == "__main__":
    main()

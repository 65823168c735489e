"""Run tasks × strategies through the pipeline; one JSON line per run, resumable.

Every finished (task, strategy) run is appended to the results file at once, so an
interrupted evaluation loses at most the run in progress; a rerun with the same file
skips the runs already answered or refused there (keyed by the task's digest and the
strategy) and retries failed ones (e.g. backend timeouts); reports use the last line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console

from longdoc.agents import STRATEGY_NAMES
from longdoc.pipeline.api import BackendStreak, Pipeline
from longdoc.pipeline.errors import InputError
from longdoc.pipeline.evaluation.metrics import EvalResult, evaluate, failed
from longdoc.pipeline.evaluation.tasks import EvalTask
from longdoc.pipeline.models import Answer, Document
from longdoc.pipeline.runs import JsonLog, progress_bar
from longdoc.pipeline.settings import Settings, load_settings


def check_strategies(strategies: Sequence[str]) -> list[str]:
    """The strategies, de-duplicated; InputError for an unknown one."""
    if not strategies:
        raise InputError("no strategies given")
    for name in strategies:
        if name not in STRATEGY_NAMES:
            raise InputError(f"unknown strategy {name!r} (choose from {list(STRATEGY_NAMES)})")
    return list(dict.fromkeys(strategies))


def read_results(path: Path) -> list[EvalResult]:
    """The results in ``path`` (none if it does not exist); a line that is not a result
    (e.g. cut short by a kill mid-write) is skipped."""
    return results_log(path).read()


def results_log(path: Path) -> JsonLog[EvalResult]:
    """The results file as the log a rerun resumes from, keyed by (task digest, strategy)."""
    return JsonLog(path, EvalResult, option="--results")


def run_one(pipeline: Pipeline, task: EvalTask, strategy: str,
            document: Path | Document | None = None, model: str | None = None,
            on_answer: Callable[[Answer], None] | None = None,
            streak: BackendStreak | None = None) -> EvalResult:
    """Run ``task`` with ``strategy`` on its text (``task.document()``, or ``document``)
    and score it. A refused input (e.g. ``direct`` over the window) is recorded as
    "refused"; any other failure as "error", and counted in ``streak``, which raises
    once the backend keeps failing. ``on_answer`` receives the pipeline's answer (with
    its trace) before it is scored."""
    outcome = pipeline.attempt("summary" if task.kind == "summary" else "qa",
                               document or task.document(), question=task.question or "",
                               words=task.words, strategy=strategy)
    if streak is not None:
        streak.record(outcome.failure, outcome.error)
    if outcome.answer is None:
        refused = outcome.failure in ("input", "over_budget")
        return failed(task, strategy, "refused" if refused else "error", outcome.error,
                      outcome.elapsed_s, model)
    if on_answer is not None:
        on_answer(outcome.answer)
    return evaluate(task, strategy, outcome.answer, outcome.elapsed_s, model)


def _line(result: EvalResult) -> str:
    if result.status != "ok":
        return f"{result.task_id} {result.strategy}: {result.status} ({result.error})"
    return (f"{result.task_id} {result.strategy}: score {result.score:.2f}, "
            f"{result.llm_calls} calls, {result.prompt_tokens} prompt tokens, "
            f"{result.wall_s:.0f}s; answer {result.answer[:60]!r}")


def run_tasks(
    tasks: Sequence[EvalTask],
    strategies: Sequence[str],
    results_path: Path,
    *,
    pipeline: Pipeline | None = None,
    settings: Settings | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> list[EvalResult]:
    """Run every (task, strategy) not yet answered or refused in ``results_path``,
    appending each result.

    Shorter tasks run first. Uses ``pipeline`` if given, else one built from ``settings``
    (default: the user's settings with the response cache off, so every run calls the
    model). Returns the results of this call's runs.
    """
    strategies = check_strategies(strategies)
    done = results_log(results_path).done(lambda r: r.status != "error")
    pending = [(t, s) for t in sorted(tasks, key=lambda t: (t.length, t.kind, t.depth or 0,
                                                          t.sample))
               for s in strategies if (t.digest, s) not in done]
    console = console or Console(stderr=True)
    if not pending:
        if progress:
            console.print(f"all {len(tasks) * len(strategies)} run(s) already in {results_path}")
        return []
    new: list[EvalResult] = []
    with ExitStack() as stack:
        log = stack.enter_context(results_log(results_path))
        if pipeline is None:
            pipeline = stack.enter_context(
                Pipeline(settings or load_settings(use_cache=False)))
        model = pipeline.backend.start().model
        bar = stack.enter_context(progress_bar(console, disable=not progress))
        skipped = len(tasks) * len(strategies) - len(pending)
        bar_id = bar.add_task(f"eval ({skipped} done before)", total=len(pending))
        streak = BackendStreak(unit="runs")
        for task, strategy in pending:
            bar.update(bar_id, description=f"{task.id} {strategy}")
            result = run_one(pipeline, task, strategy, model=model, streak=streak)
            log.append(result)
            new.append(result)
            if progress:
                bar.console.print(_line(result), highlight=False, markup=False)
            bar.advance(bar_id)
    return new


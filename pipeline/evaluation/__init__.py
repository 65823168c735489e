"""Evaluation harness: tasks from real text, strategies side by side, scored and reported.

>>> from longdoc.pipeline.evaluation import run_eval          # doctest: +SKIP
>>> run = run_eval(tasks=["single_needle"], lengths=[4000], strategies=["rag", "auto"],
...                results="eval/results.jsonl", report_dir="eval")
>>> run.report.markdown                                        # eval/report.md, with plots
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from longdoc.agents import STRATEGY_NAMES
from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.evaluation.conflicts import CONFLICT_KINDS, ConflictKind, ConflictSplit
from longdoc.pipeline.evaluation.metrics import EvalResult, evaluate, rescore
from longdoc.pipeline.evaluation.report import Report, markdown_table, write_report
from longdoc.pipeline.evaluation.runner import (
    check_strategies,
    read_results,
    run_tasks,
)
from longdoc.pipeline.evaluation.tasks import (
    DEFAULT_DATA,
    DEFAULT_DEPTHS,
    DEFAULT_LENGTHS,
    NEEDLE_KINDS,
    TASK_KINDS,
    EvalTask,
    TaskKind,
    generate_tasks,
)
from longdoc.pipeline.settings import Settings

DEFAULT_RESULTS = Path("longdoc-eval") / "results.jsonl"

__all__ = [
    "CONFLICT_KINDS", "DEFAULT_RESULTS", "NEEDLE_KINDS", "STRATEGY_NAMES", "TASK_KINDS",
    "EvalResult", "EvalRun", "EvalTask", "Report", "evaluate", "generate_tasks",
    "markdown_table", "read_results", "rescore", "run_eval", "run_tasks", "write_report",
]


class EvalRun(BaseModel):
    """What ``run_eval`` did: the runs of this call, every result in the file, the report."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    tasks: int
    new: list[EvalResult]
    results: list[EvalResult]
    report: Report | None = None


def run_eval(
    *,
    tasks: Sequence[TaskKind] = NEEDLE_KINDS,
    strategies: Sequence[str] = STRATEGY_NAMES,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    samples: int = 1,
    seed: int = 0,
    data: str | Path = DEFAULT_DATA,
    globs: Sequence[str] | None = None,
    reference: Sequence[str | Path] | None = None,
    conflict_split: ConflictSplit = "dev",
    conflict_kinds: Sequence[ConflictKind] = CONFLICT_KINDS,
    results: str | Path = DEFAULT_RESULTS,
    report_dir: str | Path | None = None,
    settings: Settings | None = None,
    pipeline: Pipeline | None = None,
    progress: bool = True,
) -> EvalRun:
    """Generate the task grid, run what ``results`` lacks, and write the report.

    ``report_dir`` defaults to the results file's folder. ``settings`` default to the
    user's with the response cache off. ``conflict_split`` and ``conflict_kinds`` choose
    the ``conflict`` tasks' phrasings (see ``generate_tasks``). Raises ``InputError`` for
    bad parameters or data, ``BackendError`` when the model backend keeps failing (rerun
    to resume).
    """
    strategies = check_strategies(strategies)
    task_list = generate_tasks(
        tasks, data=Path(data), lengths=lengths, depths=depths, samples=samples, seed=seed,
        globs=globs, reference=None if reference is None else [Path(p) for p in reference],
        conflict_split=conflict_split, conflict_kinds=conflict_kinds,
    )
    results_path = Path(results)
    new = run_tasks(task_list, strategies, results_path, pipeline=pipeline, settings=settings,
                    progress=progress)
    everything = read_results(results_path)
    report = write_report(everything, Path(report_dir) if report_dir else results_path.parent,
                          source=str(results_path))
    return EvalRun(tasks=len(task_list), new=new, results=everything, report=report)

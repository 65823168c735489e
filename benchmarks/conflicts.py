"""Conflicting evidence through the real pipeline: right answers with a supporting citation.

Usage: .venv/bin/python -m benchmarks.conflicts [--split heldout] [--tokens 20000] [--runs 3]
       [--strategies auto,mapreduce] [--kinds hedged,unconfirmed,superseded,sibling]
       [--depths 0.25,0.5,0.75] [--results benchmarks/conflicts/results.jsonl]
       [--data DIR] [--seed 0] [--report-only]

Each run is a ``conflict`` task (``longdoc.pipeline.evaluation.tasks.conflict_task``): a
haystack of real prose of ``--tokens`` tokens, a code of a named entity stated plainly at
a depth, and two unreliable statements of one kind with other values, one before it and
one after it, in phrasings of ``--split`` (report on ``heldout``; ``dev`` is the half
conflict rules may be tuned on). Run i of a kind puts the genuine statement at depth
``depths[i % len(depths)]`` (sample ``i // len(depths)``), so every run of a kind is a
different document, entity and pair of phrasings.

Every (task, strategy) goes through ``longdoc.pipeline.evaluation.run_tasks`` with the
configured backend (the embedded model unless LONGDOC_BACKEND/LONGDOC_BASE_URL say
otherwise) and no response cache; results are appended to ``--results`` and a rerun
resumes. The table counts, per kind and strategy, the strict outcomes of
``metrics.outcome``: the right value alone with a citation on the genuine sentence, the
right value without one, a wrong answer (an unreliable value, any other number, or the
right value among others), no value, and runs refused or failed. ``results_section()``
(``python -m benchmarks.make_results --only conflicts``) runs the default configuration
and returns the table as a RESULTS.md section.

Exit codes: 0 done, 2 bad input, 3 the backend failed (rerun to resume).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from longdoc.pipeline.errors import InputError, LongdocError
from longdoc.pipeline.evaluation.conflicts import CONFLICT_KINDS, CONFLICT_SPLITS
from longdoc.pipeline.evaluation.metrics import OUTCOMES, EvalResult, Outcome, outcome, rescore
from longdoc.pipeline.evaluation.runner import check_strategies, read_results, run_tasks
from longdoc.pipeline.evaluation.tasks import (
    DEFAULT_DATA,
    MAX_LENGTH,
    MIN_LENGTH,
    Corpus,
    EvalTask,
    check_conflict_options,
    conflict_task,
    parse_length,
)
from longdoc.pipeline.settings import load_settings

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "conflicts" / "results.jsonl"
DEFAULT_STRATEGIES = ("auto", "mapreduce")
DEFAULT_DEPTHS = (0.25, 0.5, 0.75)
DEFAULT_TOKENS = 20000
DEFAULT_RUNS = 3


class Config(BaseModel):
    """What to run."""

    split: str = "heldout"
    tokens: int = DEFAULT_TOKENS
    runs: int = DEFAULT_RUNS
    strategies: list[str] = list(DEFAULT_STRATEGIES)
    kinds: list[str] = list(CONFLICT_KINDS)
    depths: list[float] = list(DEFAULT_DEPTHS)
    results: Path = DEFAULT_RESULTS
    data: Path = DEFAULT_DATA
    seed: int = 0

    def command(self) -> str:
        """The command line that runs this configuration."""
        return (f".venv/bin/python -m benchmarks.conflicts --split {self.split} "
                f"--tokens {self.tokens} --runs {self.runs} "
                f"--strategies {','.join(self.strategies)} --kinds {','.join(self.kinds)} "
                f"--depths {','.join(map(str, self.depths))} --seed {self.seed}")


def build_tasks(config: Config) -> list[EvalTask]:
    """``config.runs`` tasks per kind (InputError for bad parameters or data)."""
    check_conflict_options(config.split, config.kinds)
    check_strategies(config.strategies)
    if not MIN_LENGTH <= config.tokens <= MAX_LENGTH:
        raise InputError(f"--tokens {config.tokens} is out of range "
                         f"({MIN_LENGTH}-{MAX_LENGTH})")
    if config.runs < 1:
        raise InputError(f"--runs must be at least 1 (got {config.runs})")
    if not config.depths or not all(0.0 <= d <= 1.0 for d in config.depths):
        raise InputError(f"--depths must be numbers in 0-1 (got {config.depths})")
    corpus = Corpus.from_folder(config.data)
    return [conflict_task(kind, config.split, corpus, config.tokens,  # type: ignore[arg-type]
                          config.depths[i % len(config.depths)], i // len(config.depths),
                          config.seed)
            for kind in config.kinds for i in range(config.runs)]


def collect(tasks: Sequence[EvalTask], config: Config) -> list[EvalResult]:
    """The latest stored result of each (task, strategy) of this configuration, rescored."""
    by_digest = {t.digest: t for t in tasks}
    latest = {r.key: r for r in read_results(config.results)
              if r.digest in by_digest and r.strategy in config.strategies}
    return [rescore(r, by_digest[r.digest]) for r in latest.values()]


def _share(counts: Counter[Outcome], runs: int) -> str:
    right = counts["right, supported"]
    return f"{right}/{runs} ({100 * right / runs:.0f}%)" if runs else "–"


def table(results: Sequence[EvalResult], config: Config) -> str:
    """Markdown: outcomes per kind and strategy, then the share right with a supporting
    citation per strategy and overall."""
    head = ["kind", "strategy", "runs", *OUTCOMES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_strategy: dict[str, Counter[Outcome]] = {s: Counter() for s in config.strategies}
    for kind in config.kinds:
        for strategy in config.strategies:
            runs = [r for r in results if r.conflict_kind == kind and r.strategy == strategy]
            counts = Counter(outcome(r) for r in runs)
            by_strategy[strategy].update(counts)
            lines.append(f"| {kind} | {strategy} | {len(runs)} | "
                         + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
    lines.append("")
    total: Counter[Outcome] = Counter()
    for strategy, counts in by_strategy.items():
        total.update(counts)
        lines.append(f"- {strategy}: right with a supporting citation in "
                     f"{_share(counts, sum(counts.values()))} runs")
    lines.append(f"- overall: {_share(total, sum(total.values()))} runs")
    claimed = [r for r in results if r.claimed_supported and outcome(r) == "wrong"]
    lines.append(f"- wrong answers the pipeline marked supported: {len(claimed)}")
    return "\n".join(lines) + "\n"


def run(config: Config, *, report_only: bool = False, progress: bool = True) -> str:
    """Run (or resume) the configuration and return its table."""
    tasks = build_tasks(config)
    if not report_only:
        run_tasks(tasks, config.strategies, config.results, progress=progress,
                  settings=load_settings(use_cache=False))
    results = collect(tasks, config)
    missing = len(tasks) * len(config.strategies) - len(results)
    note = f"\n{missing} run(s) of this configuration not in {config.results} yet.\n" \
        if missing else ""
    return table(results, config) + note


def results_section(config: Config | None = None) -> str:
    """A configuration (default: the held-out figure's) run and made a RESULTS.md section."""
    config = config or Config()
    body = run(config, progress=False)
    models = sorted({r.model for r in read_results(config.results) if r.model})
    where = os.path.relpath(config.results, HERE)
    return "\n".join([
        f"## Conflicting evidence, {config.split} phrasings (generated)", "",
        f"`{config.command()}` (also `python -m benchmarks.make_results --only conflicts`). "
        f"Model(s): {', '.join(models) or 'none yet'}; no response cache; every run: "
        f"`{where}`. Outcomes are strict: right = the genuine value and no other value; "
        "supported = a citation on the genuine sentence.", "", body])


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: Sequence[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="heldout", help=" or ".join(CONFLICT_SPLITS))
    parser.add_argument("--tokens", default=str(DEFAULT_TOKENS), help="e.g. 20000 or 20k")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="tasks per kind")
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES))
    parser.add_argument("--kinds", default=",".join(CONFLICT_KINDS))
    parser.add_argument("--depths", default=",".join(map(str, DEFAULT_DEPTHS)))
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder of haystack prose (default ../shared/data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-only", action="store_true",
                        help="print the table of what --results holds; run nothing")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        tokens = parse_length(args.tokens)
        depths = [float(d) for d in _csv(args.depths)]
    except ValueError as exc:
        raise InputError(f"cannot read --tokens/--depths ({exc})") from exc
    config = Config(split=args.split, tokens=tokens, runs=args.runs,
                    strategies=_csv(args.strategies), kinds=_csv(args.kinds), depths=depths,
                    results=args.results, data=args.data, seed=args.seed)
    return config, args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config, args = parse_args(argv)
        body = run(config, report_only=args.report_only, progress=not args.no_progress)
    except LongdocError as error:
        print(f"conflicts: {error}", file=sys.stderr)
        return error.exit_code
    print(config.command())
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

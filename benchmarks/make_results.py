"""Regenerate the generated sections of benchmarks/RESULTS.md (tables and plots) with one command.

Usage: .venv/bin/python -m benchmarks.make_results [--only eval] [--lengths 8k 32k 128k]
       [--depths 0.25 0.75] [--samples 1] [--strategies ...] [--tasks ...] [--report-only]

Each section lives in RESULTS.md between ``<!-- generated:NAME begin -->`` and
``<!-- generated:NAME end -->`` (appended at the end the first time); everything else
in the file is left alone.

- ``eval``: the embedded-model table (the default backend, or whatever LONGDOC_* says):
  single-needle and conflicting-distractor tasks at 8k, 32k and 128k tokens, each with
  the needle at depths 0.25 and 0.75 (one sample each: 2 runs per cell), run with
  direct, mapreduce, memory, chain, rag and auto. Results go to
  ``benchmarks/eval/results.jsonl`` and are resumed from it (a rerun only does what is
  missing); report.md/.html and the PNGs go to ``benchmarks/eval/``. No response cache.
  Every stored line is rescored strictly against its regenerated task (``rescore``):
  answers offering other values are wrong, citations are judged against the gold
  evidence spans; lines from before the spans were stored keep their citation recall
  and get no precision (the section and the command's output say how many).
- ``conflicts``: ``benchmarks/conflicts.py``'s default configuration (held-out
  phrasings, 20k tokens, 3 runs per kind, auto and mapreduce), run or resumed.
- every other benchmark module listed in ``MODULE_SECTIONS`` that defines
  ``results_section() -> str`` (it runs its measurement and returns Markdown) gets a
  section of that name; a module that is missing or lacks the function is skipped and
  its section left as it was.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from longdoc.pipeline.errors import LongdocError
from longdoc.pipeline.evaluation import (
    STRATEGY_NAMES,
    generate_tasks,
    markdown_table,
    read_results,
    rescore,
    run_tasks,
    write_report,
)
from longdoc.pipeline.evaluation.metrics import EvalResult
from longdoc.pipeline.evaluation.report import spans_note
from longdoc.pipeline.evaluation.tasks import EvalTask, parse_length
from longdoc.pipeline.settings import load_settings

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
EVAL_DIR = HERE / "eval"
EVAL_LENGTHS = (8000, 32000, 128000)
EVAL_DEPTHS = (0.25, 0.75)
EVAL_TASKS = ("single_needle", "distractor")
EVAL_STRATEGIES = STRATEGY_NAMES  # every strategy; reports list them in registry order
EVAL_SEED = 0
MODULE_SECTIONS = ("perf", "langchain_compare", "conflicts")


def splice(document: str, name: str, body: str) -> str:
    """``document`` with section ``name`` replaced by ``body`` (appended if absent)."""
    begin, end = f"<!-- generated:{name} begin -->", f"<!-- generated:{name} end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(document):
        return pattern.sub(lambda _: block, document, count=1)
    return document.rstrip() + "\n\n" + block + "\n"


def machine() -> str:
    """One line about this machine and the embedded backend's version."""
    memory = ""
    meminfo = Path("/proc/meminfo")
    found = re.search(r"MemTotal:\s+(\d+)", meminfo.read_text()) if meminfo.is_file() else None
    if found:
        memory = f", {int(found.group(1)) / 2**20:.0f} GiB"
    try:
        llama = f"llama-cpp-python {importlib.metadata.version('llama-cpp-python')}"
    except importlib.metadata.PackageNotFoundError:
        llama = "llama-cpp-python not installed"
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores{memory}; "
            f"Python {platform.python_version()}; {llama}")


def _ktokens(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def stored_results(tasks: Sequence[EvalTask], strategies: Sequence[str],
                   lines: Sequence[EvalResult]) -> tuple[list[EvalResult], int]:
    """The last stored run of each (task, strategy) of the grid, rescored strictly, and
    how many of them are of an older version of their task.

    A line matches its task by digest (rescored against the task) or else, the generator
    having changed since, by task id and gold values (rescored from the line alone).
    """
    by_digest = {t.digest: t for t in tasks}
    by_id = {t.id: t for t in tasks}
    chosen: dict[tuple[str, str], tuple[bool, EvalResult]] = {}
    for line in lines:
        key = (line.task_id, line.strategy)
        if line.strategy not in strategies:
            continue
        current = line.digest in by_digest
        task = by_id.get(line.task_id)
        if current or (task is not None and task.answers == line.expected
                       and not chosen.get(key, (False, line))[0]):
            chosen[key] = (current, rescore(line, by_digest.get(line.digest)))
    older = sum(not current for current, _ in chosen.values())
    return [result for _, result in chosen.values()], older


def eval_section(args: argparse.Namespace) -> str:
    """Run (or resume) the eval grid, write its report, and return the RESULTS.md section."""
    tasks = generate_tasks(args.tasks, lengths=args.lengths, depths=args.depths,
                           samples=args.samples, seed=EVAL_SEED)
    results_path = args.eval_dir / "results.jsonl"
    if not args.report_only:
        run_tasks(tasks, args.strategies, results_path, settings=load_settings(use_cache=False))
    results, regenerated = stored_results(tasks, args.strategies, read_results(results_path))
    note = spans_note(results)
    if regenerated:
        note += (f" {regenerated} run(s) are of tasks the generator now cuts slightly "
                 "differently (same id and gold value, another digest): they were rescored "
                 "from their lines alone, and a run without --report-only would redo them.")
    print(f"make_results: eval: {note}", file=sys.stderr)
    report = write_report(results, args.eval_dir, title="longdoc eval: embedded model",
                          source=os.path.relpath(results_path, HERE.parent))
    wanted = {(t.id, s) for t in tasks for s in args.strategies}
    done = {(r.task_id, r.strategy) for r in results}
    lengths_done = sorted({r.length for r in results})
    command = ["python", "-m", "benchmarks.make_results", "--only", "eval",
               "--lengths", *map(_ktokens, args.lengths),
               "--depths", *map(str, args.depths), "--samples", str(args.samples),
               "--tasks", *args.tasks, "--strategies", *args.strategies]
    default = (tuple(args.lengths) == EVAL_LENGTHS and tuple(args.depths) == EVAL_DEPTHS
               and args.samples == 1 and tuple(args.tasks) == EVAL_TASKS
               and sorted(args.strategies) == sorted(EVAL_STRATEGIES))
    models = sorted({r.model for r in results if r.model})
    runs_per_cell = len(args.depths) * args.samples
    lines = [
        "## Eval harness, embedded model (generated)",
        "",
        f"`.venv/bin/{' '.join(command)}`" + (" (the default configuration)" if default else ""),
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d} on {machine()}. Model: "
        f"{', '.join(models) or 'none yet'}. Tasks from `../shared/data` (inaugural and State "
        f"of the Union prose), seed {EVAL_SEED}; {runs_per_cell} run(s) per cell "
        f"(needle depths {', '.join(map(str, args.depths))} × {args.samples} sample(s)); "
        "no response cache. The cores were shared with other jobs, so seconds are "
        "indicative only.",
        "",
        note,
        "",
    ]
    resume = ("`.venv/bin/python -m benchmarks.make_results --only eval` runs what is "
              "missing (it resumes from the results file).")
    if len(done) < len(wanted):
        lines += [f"**Partial:** {len(done)} of {len(wanted)} runs of this configuration done "
                  f"(lengths so far: {', '.join(map(_ktokens, lengths_done)) or 'none'}). "
                  + resume, ""]
    if not default:
        lines += [f"**Partial table:** the default configuration is "
                  f"{', '.join(map(_ktokens, EVAL_LENGTHS))} tokens × depths "
                  f"{', '.join(map(str, EVAL_DEPTHS))} × {', '.join(EVAL_TASKS)} × "
                  f"{', '.join(EVAL_STRATEGIES)}; this table covers only the command above. "
                  + resume, ""]
    lines += [markdown_table(results) if results else "No results yet.", ""]
    where = os.path.relpath(args.eval_dir, args.results_md.parent)
    lines += [f"![{p.stem}]({where}/{p.name})" for p in report.images]
    lines += ["", f"Full report: [{where}/report.md]({where}/report.md); every run: "
                  f"`{where}/results.jsonl`."]
    return "\n".join(lines)


def module_section(name: str) -> str | None:
    """The section a benchmark module returns, or None if it offers none."""
    try:
        module = importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError:
        return None
    make = getattr(module, "results_section", None)
    return make() if callable(make) else None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=["eval", *MODULE_SECTIONS],
                        help="regenerate only these sections")
    parser.add_argument("--lengths", nargs="+", type=parse_length, default=list(EVAL_LENGTHS))
    parser.add_argument("--depths", nargs="+", type=float, default=list(EVAL_DEPTHS))
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--tasks", nargs="+", default=list(EVAL_TASKS))
    parser.add_argument("--strategies", nargs="+", default=list(EVAL_STRATEGIES),
                        choices=STRATEGY_NAMES)
    parser.add_argument("--results-md", type=Path, default=RESULTS_MD, help=argparse.SUPPRESS)
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--report-only", action="store_true",
                        help="eval: rebuild the report and table from the results file only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.only or ["eval", *MODULE_SECTIONS]
    for name in names:
        try:
            body = eval_section(args) if name == "eval" else module_section(name)
        except LongdocError as error:
            print(f"make_results: {name}: {error}", file=sys.stderr)
            return error.exit_code
        if body is None:
            print(f"make_results: {name}: benchmarks/{name}.py offers no results_section(); "
                  "section left as it was", file=sys.stderr)
            continue
        # Read just before writing: others may edit the hand-written sections meanwhile.
        document = splice(args.results_md.read_text(encoding="utf-8"), name, body)
        args.results_md.write_text(document, encoding="utf-8")
        print(f"make_results: {name}: section written to {args.results_md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

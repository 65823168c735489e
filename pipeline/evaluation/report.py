"""Markdown and HTML reports of evaluation results: a table and matplotlib plots.

Plots (PNG, written beside the report): score by length per strategy (one panel per
task kind), a needle-depth heatmap per strategy (one figure per needle task kind), and
tokens and wall time by strategy. Scores average the runs that answered; refused and
failed runs are counted in their own column. Every line is rescored strictly
(``metrics.rescore``) before it is counted, so older results files get today's answer
scoring; their lines without stored citation spans have no citation precision.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from statistics import mean
from typing import Any

from pydantic import BaseModel

from longdoc.agents import STRATEGY_NAMES
from longdoc.pipeline.errors import InputError
from longdoc.pipeline.evaluation.metrics import EvalResult, rescore
from longdoc.pipeline.evaluation.tasks import TASK_KINDS

COLUMNS = ("task", "tokens", "strategy", "runs", "score", "supported", "cit. precision",
           "cit. recall", "LLM calls", "prompt tok.", "completion tok.", "s/run",
           "not answered")


class Cell(BaseModel):
    """Aggregate of the runs of one (task kind, length, strategy)."""

    kind: str
    length: int
    strategy: str
    runs: int
    answered: int
    refused: int
    errors: int
    score: float | None
    supported: int | None
    citation_precision: float | None
    precision_runs: int = 0  # answered runs with a citation precision
    precision_unknown: int = 0  # answered older lines whose precision cannot be known
    citation_recall: float | None
    llm_calls: float | None
    prompt_tokens: float | None
    completion_tokens: float | None
    wall_s: float | None


class Report(BaseModel):
    """Where a report was written."""

    markdown: Path
    html: Path
    images: list[Path]


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return mean(present) if present else None


def _order(key: str, known: Sequence[str]) -> tuple[int, str]:
    return (known.index(key) if key in known else len(known), key)


def latest(results: Iterable[EvalResult]) -> list[EvalResult]:
    """One result per (task digest, strategy): the last one in the file, rescored."""
    return [rescore(r) for r in {r.key: r for r in results}.values()]


def span_counts(results: Iterable[EvalResult]) -> tuple[int, int]:
    """Answered runs (latest per task and strategy) with stored citation spans, and
    without (lines of older files)."""
    ok = [r for r in {r.key: r for r in results}.values() if r.status == "ok"]
    stored = sum(r.cited_spans is not None for r in ok)
    return stored, len(ok) - stored


def wrong_but_precise(results: Iterable[EvalResult]) -> int:
    """Wrong answers (score < 1) to planted tasks whose citation precision is 1.00."""
    return sum(r.status == "ok" and r.supported is not None and (r.score or 0) < 1
               and r.citation_precision == 1.0 for r in latest(results))


def aggregate(results: Iterable[EvalResult]) -> list[Cell]:
    """Cells in task-kind, length, strategy order."""
    groups: dict[tuple[str, int, str], list[EvalResult]] = defaultdict(list)
    for r in latest(results):
        groups[(r.kind, r.length, r.strategy)].append(r)
    cells = []
    for (kind, length, strategy), runs in groups.items():
        ok = [r for r in runs if r.status == "ok"]
        needle = any(r.supported is not None for r in ok)
        cells.append(Cell(
            kind=kind, length=length, strategy=strategy, runs=len(runs), answered=len(ok),
            refused=sum(r.status == "refused" for r in runs),
            errors=sum(r.status == "error" for r in runs),
            score=_mean(r.score for r in ok),
            supported=sum(bool(r.supported) for r in ok) if needle else None,
            citation_precision=_mean(r.citation_precision for r in ok),
            precision_runs=sum(r.citation_precision is not None for r in ok),
            precision_unknown=sum(_unknown_precision(r) for r in ok),
            citation_recall=_mean(r.citation_recall for r in ok),
            llm_calls=_mean(r.llm_calls for r in ok),
            prompt_tokens=_mean(r.prompt_tokens for r in ok),
            completion_tokens=_mean(r.completion_tokens for r in ok),
            wall_s=_mean(r.wall_s for r in ok),
        ))
    return sorted(cells, key=lambda c: (_order(c.kind, TASK_KINDS), c.length,
                                        _order(c.strategy, STRATEGY_NAMES)))


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if digits == 0 else f"{value:.{digits}f}"


def _unknown_precision(result: EvalResult) -> bool:
    """An older line (no stored spans) with citations whose precision is not known."""
    return (result.status == "ok" and result.cited_spans is None and result.citations > 0
            and result.citation_precision is None and result.supported is not None)


def _precision(cell: Cell) -> str:
    """Mean precision, and over how many runs when some older runs' is unknown."""
    value = _fmt(cell.citation_precision)
    if cell.precision_unknown:
        return f"{value} ({cell.precision_runs} of {cell.answered})"
    return value


def table_rows(cells: Sequence[Cell]) -> list[list[str]]:
    """The table's cells as text, in ``COLUMNS`` order."""
    rows = []
    for c in cells:
        missing = [f"{n} {label}" for n, label in ((c.refused, "refused"), (c.errors, "failed"))
                   if n]
        rows.append([
            c.kind, f"{c.length:,}", c.strategy, str(c.runs), _fmt(c.score),
            "–" if c.supported is None else f"{c.supported}/{c.answered}",
            _precision(c), _fmt(c.citation_recall), _fmt(c.llm_calls, 1),
            _fmt(c.prompt_tokens, 0), _fmt(c.completion_tokens, 0), _fmt(c.wall_s, 1),
            ", ".join(missing) or "–",
        ])
    return rows


def markdown_table(results: Iterable[EvalResult]) -> str:
    """The aggregate table as Markdown."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(aggregate(results))]
    return "\n".join(lines) + "\n"


LEGEND = (
    "score: mean over answered runs of strict accuracy (planted tasks: the gold value and "
    "no other candidate value, i.e. no planted distractor and no other number of the gold's "
    "digits; multi_value: values found / (gold values + other values offered)), token F1 "
    "(qa) or ROUGE-L (summary). supported: right answer and a citation covering the gold "
    "evidence span. cit. precision: citations covering a gold evidence span / citations "
    "(\"(k of n)\": known for k of the n answered runs, older lines lacking the spans); cit. "
    "recall: gold evidence spans covered by a citation. Cost columns: means over answered "
    "runs. not answered: runs refused (e.g. direct over the window) or failed."
)


# --- plots ---------------------------------------------------------------------------------


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError("reports need matplotlib: pip install 'longdoc[eval]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _strategies(cells: Sequence[Cell]) -> list[str]:
    return sorted({c.strategy for c in cells}, key=lambda s: _order(s, STRATEGY_NAMES))


def plot_score_by_length(cells: Sequence[Cell], path: Path) -> Path:
    """Score by length, a line per strategy, a panel per task kind."""
    plt = _pyplot()
    kinds = sorted({c.kind for c in cells}, key=lambda k: _order(k, TASK_KINDS))
    cols = min(3, len(kinds))
    rows = math.ceil(len(kinds) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, kind in zip(axes.flat, kinds, strict=False):
        for strategy in _strategies(cells):
            points = sorted((c.length, c.score) for c in cells
                            if c.kind == kind and c.strategy == strategy and c.score is not None)
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=strategy)
        lengths = sorted({c.length for c in cells if c.kind == kind})
        ax.set_xscale("log")
        ax.set_xticks(lengths, [f"{n // 1000}k" if n >= 1000 else str(n) for n in lengths])
        ax.minorticks_off()
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(kind)
        ax.set_xlabel("document tokens (cl100k)")
        ax.set_ylabel("score")
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(kinds):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_depth_heatmap(results: Sequence[EvalResult], kind: str, path: Path) -> Path:
    """Mean score per (depth, length), one panel per strategy, for one needle task kind."""
    plt = _pyplot()
    runs = [r for r in latest(results) if r.kind == kind and r.depth is not None]
    strategies = sorted({r.strategy for r in runs}, key=lambda s: _order(s, STRATEGY_NAMES))
    lengths = sorted({r.length for r in runs})
    depths = sorted({r.depth for r in runs if r.depth is not None})
    cols = min(3, len(strategies))
    rows = math.ceil(len(strategies) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * len(lengths) * cols + 2.5 * cols,
                                                  0.5 * len(depths) * rows + 1.8 * rows),
                             squeeze=False, layout="constrained")
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="lightgrey")
    image = None
    for ax, strategy in zip(axes.flat, strategies, strict=False):
        grid = [[_mean(r.score for r in runs if r.strategy == strategy and r.status == "ok"
                       and r.length == n and r.depth == d) for n in lengths] for d in depths]
        values = [[math.nan if v is None else v for v in row] for row in grid]
        image = ax.imshow(values, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(j, i, "n/a" if v is None else f"{v:.2f}", ha="center", va="center",
                        fontsize=7)
        ax.set_xticks(range(len(lengths)), [f"{n // 1000}k" for n in lengths])
        ax.set_yticks(range(len(depths)), [f"{d:.2f}" for d in depths])
        ax.set_xlabel("tokens")
        ax.set_ylabel("depth")
        ax.set_title(strategy)
    for ax in list(axes.flat)[len(strategies):]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="score")
    fig.suptitle(f"{kind}: score by needle depth (grey: no answered run)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_cost(cells: Sequence[Cell], path: Path) -> Path:
    """Mean tokens (prompt + completion) and wall time per run, by strategy and length."""
    plt = _pyplot()
    strategies = _strategies(cells)
    lengths = sorted({c.length for c in cells})
    fig, (tok_ax, time_ax) = plt.subplots(1, 2, figsize=(max(8, 2 * len(strategies)), 4))
    width = 0.8 / max(1, len(lengths))
    for i, length in enumerate(lengths):
        per = {s: [c for c in cells if c.strategy == s and c.length == length
                   and c.answered] for s in strategies}
        xs = [k + (i - (len(lengths) - 1) / 2) * width for k in range(len(strategies))]
        tokens = [_mean((c.prompt_tokens or 0) + (c.completion_tokens or 0) for c in per[s])
                  or 0 for s in strategies]
        seconds = [_mean(c.wall_s for c in per[s]) or 0 for s in strategies]
        label = f"{length // 1000}k tokens" if length >= 1000 else f"{length} tokens"
        tok_ax.bar(xs, tokens, width, label=label)
        time_ax.bar(xs, seconds, width, label=label)
    for ax, ylabel in ((tok_ax, "tokens per run (prompt + completion)"),
                       (time_ax, "wall seconds per run")):
        ax.set_xticks(range(len(strategies)), strategies)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("cost by strategy (answered runs; timings depend on the machine's load)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- documents -------------------------------------------------------------------------------


def write_plots(results: Sequence[EvalResult], folder: Path) -> list[Path]:
    """Every plot the results support, as PNGs in ``folder``."""
    cells = aggregate(results)
    if not cells:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    images = [plot_score_by_length(cells, folder / "score_by_length.png")]
    for kind in sorted({r.kind for r in results if r.depth is not None},
                       key=lambda k: _order(k, TASK_KINDS)):
        images.append(plot_depth_heatmap(results, kind, folder / f"depth_heatmap_{kind}.png"))
    images.append(plot_cost(cells, folder / "cost_by_strategy.png"))
    return images


def _header(results: Sequence[EvalResult], source: str | None) -> list[str]:
    runs = latest(results)
    models = sorted({r.model for r in runs if r.model})
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Generated {when} from {len(runs)} run(s)"
             + (f" in `{source}`" if source else "") + "."]
    if models:
        lines.append(f"Model(s): {', '.join(models)}.")
    lines.append(spans_note(results))
    return lines


def spans_note(results: Sequence[EvalResult]) -> str:
    """How many answered runs were scored with stored citation spans, how many not, and
    how many wrong answers have citation precision 1.00."""
    stored, older = span_counts(results)
    unknown = sum(_unknown_precision(r) for r in latest(results))
    note = (f"Scored strictly: {stored} answered run(s) with stored citation spans, {older} "
            f"from older lines without them (citation precision unknown for {unknown} of "
            "these: several citations, some on the gold evidence).")
    return note + f" Wrong answers with citation precision 1.00: {wrong_but_precise(results)}."


def write_report(results: Sequence[EvalResult], folder: Path, *, title: str = "longdoc eval",
                 source: str | None = None) -> Report:
    """``report.md``, ``report.html`` and the plots, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    images = write_plots(results, folder)
    header = _header(results, source)
    table = markdown_table(results) if results else "No results yet.\n"
    md = [f"# {title}", "", *header, "", table, LEGEND, ""]
    md += [f"![{p.stem}]({p.name})\n" for p in images]
    markdown = folder / "report.md"
    markdown.write_text("\n".join(md), encoding="utf-8")
    rows = table_rows(aggregate(results))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:nth-child(-n+3){text-align:left}img{max-width:100%;margin:1em 0}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
        + "".join(f"<p>{html.escape(line)}</p>" for line in header)
        + (f"<table><tr>{head}</tr>{body}</table>" if rows else "<p>No results yet.</p>")
        + f"<p><small>{html.escape(LEGEND)}</small></p>"
        + "".join(f"<img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'>"
                  for p in images)
        + "</body></html>"
    )
    page_path = folder / "report.html"
    page_path.write_text(page, encoding="utf-8")
    return Report(markdown=markdown, html=page_path, images=images)

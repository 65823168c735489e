"""Tables of the review app: strategies side by side, usage per node, trace events."""

from __future__ import annotations

import json
from typing import Any

from longdoc.app.runs import StrategyRun
from longdoc.app.verdicts import Verdict
from longdoc.pipeline.models import Answer, NodeUsage, TraceEvent, Usage

ANSWER_PREVIEW_CHARS = 160
DATA_PREVIEW_CHARS = 200


def _preview(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def route_label(answer: Answer) -> str:
    """``auto → direct`` for auto runs, else the strategy."""
    if answer.route and answer.route.get("chosen"):
        return f"{answer.strategy} → {answer.route['chosen']}"
    return answer.strategy


def article_caption(answer: Answer) -> str:
    """An article's length per section against its targets, and what the checks did."""
    counts = getattr(answer, "counts", None)
    sections = getattr(answer, "sections", [])
    if counts is None:
        return ""
    per_section = "; ".join(f"{s.title}: {s.words}/{s.target_words}" for s in sections)
    return (f"{counts.words} words for {counts.target_words} ({per_section}); "
            f"{counts.citations_unsupported} unsupported citation(s) dropped, "
            f"{counts.sentences_rewritten} sentence(s) with untraceable figures rewritten, "
            f"{counts.sentences_removed} removed; {counts.conflicts} conflict(s) stated")


def comparison_rows(runs: list[StrategyRun]) -> list[dict[str, Any]]:
    """One row per strategy run: status, answer preview, citations and cost."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {"strategy": run.strategy}
        if run.answer is None:
            row.update(status="error", answer=run.error or "")
        else:
            a, u = run.answer, run.answer.usage
            row.update(
                strategy=route_label(a), status="ok", answer=_preview(a.answer,
                                                                       ANSWER_PREVIEW_CHARS),
                supported=a.supported, citations=len(a.citations),
                dropped_quotes=a.dropped_quotes,
                llm_calls=u.llm_calls, prompt_tokens=u.prompt_tokens,
                completion_tokens=u.completion_tokens, cache_hits=u.cache_hits,
                seconds=a.elapsed_s,
            )
        rows.append(row)
    return rows


def _usage_row(name: str, usage: NodeUsage) -> dict[str, Any]:
    return {"node": name, "llm_calls": usage.llm_calls, "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "cache_hits": usage.cache_hits,
            "llm_seconds": round(usage.latency_s, 3)}


def usage_rows(usage: Usage) -> list[dict[str, Any]]:
    """One row per graph node that called the model, then the total."""
    rows = [_usage_row(node, part) for node, part in usage.by_node.items()]
    rows.append(_usage_row("total", usage))
    return rows


def trace_rows(trace: list[TraceEvent]) -> list[dict[str, Any]]:
    """One row per trace event: its index, node, message and a preview of its data."""
    return [
        {"#": i, "node": e.node, "message": e.message,
         "data": _preview(json.dumps(e.data, ensure_ascii=False, default=str),
                          DATA_PREVIEW_CHARS) if e.data else ""}
        for i, e in enumerate(trace)
    ]


def verdict_rows(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """Recorded verdicts, newest first, for a table."""
    rows = []
    for v in reversed(verdicts):
        marked = [c for c in v.citations if c.verdict]
        rows.append({
            "time (UTC)": v.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
            "reviewer": v.reviewer, "strategy": v.strategy + (f" → {v.route}" if v.route else ""),
            "verdict": v.verdict, "comment": v.comment,
            "citations": ", ".join(f"[{i}] {c.verdict}" for i, c in enumerate(v.citations, 1)
                                   if c.verdict) if marked else "",
            "answer": _preview(v.answer, ANSWER_PREVIEW_CHARS),
        })
    return rows

"""Scoring one run: accuracy (or F1/ROUGE), citation precision and recall, and cost.

- ``contains``: 1 if the gold value is in the answer (as a whole number), else 0;
- ``all_values``: the fraction of the gold values in the answer;
- ``no_distractor``: 1 if the gold value is in the answer and no distractor value is;
- ``token_f1``: SQuAD-style token F1, best over the references;
- ``rouge``: ROUGE-L F-measure against the reference (ROUGE-1/2 recorded too).

Citation precision is verified / (verified + dropped) quotes: the pipeline shows only
quotes it located in the source and counts the ones it dropped. Citation recall is the
fraction of the task's gold evidence sentences covered by a citation (their spans overlap
by at least half of the shorter of the two).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.evaluation.tasks import NEEDLE_KINDS, EvalTask, Evidence
from longdoc.pipeline.models import Answer, Citation

Status = Literal["ok", "refused", "error"]
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_DIGIT_GROUP = re.compile(r"(?<=\d)[,\u202f\u00a0](?=\d{3}\b)")


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's answer normalization)."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """Token F1 of ``prediction`` against the best-matching reference."""
    pred = normalize_text(prediction).split()
    best = 0.0
    for reference in references:
        ref = normalize_text(reference).split()
        common = sum((Counter(pred) & Counter(ref)).values())
        if common:
            precision, recall = common / len(pred), common / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    try:
        from rouge_score import rouge_scorer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError("ROUGE scoring needs the rouge-score package: "
                         "pip install 'longdoc[eval]'") from exc
    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (stemmed)."""
    scores = _rouge_scorer().score(reference, prediction)
    return {name: round(score.fmeasure, 4) for name, score in scores.items()}


def contains_value(answer: str, value: str) -> bool:
    """Whether ``value`` occurs in ``answer`` as a whole number ("48,213" counts as 48213)."""
    answer = _DIGIT_GROUP.sub("", answer)
    return re.search(rf"(?<![\w]){re.escape(value)}(?![\w])", answer, re.I) is not None


def score_answer(task: EvalTask, answer: str) -> tuple[float, dict[str, float]]:
    """The task's score of ``answer`` (0-1) and its details."""
    if task.scoring in ("contains", "all_values", "no_distractor"):
        found = [v for v in task.answers if contains_value(answer, v)]
        chosen = [v for v in task.distractors if contains_value(answer, v)]
        details = {"values_found": float(len(found)), "values": float(len(task.answers))}
        if task.scoring == "all_values":
            return len(found) / len(task.answers), details
        if task.scoring == "no_distractor":
            details["distractors_in_answer"] = float(len(chosen))
            return float(bool(found) and not chosen), details
        return float(bool(found)), details
    if task.scoring == "token_f1":
        f1 = token_f1(answer, task.answers)
        return f1, {"token_f1": round(f1, 4), **rouge(answer, task.answers[0])}
    scores = rouge(answer, task.answers[0])
    return scores["rougeL"], scores


def citation_precision(verified: int, dropped: int) -> float | None:
    """Shown (verified) citations over all quotes offered; None when none was offered."""
    total = verified + dropped
    return None if total == 0 else verified / total


def _covers(citation: Citation, evidence: Evidence) -> bool:
    overlap = min(citation.end, evidence.end) - max(citation.start, evidence.start)
    shorter = min(citation.end - citation.start, evidence.end - evidence.start)
    return shorter > 0 and overlap >= 0.5 * shorter


def citation_recall(evidence: Sequence[Evidence], citations: Sequence[Citation]) -> float | None:
    """The fraction of gold evidence sentences some citation covers; None without evidence.

    The citations must all be of the task's one document (the runner asks about one file).
    """
    if not evidence:
        return None
    covered = sum(any(_covers(c, e) for c in citations) for e in evidence)
    return covered / len(evidence)


class EvalResult(BaseModel):
    """One line of a results JSONL: a task run with one strategy, scored."""

    task_id: str
    digest: str
    kind: str
    length: int
    tokens: int
    depth: float | None = None
    sample: int = 0
    strategy: str
    status: Status = "ok"
    error: str | None = None
    route: str | None = Field(None, description="auto: the strategy it chose")
    question: str | None = None
    expected: list[str] = Field(default_factory=list, description="Gold values (needles)")
    answer: str = ""
    score: float | None = Field(None, description="0-1: accuracy, F1 or ROUGE-L by task")
    details: dict[str, float] = Field(default_factory=dict)
    citations: int = 0
    dropped_quotes: int = 0
    citation_precision: float | None = None
    citation_recall: float | None = None
    supported: bool | None = Field(
        None, description="Needle tasks: full score and a citation covers gold evidence")
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    wall_s: float = 0.0
    model: str | None = None
    finished_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(
        timespec="seconds"))

    @property
    def key(self) -> tuple[str, str]:
        return self.digest, self.strategy


MAX_ANSWER_CHARS = 2000


def evaluate(task: EvalTask, strategy: str, answer: Answer, wall_s: float,
             model: str | None = None) -> EvalResult:
    """Score ``answer`` (the pipeline's reply to ``task``) into a results line."""
    score, details = score_answer(task, answer.answer)
    recall = citation_recall(task.evidence, answer.citations)
    needle = task.kind in NEEDLE_KINDS
    usage = answer.usage
    return EvalResult(
        **_task_fields(task, strategy), route=(answer.route or {}).get("chosen"),
        answer=answer.answer[:MAX_ANSWER_CHARS], score=round(score, 4), details=details,
        citations=len(answer.citations), dropped_quotes=answer.dropped_quotes,
        citation_precision=citation_precision(len(answer.citations), answer.dropped_quotes),
        citation_recall=recall,
        supported=(score == 1.0 and bool(recall)) if needle else None,
        llm_calls=usage.llm_calls, prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens, cache_hits=usage.cache_hits,
        wall_s=round(wall_s, 3), model=model,
    )


def failed(task: EvalTask, strategy: str, status: Status, error: str, wall_s: float,
           model: str | None = None) -> EvalResult:
    """A results line for a run that did not answer (refused or failed)."""
    return EvalResult(**_task_fields(task, strategy), status=status, error=error,
                      wall_s=round(wall_s, 3), model=model)


def _task_fields(task: EvalTask, strategy: str) -> dict[str, Any]:
    return {"task_id": task.id, "digest": task.digest, "kind": task.kind,
            "length": task.length, "tokens": task.tokens, "depth": task.depth,
            "sample": task.sample, "strategy": strategy, "question": task.question,
            "expected": task.answers if task.kind in NEEDLE_KINDS else []}

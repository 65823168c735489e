"""Scoring one run, strictly: accuracy (or F1/ROUGE), citations against gold evidence, cost.

Answers to planted tasks are scored by the values they offer. The *other values* of an
answer are the planted distractor values it contains and every other whole number shaped
like a gold value (as many digits: the generator's values of a task all share that
shape), so an answer that offers the gold value among other candidates is not right:

- ``contains``: 1 if the gold value is in the answer (as a whole number) and no other
  value is, else 0;
- ``no_distractor``: the same (distractor and conflict tasks);
- ``all_values``: gold values found / (gold values + other values offered);
- ``token_f1``: SQuAD-style token F1, best over the references (exact match recorded too);
- ``rouge``: ROUGE-L F-measure against the reference (ROUGE-1/2 recorded too).

Citations are judged against the gold evidence spans the generator planted (as
L-CiteEval does): a citation *covers* an evidence span when their character spans
overlap by at least half of the shorter one. Citation precision = cited spans covering
some gold span / cited spans (None without citations); citation recall = gold spans
covered by some citation. ``supported``: a right answer (score 1) with at least one
citation covering gold evidence. Tasks without gold spans (``qa``, ``summary``) have
None in all three.

Each results line stores the cited spans and the gold spans, so :func:`rescore`
recomputes every column from the line alone. Lines written before the spans were stored
(``cited_spans`` is None) are rescored strictly all the same and keep their recall; their
stored precision (verified / offered quotes) says nothing about support and is replaced
by the gold-evidence precision where their recall and citation count determine it
(recall 0: no citation covers gold evidence, precision 0; one citation with recall above
0: precision 1), else None (unknown).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.evaluation.tasks import PLANTED_KINDS, SCORING, EvalTask, Scoring
from longdoc.pipeline.models import Answer

Status = Literal["ok", "refused", "error"]
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_DIGIT_GROUP = re.compile(r"(?<=\d)[,\u202f\u00a0](?=\d{3}\b)")
_NUMBER = re.compile(r"(?<!\w)\d+(?!\w)")


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


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 if ``prediction`` equals a reference after SQuAD normalization, else 0.0."""
    pred = normalize_text(prediction)
    return float(any(pred == normalize_text(r) for r in references))


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


def other_values(answer: str, gold: Sequence[str], distractors: Sequence[str] = ()) -> list[str]:
    """The values ``answer`` offers besides the gold ones: planted ``distractors`` it
    contains and whole numbers with as many digits as a (numeric) gold value."""
    shapes = {len(v) for v in gold if v.isdigit()}
    numbers = {m.group() for m in _NUMBER.finditer(_DIGIT_GROUP.sub("", answer))
               if len(m.group()) in shapes}
    planted = {v for v in distractors if contains_value(answer, v)}
    return sorted((numbers | planted) - set(gold))


def score_values(scoring: Scoring, answers: Sequence[str], distractors: Sequence[str],
                 answer: str) -> tuple[float, dict[str, float]]:
    """Score ``answer`` by ``scoring`` against gold ``answers`` (0-1) and its details."""
    if scoring in ("contains", "all_values", "no_distractor"):
        found = [v for v in answers if contains_value(answer, v)]
        others = other_values(answer, answers, distractors)
        details = {"values_found": float(len(found)), "values": float(len(answers)),
                   "other_values": float(len(others))}
        if scoring == "all_values":
            return len(found) / (len(answers) + len(others)), details
        if scoring == "no_distractor":
            details["distractors_in_answer"] = float(
                sum(contains_value(answer, v) for v in distractors))
        return float(bool(found) and not others), details
    if scoring == "token_f1":
        f1 = token_f1(answer, answers)
        return f1, {"token_f1": round(f1, 4), "exact_match": exact_match(answer, answers),
                    **rouge(answer, answers[0])}
    scores = rouge(answer, answers[0])
    return scores["rougeL"], scores


def score_answer(task: EvalTask, answer: str) -> tuple[float, dict[str, float]]:
    """The task's score of ``answer`` (0-1) and its details."""
    return score_values(task.scoring, task.answers, task.distractors, answer)


class Spanned(Protocol):
    """Anything with a character span: citations, gold evidence, stored spans."""

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


class Span(BaseModel):
    """A character span of a task's document, as stored in a results line."""

    source: str = Field(description="The document's file name")
    start: int
    end: int


def _covers(citation: Spanned, evidence: Spanned) -> bool:
    overlap = min(citation.end, evidence.end) - max(citation.start, evidence.start)
    shorter = min(citation.end - citation.start, evidence.end - evidence.start)
    return shorter > 0 and overlap >= 0.5 * shorter


def citation_precision(evidence: Sequence[Spanned], citations: Sequence[Spanned]
                       ) -> float | None:
    """The fraction of citations that cover some gold evidence span; None without gold
    evidence or without citations."""
    if not evidence or not citations:
        return None
    return sum(any(_covers(c, e) for e in evidence) for c in citations) / len(citations)


def citation_recall(evidence: Sequence[Spanned], citations: Sequence[Spanned]) -> float | None:
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
    distractors: list[str] = Field(default_factory=list, description="Planted wrong values")
    conflict_kind: str | None = None
    conflict_split: str | None = None
    answer: str = ""
    score: float | None = Field(None, description="0-1: accuracy, F1 or ROUGE-L by task")
    details: dict[str, float] = Field(default_factory=dict)
    citations: int = 0
    dropped_quotes: int = 0
    unsupported_citations: int = Field(
        0, description="Quotes the pipeline located but dropped as not supporting the answer")
    claimed_supported: bool | None = Field(
        None, description="The pipeline's own verdict that a citation supports its answer")
    citation_precision: float | None = Field(
        None, description="Citations covering gold evidence / citations")
    citation_recall: float | None = Field(None, description="Gold evidence spans cited")
    supported: bool | None = Field(
        None, description="Planted tasks: full score and a citation covers gold evidence")
    cited_spans: list[Span] | None = Field(
        None, description="The citations' spans; None in lines from before they were stored")
    evidence_spans: list[Span] | None = Field(None, description="The gold evidence spans")
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
    usage = answer.usage
    name = task.file_name()
    result = EvalResult(
        **_task_fields(task, strategy), route=(answer.route or {}).get("chosen"),
        answer=answer.answer[:MAX_ANSWER_CHARS], citations=len(answer.citations),
        dropped_quotes=answer.dropped_quotes,
        unsupported_citations=answer.unsupported_citations,
        claimed_supported=answer.supported,
        cited_spans=[Span(source=name, start=c.start, end=c.end) for c in answer.citations],
        llm_calls=usage.llm_calls, prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens, cache_hits=usage.cache_hits,
        wall_s=round(wall_s, 3), model=model,
    )
    return rescore(result, task)


def _derived_precision(citations: int, recall: float | None) -> float | None:
    """Gold-evidence precision from a line's citation count and recall, where they
    determine it (see the module's docstring); else None."""
    if recall is None or citations == 0:
        return None
    if recall == 0:
        return 0.0
    return 1.0 if citations == 1 else None


def rescore(result: EvalResult, task: EvalTask | None = None) -> EvalResult:
    """``result`` with its score, citation columns and ``supported`` computed (again) by
    the rules above, from ``task`` if given, else from the line alone.

    Without ``task`` a reference task's score is kept (its references are not stored).
    """
    if result.status != "ok":
        return result
    planted = result.kind in PLANTED_KINDS
    update: dict[str, Any] = {}
    if task is not None or planted:
        score, details = (score_answer(task, result.answer) if task is not None else
                          score_values(SCORING[result.kind], result.expected,
                                       result.distractors, result.answer))
        update |= {"score": round(score, 4), "details": details}
    final_score = update.get("score", result.score)
    evidence = task.evidence if task is not None else result.evidence_spans
    if result.cited_spans is None:  # a line from before spans were stored
        recall = result.citation_recall
        update["citation_precision"] = _derived_precision(result.citations, recall)
    else:
        update["citation_precision"] = citation_precision(evidence or [], result.cited_spans)
        recall = update["citation_recall"] = citation_recall(evidence or [], result.cited_spans)
    update["supported"] = (final_score == 1.0 and bool(recall)) if planted else None
    return result.model_copy(update=update)


Outcome = Literal["right, supported", "right, unsupported", "wrong", "not found",
                  "not answered"]
OUTCOMES: tuple[Outcome, ...] = ("right, supported", "right, unsupported", "wrong",
                                 "not found", "not answered")


def outcome(result: EvalResult) -> Outcome:
    """What a (rescored) run of a planted single-value task came to: the right value alone
    with or without a citation on the gold evidence, a wrong one (another value, or the
    right one among others, or any other number), no number at all, or no answer
    (refused or failed)."""
    if result.status != "ok":
        return "not answered"
    if result.score == 1.0:
        return "right, supported" if result.supported else "right, unsupported"
    return "wrong" if _NUMBER.search(_DIGIT_GROUP.sub("", result.answer)) else "not found"


def failed(task: EvalTask, strategy: str, status: Status, error: str, wall_s: float,
           model: str | None = None) -> EvalResult:
    """A results line for a run that did not answer (refused or failed)."""
    return EvalResult(**_task_fields(task, strategy), status=status, error=error,
                      wall_s=round(wall_s, 3), model=model)


def _task_fields(task: EvalTask, strategy: str) -> dict[str, Any]:
    planted = task.kind in PLANTED_KINDS
    name = task.file_name()
    return {"task_id": task.id, "digest": task.digest, "kind": task.kind,
            "length": task.length, "tokens": task.tokens, "depth": task.depth,
            "sample": task.sample, "strategy": strategy, "question": task.question,
            "expected": task.answers if planted else [], "distractors": task.distractors,
            "conflict_kind": task.conflict_kind, "conflict_split": task.conflict_split,
            "evidence_spans": [Span(source=name, start=e.start, end=e.end)
                               for e in task.evidence]}

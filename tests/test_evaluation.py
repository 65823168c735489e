"""The eval harness: task generation, scoring, the resumable runner, reports and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longdoc.pipeline.cli import app
from longdoc.pipeline.errors import InputError
from longdoc.pipeline.evaluation import (
    generate_tasks,
    markdown_table,
    read_results,
    run_eval,
    run_tasks,
    write_report,
)
from longdoc.pipeline.evaluation.metrics import (
    EvalResult,
    citation_precision,
    citation_recall,
    contains_value,
    evaluate,
    rescore,
    score_answer,
    token_f1,
)
from longdoc.pipeline.evaluation.tasks import (
    DISTRACTORS,
    MULTI_KEYS,
    MULTI_VALUES,
    Corpus,
    Evidence,
    needle_task,
    parse_length,
    reference_tasks,
)
from longdoc.pipeline.models import Answer, Citation
from longdoc.pipeline.tokens import count_tokens
from tests.conftest import real_settings, sim_env, sim_settings

SENTENCES = [
    "The harbour was dredged in spring and the fishing fleet returned to the old quay.",
    "Merchants along the waterfront reported a busy season and ordered new ropes.",
    "The council debated the budget for three long evenings before the final vote.",
    "The library reopened in autumn with a larger reading room and a quiet garden.",
    "Winter came early that year and the river froze by the middle of December.",
    "The orchard on the hill gave more apples than anyone in the valley remembered.",
    "A travelling circus camped by the mill pond for a week and then moved north.",
]
FACT = re.compile(r"(?:The|One of the) special magic numbers? for [\w-]+ is (\d+)\.")


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A user's folder of .txt and .md prose (~9,000 tokens), and a file to ignore."""
    return write_corpus(tmp_path)


def write_corpus(tmp_path: Path) -> Path:
    """``corpus_dir``'s folder, written under ``tmp_path``."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(6):
        lines = [f"{SENTENCES[(i + j) % len(SENTENCES)]} Entry {i}-{j} was filed."
                 for j in range(60)]
        paragraphs = ["\n".join(lines[k:k + 6]) for k in range(0, 60, 6)]
        suffix = ".md" if i % 2 else ".txt"
        (folder / f"doc{i}{suffix}").write_text("\n\n".join(paragraphs), encoding="utf-8")
    (folder / "notes.csv").write_text("a,b\n1,2\n")
    return folder


def model(messages: list[dict[str, str]]) -> str:
    """A sim model that answers with (and quotes) the first needle fact in its prompt."""
    match = FACT.search(messages[-1]["content"])
    if match:
        return f'Answer: {match.group(1)}\nQuote: "{match.group(0)}"\nConfidence: high'
    return "Answer: not found"


def chats(server) -> list[dict]:
    """The chat requests a sim server got (not probes of other endpoints)."""
    return [r for r in server.requests if "messages" in r]


def token_depth(text: str, start: int) -> float:
    return count_tokens(text[:start]) / count_tokens(text)


# --- task generation ---------------------------------------------------------------------


def test_generation_is_deterministic_from_the_seed(corpus_dir: Path) -> None:
    kinds = ["single_needle", "multi_key", "multi_value", "two_hop", "distractor"]
    first = generate_tasks(kinds, data=corpus_dir, lengths=[2000], depths=[0.3], seed=5)
    again = generate_tasks(kinds, data=corpus_dir, lengths=[2000], depths=[0.3], seed=5)
    other = generate_tasks(kinds, data=corpus_dir, lengths=[2000], depths=[0.3], seed=6)
    assert [t.model_dump() for t in first] == [t.model_dump() for t in again]
    assert len({t.digest for t in first}) == len(kinds)
    for a, b in zip(first, other, strict=True):
        assert a.id == b.id and a.digest != b.digest and a.answers != b.answers
    assert all("notes.csv" not in s for t in first for s in t.sources)


@pytest.mark.parametrize("depth", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_single_needle_is_at_its_depth(corpus_dir: Path, depth: float) -> None:
    corpus = Corpus.from_folder(corpus_dir)
    task = needle_task("single_needle", corpus, 4000, depth, seed=1)
    [evidence] = task.evidence
    assert task.text[evidence.start:evidence.end] == evidence.text
    assert task.text.count(task.answers[0]) == 1 and task.answers[0] in evidence.text
    assert abs(token_depth(task.text, evidence.start) - depth) < 0.03
    assert abs(evidence.depth - depth) < 0.03
    assert 0.95 * 4000 <= task.tokens <= 4000 == task.length
    assert task.tokens == count_tokens(task.text)
    assert task.question == f"What is the special magic number for {task.text[evidence.start:].split()[5]}?"  # noqa: E501


def test_needles_on_real_text_at_128k(test_data: Path) -> None:
    """Inaugural and State of the Union prose (the default corpus's kinds, from the texts
    the tests carry) at the longest length."""
    [task] = generate_tasks(["single_needle"], data=test_data, lengths=[128000], depths=[0.75],
                            globs=["inaugural/*.txt", "state_union/*.txt"])
    assert all(s.startswith(("inaugural/", "state_union/")) for s in task.sources)
    assert 0.99 * 128000 <= task.tokens <= 128000
    assert abs(token_depth(task.text, task.evidence[0].start) - 0.75) < 0.01


def test_multi_key_and_multi_value(corpus_dir: Path) -> None:
    corpus = Corpus.from_folder(corpus_dir)
    keys = needle_task("multi_key", corpus, 3000, 0.2, seed=2)
    assert len(keys.evidence) == MULTI_KEYS and keys.answers == [keys.evidence[0].text[-6:-1]]
    named = [re.search(r"for ([\w-]+) is", e.text).group(1) for e in keys.evidence]
    assert len(set(named)) == MULTI_KEYS and named[0] in keys.question
    values = needle_task("multi_value", corpus, 3000, 0.2, seed=2)
    assert len(values.answers) == MULTI_VALUES == len(set(values.answers))
    assert values.question.startswith("What are all the special magic numbers for")
    for value, evidence in zip(values.answers, values.evidence, strict=True):
        assert value in evidence.text and values.text[evidence.start:evidence.end] == \
            evidence.text


def test_two_hop_has_both_parts_half_a_document_apart(corpus_dir: Path) -> None:
    task = needle_task("two_hop", Corpus.from_folder(corpus_dir), 4000, 0.3, seed=3)
    pointer, target = task.evidence
    person = re.search(r"the room number of (.+)\.$", pointer.text).group(1)
    assert target.text == f"{person} sleeps in room {task.answers[0]}."
    assert task.answers[0] not in pointer.text and task.answers[0] in target.text
    for e in task.evidence:
        assert task.text[e.start:e.end] == e.text
    assert abs(token_depth(task.text, pointer.start) - 0.3) < 0.03
    assert abs(token_depth(task.text, target.start) - 0.8) < 0.03


def test_distractors_are_present_and_not_evidence(corpus_dir: Path) -> None:
    task = needle_task("distractor", Corpus.from_folder(corpus_dir), 4000, 0.5, seed=4)
    assert len(task.distractors) == DISTRACTORS and task.answers[0] not in task.distractors
    key = re.search(r"for ([\w-]+)\?", task.question).group(1)
    for value in task.distractors:
        [sentence] = [s for s in re.split(r"(?<=\.) ", task.text) if value in s]
        assert key in sentence and re.search(r"might be|rumour|guessed", sentence)
    [evidence] = task.evidence
    assert evidence.text == f"The special magic number for {key} is {task.answers[0]}."
    assert task.text.count(task.answers[0]) == 1


def test_bad_parameters_and_data_are_input_errors(corpus_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown task"):
        generate_tasks(["needle"], data=corpus_dir)
    with pytest.raises(InputError, match="out of range"):
        generate_tasks(["single_needle"], data=corpus_dir, lengths=[100])
    with pytest.raises(InputError, match="depth"):
        generate_tasks(["single_needle"], data=corpus_dir, depths=[1.5])
    with pytest.raises(InputError, match=r"only \d+ tokens"):
        generate_tasks(["single_needle"], data=corpus_dir, lengths=[100_000])
    with pytest.raises(InputError, match="no readable"):
        generate_tasks(["single_needle"], data=tmp_path / "corpus", globs=["*.pdf"])
    with pytest.raises(InputError, match="not found"):
        generate_tasks(["single_needle"], data=tmp_path / "missing")
    with pytest.raises(InputError, match="JSONL"):
        generate_tasks(["qa"], data=corpus_dir)
    assert [parse_length(v) for v in ("8000", "8k", "1.5k", "1M")] == [8000, 8000, 1500,
                                                                       1_000_000]


def test_reference_tasks_from_jsonl(corpus_dir: Path, tmp_path: Path) -> None:
    lines = [{"input": " ".join(SENTENCES) * n, "instructions": [f"What happened {n}?"],
              "outputs": [f"The harbour was dredged {n}."]} for n in (5, 5, 10, 60)]
    path = tmp_path / "ref.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    qa = reference_tasks("qa", [path], [1000, 2000], samples=5)
    # The duplicate line is dropped; the 60× input (~5,000 tokens) fits no length.
    assert sorted((t.length, t.question) for t in qa) == [
        (1000, "What happened 5?"), (2000, "What happened 10?")]
    [summary] = reference_tasks("summary", [path], [1000], samples=1)
    assert summary.question is None and summary.scoring == "rouge" and summary.words == 50
    path.write_text('{"input": "x", "outputs": ["y"]}\n')
    with pytest.raises(InputError, match=r"ref\.jsonl line 1"):
        reference_tasks("qa", [path], [1000], samples=1)


# --- scoring -------------------------------------------------------------------------------


def test_values_are_matched_as_whole_numbers() -> None:
    assert contains_value("The number is 48,213.", "48213")
    assert contains_value("48213", "48213")
    assert not contains_value("It is 148213.", "48213")
    assert not contains_value("It is 4821.", "48213")


def test_scores_by_task_kind(corpus_dir: Path) -> None:
    corpus = Corpus.from_folder(corpus_dir)
    single = needle_task("single_needle", corpus, 2000, 0.5)
    assert score_answer(single, f"It is {single.answers[0]}.")[0] == 1.0
    assert score_answer(single, "It is 11111.")[0] == 0.0
    values = needle_task("multi_value", corpus, 2000, 0.5)
    assert score_answer(values, f"{values.answers[0]} and {values.answers[2]}")[0] == \
        pytest.approx(2 / 3)
    trap = needle_task("distractor", corpus, 2000, 0.5)
    right, wrong = trap.answers[0], trap.distractors[0]
    assert score_answer(trap, right)[0] == 1.0
    score, details = score_answer(trap, f"{right}, or maybe {wrong}")
    assert score == 0.0 and details["distractors_in_answer"] == 1
    assert score_answer(trap, wrong)[0] == 0.0


def test_token_f1_and_rouge() -> None:
    assert token_f1("The cat sat.", ["cat sat on the mat", "a dog"]) == pytest.approx(2 / 3)
    assert token_f1("nothing alike", ["cat sat"]) == 0.0
    [qa] = [t for t in _reference_pair() if t.kind == "qa"]
    score, details = score_answer(qa, qa.answers[0])
    assert score == 1.0 and details["rougeL"] == 1.0
    [summary] = [t for t in _reference_pair() if t.kind == "summary"]
    score, details = score_answer(summary, "The harbour was dredged in spring.")
    assert 0 < score < 1 and details["rouge1"] >= score


def _reference_pair() -> list:
    from longdoc.pipeline.evaluation.tasks import EvalTask

    common = {"length": 1000, "tokens": 10, "text": "x", "digest": "d"}
    return [
        EvalTask(id="qa", kind="qa", question="q?", answers=["the harbour was dredged"],
                 scoring="token_f1", **common),
        EvalTask(id="s", kind="summary", answers=["The harbour was dredged and the fleet "
                                                  "returned to the quay in the spring."],
                 scoring="rouge", words=50, **common),
    ]


def cite(start: int, end: int) -> Citation:
    return Citation(source="doc.txt", page=None, start=start, end=end, quote="q")


def test_citation_precision_and_recall() -> None:
    gold = [Evidence(text="a" * 40, start=100, end=140, depth=0.1),
            Evidence(text="b" * 40, start=500, end=540, depth=0.5)]
    assert citation_precision(gold, [cite(100, 140), cite(500, 540)]) == 1.0
    assert citation_precision(gold, [cite(110, 130), cite(200, 260), cite(0, 20)]) == \
        pytest.approx(1 / 3)  # one of three quotes is on gold evidence
    assert citation_precision(gold, [cite(135, 200)]) == 0.0  # only touches it
    assert citation_precision(gold, []) is None and citation_precision([], [cite(0, 9)]) is None
    assert citation_recall(gold, []) == 0.0
    assert citation_recall(gold, [cite(110, 130)]) == 0.5  # part of the first sentence
    assert citation_recall(gold, [cite(0, 1000)]) == 1.0  # a long quote holding both
    assert citation_recall(gold, [cite(135, 200)]) == 0.0  # only touches the first
    assert citation_recall([], [cite(0, 10)]) is None


def test_an_answer_offering_other_values_is_wrong(corpus_dir: Path) -> None:
    """The gold value among other candidates scores 0 (it scored 1 before)."""
    corpus = Corpus.from_folder(corpus_dir)
    single = needle_task("single_needle", corpus, 2000, 0.5)
    gold = single.answers[0]
    for answer in (f"{gold} or 11111", f"Candidates: 48,213, {gold}, 90210.",
                   f"The codes are {gold}\n12345\n67890"):
        score, details = score_answer(single, answer)
        assert score == 0.0 and details["values_found"] == 1 and details["other_values"] >= 1
    # The value repeated, and numbers of another shape (a year, a page), stay right.
    assert score_answer(single, f"It is {gold}; yes, {gold} (page 3, 1962).")[0] == 1.0
    values = needle_task("multi_value", corpus, 2000, 0.5)
    listed = ", ".join([*values.answers, "11111"])
    assert score_answer(values, listed)[0] == pytest.approx(3 / 4)
    hop = needle_task("two_hop", corpus, 2000, 0.5)
    other = "1234" if hop.answers[0] != "1234" else "4321"
    assert score_answer(hop, f"Room {hop.answers[0]} or room {other}")[0] == 0.0


def test_a_wrong_answer_with_quotes_off_the_gold_evidence_is_not_precise(
        corpus_dir: Path) -> None:
    """Quotes that exist in the source but are not the gold evidence score precision 0
    (they scored 1.00 before, being verified), and a right answer needs a quote on the
    gold evidence to be supported."""
    task = needle_task("single_needle", Corpus.from_folder(corpus_dir), 2000, 0.5)
    [gold] = task.evidence
    off = [cite(0, 80), cite(gold.end + 50, gold.end + 120)]
    wrong = evaluate(task, "mapreduce", Answer(answer="10", strategy="mapreduce",
                                               citations=off), 1.0)
    assert wrong.score == 0.0 and wrong.citation_precision == 0.0
    assert wrong.citation_recall == 0.0 and wrong.supported is False
    unsupported = evaluate(task, "rag", Answer(answer=task.answers[0], strategy="rag",
                                               citations=off), 1.0)
    assert unsupported.score == 1.0 and unsupported.supported is False
    right = evaluate(task, "rag", Answer(answer=task.answers[0], strategy="rag",
                                         citations=[*off, cite(gold.start, gold.end)],
                                         supported=True, unsupported_citations=2), 1.0)
    assert right.claimed_supported is True and right.unsupported_citations == 2
    assert right.supported is True and right.citation_recall == 1.0
    assert right.citation_precision == pytest.approx(1 / 3)
    assert [(s.start, s.end) for s in right.cited_spans] == [
        (0, 80), (gold.end + 50, gold.end + 120), (gold.start, gold.end)]
    assert {s.source for s in right.cited_spans} == {task.file_name()}
    assert [(s.start, s.end) for s in right.evidence_spans] == [(gold.start, gold.end)]


def test_a_results_line_rescores_alone_and_old_lines_still_read(
        corpus_dir: Path, tmp_path: Path) -> None:
    corpus = Corpus.from_folder(corpus_dir)
    task, other = (needle_task("distractor", corpus, 2000, d) for d in (0.5, 0.25))
    [gold] = task.evidence
    answer = Answer(answer=f"{task.answers[0]} or {task.distractors[0]}", strategy="rag",
                    citations=[cite(gold.start, gold.end), cite(0, 40)])
    result = evaluate(task, "rag", answer, 1.0)
    line = EvalResult.model_validate_json(result.model_dump_json())
    assert rescore(line) == rescore(line, task) == result
    assert result.score == 0.0 and result.citation_precision == 0.5 and not result.supported
    # A line written before spans were stored: its answer is rescored strictly, its old
    # precision (verified / offered quotes) is dropped (two citations, one on the gold
    # evidence: unknown) and its recall kept.
    old = json.loads(result.model_dump_json(exclude={"cited_spans", "evidence_spans",
                                                     "distractors", "conflict_kind",
                                                     "conflict_split"}))
    old |= {"score": 1.0, "citation_precision": 1.0, "citation_recall": 1.0,
            "supported": True, "details": {}, "digest": other.digest}
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n")
    [read] = read_results(path)
    assert read.cited_spans is None
    again = rescore(read)
    assert again.score == 0.0 and again.supported is False
    assert again.citation_precision is None and again.citation_recall == 1.0
    # Where an old line's recall and citation count determine the precision, it is given.
    assert rescore(read.model_copy(update={"citation_recall": 0.0})).citation_precision == 0
    assert rescore(read.model_copy(update={"citations": 1})).citation_precision == 1.0
    assert rescore(read.model_copy(update={"citations": 0, "citation_recall": 0.0})
                   ).citation_precision is None
    # In the table the old line counts with a strict score, and precision says it is
    # over the one run that stored its spans.
    table = markdown_table([read, result])
    assert "| distractor | 2,000 | rag | 2 | 0.00 | 0/2 | 0.50 (1 of 2) | 1.00 |" in table


# --- the runner ----------------------------------------------------------------------------


def test_runs_are_recorded_and_resumed(sim, tmp_path: Path, corpus_dir: Path) -> None:
    server = sim(model, context_window=2048)
    settings = sim_settings(server, tmp_path, chunk_tokens=400, chunk_overlap=0,
                            use_cache=False)
    tasks = generate_tasks(["single_needle", "distractor"], data=corpus_dir, lengths=[1500],
                           depths=[0.2, 0.8])
    results = tmp_path / "out" / "results.jsonl"
    first = run_tasks(tasks, ["direct", "mapreduce"], results, settings=settings,
                      progress=False)
    assert len(first) == 8 and len(results.read_text().splitlines()) == 8
    # direct over the 2,048-token window is a recorded refusal, not a crash.
    refused = [r for r in first if r.strategy == "direct"]
    assert all(r.status == "refused" and r.error.startswith("over budget") for r in refused)
    answered = [r for r in first if r.strategy == "mapreduce"]
    assert all(r.status == "ok" and r.score == 1.0 and r.supported for r in answered)
    assert all(r.citation_precision == 1.0 and r.citation_recall == 1.0 for r in answered)
    assert all(r.llm_calls >= 4 and r.prompt_tokens > 1500 and r.wall_s > 0 for r in answered)
    assert all(r.model == "sim-model" for r in first)
    calls = len(chats(server))
    # A rerun skips everything already there; a lost line (and a cut one) is redone.
    assert run_tasks(tasks, ["direct", "mapreduce"], results, settings=settings,
                     progress=False) == []
    assert len(chats(server)) == calls
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])
    again = run_tasks(tasks, ["direct", "mapreduce"], results, settings=settings,
                      progress=False)
    assert [(r.task_id, r.strategy) for r in again] == [(first[-1].task_id,
                                                          first[-1].strategy)]
    assert len(read_results(results)) == 8
    # A failed run (here: marked so by hand) is retried; the report keeps the last line.
    lines = results.read_text().splitlines()
    failed_line = json.loads(lines[-1]) | {"status": "error", "error": "backend: timed out"}
    results.write_text("\n".join([*lines[:-1], json.dumps(failed_line)]) + "\n")
    retried = run_tasks(tasks, ["direct", "mapreduce"], results, settings=settings,
                        progress=False)
    assert [(r.task_id, r.strategy, r.status) for r in retried] == [
        (first[-1].task_id, first[-1].strategy, "ok")]
    assert "| 1,500 | mapreduce | 2 | 1.00 |" in markdown_table(read_results(results))


def test_reference_tasks_run_and_score(sim, tmp_path: Path) -> None:
    """JSONL QA (token F1) and summaries (ROUGE) through the runner, with ``direct``."""
    text = "\n\n".join(SENTENCES * 4)
    path = tmp_path / "ref.jsonl"
    path.write_text(json.dumps({"input": text, "instructions": ["When was the harbour dredged?"],
                                "outputs": ["It was dredged in spring."]}) + "\n")

    def reply(messages: list[dict[str, str]]) -> str:
        if "summary" in messages[-1]["content"]:
            return f"The harbour was dredged and the council voted.\nQuote: {SENTENCES[0]}"
        return f"Answer: The harbour was dredged in spring.\nQuote: {SENTENCES[0]}"

    server = sim(reply)
    tasks = generate_tasks(["qa", "summary"], data=tmp_path, lengths=[1000], reference=[path])
    results = run_tasks(tasks, ["direct"], tmp_path / "r.jsonl", progress=False,
                        settings=sim_settings(server, tmp_path, use_cache=False))
    qa, summary = sorted(results, key=lambda r: r.kind)
    assert qa.kind == "qa" and qa.status == "ok" and qa.expected == []
    # fitted to the question: "dredged in spring" vs "it was dredged in spring": P 1, R 3/5
    assert qa.score == pytest.approx(0.75)
    assert {"token_f1", "rouge1", "rouge2", "rougeL"} <= set(qa.details)
    assert qa.citation_recall is None and qa.supported is None and qa.citations == 1
    assert qa.citation_precision is None  # no gold spans to judge the citation against
    assert [(s.start, s.end) for s in qa.cited_spans] == [(0, len(SENTENCES[0]))]
    assert summary.kind == "summary" and summary.status == "ok" and summary.answer
    assert summary.score == summary.details["rougeL"] and 0 < summary.score < 1


def test_run_eval_writes_the_report(sim, tmp_path: Path, corpus_dir: Path) -> None:
    server = sim(model)
    settings = sim_settings(server, tmp_path, chunk_tokens=600, chunk_overlap=0,
                            use_cache=False, embedder="hash")
    run = run_eval(tasks=["single_needle", "multi_value"], strategies=["direct", "rag", "auto"],
                   lengths=[1200, 2400], depths=[0.25, 0.75], data=corpus_dir,
                   results=tmp_path / "eval" / "results.jsonl", settings=settings,
                   progress=False)
    assert run.tasks == 8 and len(run.new) == len(run.results) == 24
    report = run.report
    names = sorted(p.name for p in report.images)
    assert names == ["cost_by_strategy.png", "depth_heatmap_multi_value.png",
                     "depth_heatmap_single_needle.png", "score_by_length.png"]
    for image in report.images:
        data = image.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    markdown = report.markdown.read_text()
    assert "| single_needle | 1,200 | direct | 2 | 1.00 | 2/2 |" in markdown
    assert "| multi_value | 2,400 | rag | 2 |" in markdown
    assert all(f"]({name})" in markdown for name in names)
    page = report.html.read_text()
    assert page.count("<tr>") == 1 + 2 * 2 * 3 and all(f"src='{n}'" in page for n in names)
    assert markdown_table(run.results) in markdown


def test_report_of_refused_and_failed_runs(tmp_path: Path) -> None:
    from longdoc.pipeline.evaluation.metrics import failed
    from longdoc.pipeline.evaluation.tasks import EvalTask

    task = EvalTask(id="single_needle/8000/d0.50/s0", digest="abc", kind="single_needle",
                    length=8000, tokens=7990, depth=0.5, question="q?", answers=["12345"],
                    scoring="contains", text="x")
    results = [failed(task, "direct", "refused", "over budget: ...", 0.1),
               failed(task, "rag", "error", "RuntimeError: boom", 0.1)]
    report = write_report(results, tmp_path / "r")
    markdown = report.markdown.read_text()
    assert "| single_needle | 8,000 | direct | 1 | – | – |" in markdown
    assert "1 refused |" in markdown and "1 failed |" in markdown
    assert all(p.stat().st_size > 0 for p in report.images)


# --- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--lengths", "8x"], "--lengths"),
    (["--tasks", "needle"], "unknown task"),
    (["--strategies", "fast"], "unknown strategy"),
    (["--depths", "2"], "out of range"),
    (["--samples", "0"], "at least 1"),
    (["--data", "missing"], "data folder not found"),
    (["--report-only", "--results", "none.jsonl"], "no results"),
])
def test_cli_bad_input_exits_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["eval", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_runs_and_resumes(sim, tmp_path: Path, corpus_dir: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    server = sim(model)
    for key, value in sim_env(server).items():
        if key.startswith("LONGDOC_"):
            monkeypatch.setenv(key, value)
    args = ["eval", "--data", str(corpus_dir), "--lengths", "1k", "--depths", "0.5",
            "--tasks", "single_needle,distractor", "--strategies", "direct",
            "--results", "out/results.jsonl", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 task(s); 2 new run(s) (2 answered, 0 refused, 0 failed)" in result.output
    assert [json.loads(line)["score"] for line in
            (tmp_path / "out" / "results.jsonl").read_text().splitlines()] == [1.0, 1.0]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "0 new run(s)" in again.output
    assert len(chats(server)) == 2
    only = CliRunner().invoke(app, ["eval", "--report-only", "--results", "out/results.jsonl",
                                    "--report-dir", "rep"])
    assert only.exit_code == 0 and (tmp_path / "rep" / "report.html").is_file()


# --- the real model ------------------------------------------------------------------------


@pytest.mark.real_model
def test_harness_end_to_end_on_the_embedded_model(real_endpoint, tmp_path: Path,
                                                  corpus_dir: Path) -> None:
    """One 4k-token single-needle task with ``direct`` (one call) on SmolLM2-135M."""
    settings = real_settings(real_endpoint, tmp_path)
    run = run_eval(tasks=["single_needle"], strategies=["direct"], lengths=[4000],
                   depths=[0.5], data=corpus_dir, results=tmp_path / "results.jsonl",
                   settings=settings, progress=False)
    [result] = run.new
    assert result.status == "ok" and result.llm_calls == 1 and result.prompt_tokens > 3000
    assert result.score in (0.0, 1.0) and result.answer
    assert result.supported == (result.score == 1.0 and bool(result.citation_recall))
    assert run.report.markdown.is_file() and all(p.stat().st_size for p in run.report.images)


def test_results_md_sections_are_spliced_between_markers() -> None:
    from benchmarks.make_results import splice

    hand = "# Results\n\n## By hand\n\nkept\n"
    once = splice(hand, "eval", "table v1")
    assert once.startswith(hand.rstrip()) and once.count("generated:eval begin") == 1
    twice = splice(once + "\n## Later, by hand\n\nalso kept\n", "eval", "table $1 v2")
    assert "table v1" not in twice and "table $1 v2" in twice
    assert "kept" in twice and "also kept" in twice and twice.index("v2") < twice.index("Later")
    assert splice(twice, "perf", "perf table").count("<!-- generated:") == 4


def test_make_results_rescores_the_stored_lines(corpus_dir: Path) -> None:
    """The eval section's table comes from the stored lines, rescored strictly: a line of
    an older version of its task (same id and gold value, another digest) is matched and
    counted, and how many lines had stored spans is said."""
    from benchmarks.make_results import stored_results
    from longdoc.pipeline.evaluation.report import spans_note

    first, second = generate_tasks(["single_needle"], data=corpus_dir, lengths=[2000],
                                   depths=[0.25, 0.75])
    [gold] = first.evidence
    current = evaluate(first, "rag", Answer(answer=first.answers[0], strategy="rag",
                                            citations=[cite(gold.start, gold.end)]), 1.0)
    lenient = evaluate(second, "rag", Answer(answer=f"{second.answers[0]} or 12345",
                                             strategy="rag"), 1.0)
    older = lenient.model_copy(update={"digest": "0" * 64, "score": 1.0, "supported": True,
                                       "citation_recall": 1.0, "citation_precision": 1.0,
                                       "cited_spans": None, "evidence_spans": None})
    other_gold = older.model_copy(update={"expected": ["99999"]})
    other_strategy = current.model_copy(update={"strategy": "chain"})
    results, regenerated = stored_results([first, second], ["rag"],
                                          [current, other_gold, older, other_strategy])
    assert regenerated == 1
    by_id = {r.task_id: r for r in results}
    assert set(by_id) == {first.id, second.id}
    assert by_id[first.id].supported and by_id[first.id].citation_precision == 1.0
    assert by_id[second.id].score == 0.0 and by_id[second.id].citation_precision is None
    assert spans_note(results) == (
        "Scored strictly: 1 answered run(s) with stored citation spans, 1 from older lines "
        "without them (citation precision unknown for 0 of these: several citations, some on "
        "the gold evidence). Wrong answers with citation precision 1.00: 0.")
    # Precision 1.00 on a wrong answer is still possible (all quotes on the gold
    # evidence, the answer offering another value too); the note counts such runs.
    [second_gold] = second.evidence
    cited = evaluate(second, "rag", Answer(answer=f"{second.answers[0]} or 12345",
                                           strategy="rag",
                                           citations=[cite(second_gold.start,
                                                           second_gold.end)]), 1.0)
    assert spans_note([cited]).endswith("Wrong answers with citation precision 1.00: 1.")

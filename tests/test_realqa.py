"""Answers that fit real questions: question types, fitted answers, refused echoes, and the
real-QA benchmark's fixed development subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.realqa import SETS, chosen, dev_subset, interleave, route_class, run, table
from longdoc.pipeline.evaluation.metrics import evaluate, exact_match, token_f1
from longdoc.pipeline.graph import fit_to_question
from longdoc.pipeline.grounding import (
    answer_key,
    explanation_spans,
    fit_answer,
    question_core,
    question_type,
    supports,
)
from longdoc.pipeline.models import Answer, Citation, Usage
from longdoc.pipeline.protocol import (
    echoes_prompt,
    parse_answer,
    restates_question,
    unfit_answer,
)
from longdoc.pipeline.settings import Settings
from longdoc.pipeline.state import NOT_FOUND_ANSWER
from tests.conftest import sim_settings

DATA = Path(__file__).parent / "data" / "realqa"
FINANCIAL = ("You are asked to act as a member of the Financial Results Conference Call and "
             "answer the question: ")


@pytest.mark.parametrize(("question", "kind"), [
    ("when did season 2 of handmaid's tale start", "date"),
    ("handmaid's tale how many episodes in series 2", "number"),
    ("who does the voice of jeremy on phineas and ferb", "name"),
    ("where do they film the new lost in space", "place"),
    ("which state did great britain take control of", "place"),
    ("what is the base of the statue of liberty made of", "phrase"),
    ("Is the lexicon the same for all languages?", "yesno"),
    ("Does the paper report results on English only, or on other languages too?", "phrase"),
    ("Highlight the parts (if any) of this contract related to \"Governing Law\".",
     "passages"),
    ("Which parts of the agreement concern termination for convenience?", "passages"),
    (FINANCIAL + "How does Oclaro plan to compete in high growth markets?", "explain"),
    (FINANCIAL + "Who conducted the call and what was its purpose?", "explain"),
    (FINANCIAL + "What were the consolidated revenue and the revenue growth for the "
                 "Surgical Product segment over last year?", "explain"),
    ("What is the special magic number for amber-lantern?", "phrase"),
])
def test_question_type(question: str, kind: str) -> None:
    assert question_type(question) == kind


def test_question_core_drops_a_role_preamble() -> None:
    assert question_core(FINANCIAL + "What is X?") == "What is X?"
    assert question_core("What is X?") == "What is X?"


@pytest.mark.parametrize(("question", "answer", "fitted"), [
    ("when did season 2 of handmaid's tale start",
     "Season 2 of The Handmaid's Tale premiered on April 25, 2018.", "April 25, 2018"),
    ("when was the first harry potter book released in uk",
     "It was released in the UK on 26 June 1997 by Bloomsbury.", "26 June 1997"),
    ("how many episodes of season two of the handmaids tale are there",
     "Season two has 13 episodes.", "13"),
    ("how many episodes for games of thrones season 7", "Season 7 has seven episodes.",
     "seven"),
    ("How far did the number of major surplus labor areas decline?",
     "The number declined from 101 to 60 in the year.", "from 101 to 60"),
    ("How far did the number of major surplus labor areas decline?",
     "It fell to 60 from 101.", "to 60 from 101"),
    ("who plays count olaf in series of unfortunate events",
     "Neil Patrick Harris plays Count Olaf.", "Neil Patrick Harris"),
    ("who has made the most shots in the nba", "Kareem Abdul - Jabbar has made the most.",
     "Kareem Abdul - Jabbar"),
    ("where do they film the new lost in space",
     "The series is filmed in Vancouver, British Columbia.", "Vancouver, British Columbia"),
    ("what is the evil guy's name in phineas and ferb",
     "The evil guy's name is Dr. Heinz Doofenshmirtz.", "Dr. Heinz Doofenshmirtz"),
    ("Is the lexicon the same for all languages?", "The lexicon the same for all languages.",
     "Yes"),
    ("Is the lexicon the same for all languages?", "No, each language has its own.", "No"),
    ("Is the lexicon the same for all languages?",
     "The lexicon is not the same for all languages.", "No"),
    ("What is the special magic number for amber-lantern?",
     "The special magic number for amber-lantern is 48213.", "48213"),
])
def test_fit_answer(question: str, answer: str, fitted: str) -> None:
    assert fit_answer(answer, question) == fitted


def test_fit_answer_prefers_the_span_the_evidence_holds() -> None:
    question = "when does season 7 of game of thrones come out"
    answer = "It was announced in March 2017 and premiered on July 16, 2017."
    evidence = ["The season premiered on July 16 , 2017 , on HBO ."]
    assert fit_answer(answer, question, evidence) == "July 16, 2017"
    assert fit_answer(answer, question) == "March 2017"


def test_a_date_from_the_supporting_evidence_when_the_answer_has_none() -> None:
    question = "when did season 2 of handmaid's tale start"
    evidence = ["In May 2017 , the series was renewed for a second season which premiered "
                "on April 25 , 2018 ."]
    assert fit_answer("The second season started in the spring.", question, evidence) == \
        "April 25 , 2018"  # the evidence's date nearest to the question's words
    assert fit_answer("<P> The Handmaid 's Tale </P> stars Elisabeth Moss", "who stars in "
                      "the handmaid's tale") == "Elisabeth Moss"
    assert fit_answer("The Canadian Charter of Rights and Freedoms applies to Canada, not the "
                      "United States.", "who does the canadian charter of rights apply to",
                      ["It is not law in the United States ."]) == "Canada"


def test_explanations_keep_their_sentences() -> None:
    question = FINANCIAL + "How does Oclaro plan to compete in high growth markets?"
    answer = "It leverages its core competencies. It reorganized into two divisions."
    assert fit_answer(answer, question) == answer


def test_number_words_are_the_key_of_a_short_answer() -> None:
    assert answer_key("seven", "how many episodes for season 7") == ["seven"]
    assert supports("The seventh season consists of seven episodes .", "seven",
                    "how many episodes for games of thrones season 7")


@pytest.mark.parametrize(("answer", "question"), [
    ("Question: How did they obtain the dataset?", "How did they obtain the dataset?"),
    ("How did they obtain the dataset?", "How did they obtain the dataset?"),
    ("The lexicon the same for all languages.", "Is the lexicon the same for all languages?"),
    ("Season 1 of handmades tale", "how many episodes in season 1 of handmades tale"),
    ('<a sentence copied exactly from the document that supports the answer>', "Who won?"),
    ("Use only the document above. Then on a new line write", "Who won?"),
    ("Answer with the date only, as it is written", "When was it?"),
])
def test_unfit_answers(answer: str, question: str) -> None:
    assert unfit_answer(answer, question) is not None


@pytest.mark.parametrize(("answer", "question"), [
    ("13", "how many episodes in series 2"),
    ("Yes", "Is the lexicon the same for all languages?"),
    ("Green Bay Packers", "Which team won, the Green Bay Packers or the Chiefs?"),
    ("Stephen Curry", "who has the most three pointers in one game"),
])
def test_fit_answers_are_not_unfit(answer: str, question: str) -> None:
    assert not echoes_prompt(answer)
    assert not restates_question(answer, question)


def test_parse_answer_drops_an_echoed_question() -> None:
    parsed = parse_answer("Question: when did it start?\nAnswer: April 25, 2018\n"
                          'Quote: "It premiered on April 25, 2018."')
    assert parsed.answer == "April 25, 2018"
    assert parse_answer("Question: when did it start?").answer == ""


def citation(quote: str) -> Citation:
    return Citation(source="doc.txt", quote=quote, start=0, end=len(quote), page=None)


def test_prompt_text_after_an_answer_is_cut() -> None:
    question = "who does the canadian charter of rights apply to"
    fitted, why = fit_to_question(
        "Canadian citizens and everyone in Canada, the document that supports the answer.",
        question, [])
    assert (fitted, why) == ("Canadian citizens and everyone in Canada", None)
    assert fit_answer("Canadian Charter of Rights and Freedoms applies to them", question) \
        != "Canadian Charter of Rights and Freedoms"  # the subject, not the answer


def test_fit_to_question_refuses_echoes_and_returns_passages() -> None:
    assert fit_to_question("Question: How did they obtain the dataset?",
                           "How did they obtain the dataset?", []) == (
        NOT_FOUND_ANSWER, "echoes the prompt")
    clause = "This Agreement shall be governed by the laws of the State of New York."
    fitted, why = fit_to_question("Section 12", "Which parts of the contract concern the "
                                  "governing law?", [citation(clause)])
    assert (fitted, why) == (clause, None)


def test_no_answer_of_the_stored_traces_restates_or_echoes() -> None:
    """Real model answers (benchmarks/realqa traces, development questions): what the
    pipeline returns for them is never a restatement of the question or prompt text."""
    lines = [json.loads(line) for line in (DATA / "answers.jsonl").read_text().splitlines()]
    assert len(lines) >= 20
    unfit = 0
    for line in lines:
        unfit += unfit_answer(line["draft"], line["question"]) is not None
        fitted, _ = fit_to_question(line["draft"], line["question"], [])
        assert fitted == NOT_FOUND_ANSWER or unfit_answer(fitted, line["question"]) is None
    assert unfit > 0  # the file holds such answers: the check has something to catch


# --- the benchmark's development subset ----------------------------------------------------


def write_set(path: Path, docs: int, questions: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for d in range(docs):
            out.write(json.dumps({
                "input": f"Document {d}. " + "Some text here. " * 20,
                "instructions": [f"question {q} of document {d}?" for q in range(questions)],
                "outputs": [f"answer {q}" for q in range(questions)]}) + "\n")
    return path


def test_dev_subset_is_fixed_and_spread(tmp_path: Path) -> None:
    path = write_set(tmp_path / "set.jsonl", docs=5, questions=4)
    first = dev_subset("nq", path, 7)
    assert [t.id for t in first] == [t.id for t in dev_subset("nq", path, 7)]
    assert len(first) == 7 and len({t.digest for t in first}) == 7
    docs = [t.id.split("/")[2] for t in first]
    assert len(set(docs[:5])) == 5  # one question of every document before any second
    assert [t.id for t in dev_subset("nq", path, 7, seed=1)] != [t.id for t in first]
    for task in first:
        q = int(task.id.rsplit("q", 1)[1])
        assert task.answers == [f"answer {q}"] and task.question.startswith(f"question {q} ")


def test_interleave_and_table_compare_common_questions(tmp_path: Path) -> None:
    tasks = dev_subset("nq", write_set(tmp_path / "set.jsonl", docs=3, questions=2), 4)
    assert interleave({"nq": tasks[:2], "financial": tasks[2:]}) == [
        tasks[0], tasks[2], tasks[1], tasks[3]]
    results = [evaluate(t, "direct", Answer(answer=t.answers[0], strategy="direct",
                                            usage=Usage(llm_calls=1, prompt_tokens=100,
                                                        completion_tokens=10)), 2.0)
               for t in tasks]
    results.append(evaluate(tasks[0], "auto", Answer(answer="no", strategy="auto",
                                                     supported=True), 1.0))
    text = table(results, {"nq": tasks}, systems=["direct", "auto"])
    assert "1 of 4 questions answered by every system" in text
    assert "| direct --truncate | 1.000 | 1.000 | 0/1 | 1.0 | 100 | 10 | 2 | – |" in text
    assert "| auto | 0.000 | 0.000 | 1/1 |" in text


def test_only_keeps_matching_questions_and_route_class_follows_auto(tmp_path: Path) -> None:
    tasks = dev_subset("nq", write_set(tmp_path / "set.jsonl", docs=3, questions=2), 6)
    kept = chosen({"nq": tasks}, ["/d01/"])["nq"]
    assert kept and all("/d01/" in t.id for t in kept) and len(kept) < len(tasks)
    assert chosen({"nq": tasks})["nq"] == tasks
    settings = Settings(chunk_tokens=50, chunk_overlap=0)
    small, long = tasks[0], tasks[0].model_copy(update={"text": "Some long text. " * 4000})
    assert route_class(small, settings) == "fits the window"
    assert route_class(long, settings) == "> 8 chunks"
    assert route_class(long, Settings(chunk_tokens=2000, chunk_overlap=0, full_read_chunks=20)
                       ) == "<= 20 chunks"


def test_exact_match_normalizes() -> None:
    assert exact_match("The April 25, 2018.", ["April 25 , 2018"]) == 1.0
    assert exact_match("April 2018", ["April 25 , 2018"]) == 0.0
    assert token_f1("April 25, 2018", ["April 25 , 2018"]) == 1.0


def test_run_resumes_and_the_recipe_sends_max_tokens(sim, tmp_path: Path) -> None:
    """Every system on the first question of each set, on the simulated server; a rerun
    does nothing; the recipe's requests carry ``max_tokens`` itself."""
    for file, _ in SETS.values():
        write_set(tmp_path / file, docs=2, questions=2)
    server = sim(lambda messages: 'Answer: answer 1\nQuote: "Some text here."')
    settings = sim_settings(server, tmp_path, use_cache=False, truncate=True)
    results, traces = tmp_path / "r.jsonl", tmp_path / "t.jsonl"
    new = run(["direct", "langchain"], questions=1, results=results, traces=traces,
              settings=settings, data=tmp_path)
    assert len(new) == 4 and all(r.status == "ok" for r in new)
    assert {r.strategy for r in new} == {"direct", "langchain"}
    assert len(traces.read_text().splitlines()) == 2  # longdoc answers only
    recipe = [r for r in server.requests
              if r["messages"][-1]["content"].startswith("Answer the question from")]
    assert recipe and all(r.get("max_tokens") == 256 for r in recipe)
    assert run(["direct", "langchain"], questions=1, results=results, traces=traces,
               settings=settings, data=tmp_path) == []


@pytest.mark.real_model
def test_real_model_gives_a_date_question_a_date(real_endpoint, test_data: Path,
                                                tmp_path: Path) -> None:
    """The embedded model over real prose with one dated fact: the answer is the date,
    not a sentence restating the question, and a citation supports it."""
    from longdoc.pipeline.api import Pipeline
    from tests.conftest import haystack, real_settings

    fact = "The new harbour library opened on April 25, 2018, after two years of work."
    doc = tmp_path / "haystack.txt"
    doc.write_text(haystack(test_data, 1200, fact, depth=0.5))
    question = "When did the new harbour library open?"
    with Pipeline(real_settings(real_endpoint, tmp_path)) as pipeline:
        answer = pipeline.ask(doc, question, strategy="direct")
    assert unfit_answer(answer.answer, question) is None
    assert "2018" in answer.answer and len(answer.answer.split()) <= 4
    assert answer.supported


def test_explanations_are_the_documents_sentences_about_the_question() -> None:
    text = ("Good afternoon and welcome to the call. Revenue grew 8% on strong surgical "
            "demand. Margins improved because the restructuring plan cut costs in half. "
            "The weather was fine. The restructuring plan closed two plants and cut "
            "headcount.")
    question = FINANCIAL + "How did the restructuring plan affect margins?"
    spans = explanation_spans([text], question, "It cut costs.")
    chosen = [text[s:e] for _, s, e in spans]
    assert chosen[0].startswith("Margins improved because the restructuring plan")
    assert "The weather was fine." not in chosen and all(i == 0 for i, _, _ in spans)
    assert explanation_spans([text], "How did the harbour flood?") == []


def test_a_passages_question_gets_the_clause_even_when_the_model_restates_it(
        sim, tmp_path: Path) -> None:
    """The issue's contract failure: the model restates the question, yet the clause is
    in the document: the answer is the clause, verbatim and cited."""
    from longdoc.pipeline.api import Pipeline

    clause = ("This Agreement shall be governed by and construed in accordance with the "
              "laws of the State of New York.")
    text = f"1. Definitions. Terms have their usual meaning.\n\n12. Governing Law. {clause}"
    doc = tmp_path / "contract.txt"
    doc.write_text(text)
    question = 'Highlight the parts (if any) of this contract related to "Governing Law".'
    server = sim(lambda messages: f"Question: {question}")
    with Pipeline(sim_settings(server, tmp_path, strategy="direct")) as pipeline:
        answer = pipeline.ask(doc, question)
    assert answer.supported and clause in answer.answer
    assert all(text[c.start:c.end] == c.quote for c in answer.citations)


def test_an_explanation_question_gets_cited_document_sentences(sim, tmp_path: Path) -> None:
    from longdoc.pipeline.api import Pipeline

    text = ("The library board met in May. The restructuring plan closed two branches and "
            "cut costs, which improved margins. The plan was approved by the board.\n\n"
            "Nothing else happened that year.")
    doc = tmp_path / "call.txt"
    doc.write_text(text)
    server = sim(lambda messages: "Question: How did the restructuring plan help?")
    with Pipeline(sim_settings(server, tmp_path, strategy="direct")) as pipeline:
        answer = pipeline.ask(doc, "How did the restructuring plan help margins?")
    assert answer.supported and answer.answer.startswith("The restructuring plan closed")
    assert all(text[c.start:c.end] == c.quote for c in answer.citations)
    assert unfit_answer(answer.answer, "How did the restructuring plan help margins?") is None

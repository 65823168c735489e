"""Summaries: map-reduce (key points -> collapse -> reduce) and direct, API and CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from longdoc.agents.mapreduce_summary import (
    attach_quotes,
    drop_degenerate,
    group_adjacent,
    make_record,
    parse_points,
    select_by_coverage,
    truncate_record,
)
from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.errors import InputError
from longdoc.pipeline.grounding import supports_paragraph
from longdoc.pipeline.models import Answer
from longdoc.pipeline.state import Evidence, KeyPoint
from longdoc.prompts import get_prompt
from tests.conftest import SAMPLES, real_settings, sim_env, sim_settings
from tests.sequential_cases import document_of, write
from tests.simserver import Fault, Messages, SimServer

MAP_SYSTEM = get_prompt("mapreduce.summary_map").system
COLLAPSE_SYSTEM = get_prompt("mapreduce.summary_collapse").system
REDUCE_SYSTEM = get_prompt("mapreduce.summary_reduce").system
DIRECT_SYSTEM = get_prompt("direct.summary").system

TOPICS = [
    ("harbour", "dredged", "fishing fleet"), ("bridge", "approved", "council members"),
    ("library", "reopened", "reading room"), ("river", "froze", "skaters"),
    ("orchard", "flowered", "beekeepers"), ("railway", "extended", "freight wagons"),
    ("school", "expanded", "science teachers"), ("hospital", "modernized", "night nurses"),
    ("market", "relocated", "cheese sellers"), ("theatre", "restored", "stage painters"),
    ("quarry", "closed", "stone cutters"), ("observatory", "opened", "amateur astronomers"),
    ("brewery", "rebuilt", "copper kettles"), ("lighthouse", "repainted", "coast guards"),
    ("vineyard", "replanted", "grape pickers"), ("museum", "catalogued", "old maps"),
]


def paragraph(topic: tuple[str, str, str], i: int) -> str:
    place, verb, people = topic
    return (f"In year {1900 + i} the town {place} was {verb} after a long public debate. "
            f"The {people} of the {place} welcomed the change and held a festival in the "
            f"{place} square.")


def write_doc(tmp_path: Path, n: int = len(TOPICS)) -> tuple[Path, str]:
    return write(tmp_path, [paragraph(t, i) for i, t in enumerate(TOPICS[:n])], "town.txt")


def map_points(user: str) -> str:
    """A model that reads its chunk: one point per sentence, the sentence as its quote."""
    text = document_of(user)
    sentences = re.findall(r"[^.]+\.", text)
    return "\n".join(f"Point: {' '.join(s.split()[:7])}.\nQuote: \"{s.strip()}\""
                     for s in sentences[:2])


def halve_notes(user: str) -> str:
    """A collapse that keeps every other note, quotes copied (so records shrink)."""
    pairs = re.findall(r"Point: (.*)\n(Quote: .*)", document_of(user))
    return "\n".join(f"Point: {p}\n{q}" for p, q in pairs[::2])


def echo_notes(user: str) -> str:
    """A collapse that does not compress: every note back, and a rambling extra point."""
    return document_of(user) + "\nPoint: and also much more that matters a great deal."


def write_paragraphs(user: str) -> str:
    """A reduce that writes one paragraph per two notes, from the notes' points."""
    points = re.findall(r"Point: (.*)", user)
    return "Summary:\n" + "\n\n".join(" ".join(points[i:i + 2]) for i in range(0, 6, 2))


def summary_model(
    map_reply: Callable[[str], str] = map_points,
    collapse_reply: Callable[[str], str] = halve_notes,
    reduce_reply: Callable[[str], str] = write_paragraphs,
) -> Callable[[Messages], str]:
    def reply(messages: Messages) -> str:
        system, user = messages[0]["content"], messages[1]["content"]
        if system == MAP_SYSTEM:
            return map_reply(user)
        if system == COLLAPSE_SYSTEM:
            return collapse_reply(user)
        if system == REDUCE_SYSTEM:
            return reduce_reply(user)
        assert system == DIRECT_SYSTEM
        return ("The town changed a great deal.\n\nMany places were rebuilt.\n"
                'Quote: "In year 1900 the town harbour was dredged"')

    return reply


def summarize(server: SimServer, tmp_path: Path, path: Path, **kwargs: object) -> Answer:
    settings = sim_settings(server, tmp_path, chunk_tokens=50, chunk_overlap=0)
    with Pipeline(settings) as pipeline:
        return pipeline.summarize(path, **kwargs)  # type: ignore[arg-type]


def events(answer: Answer, node: str) -> list:
    return [e for e in answer.trace if e.node == node]


def calls(server: SimServer, system: str) -> int:
    return sum(r["messages"][0]["content"] == system for r in server.requests)


def assert_exact(answer: Answer, text: str) -> None:
    assert answer.citations
    for citation in answer.citations:
        assert text[citation.start:citation.end] == citation.quote


# --- the whole graph against the simulated server ----------------------------------------


def test_map_collapse_reduce_with_per_paragraph_citations(sim, tmp_path: Path) -> None:
    server = sim(summary_model(), context_window=1500)
    path, text = write_doc(tmp_path)
    answer = summarize(server, tmp_path, path, words=60)
    assert answer.strategy == "mapreduce"
    paragraphs = answer.answer.split("\n\n")
    assert len(paragraphs) == 3 and not answer.answer.startswith("Summary")
    assert calls(server, MAP_SYSTEM) == len(TOPICS)
    rounds = [e for e in events(answer, "mapreduce.summary_collapse") if "round" in e.data]
    assert rounds and rounds[0].data["decision"] == "compressed"
    assert rounds[-1].data["tokens_after"] <= rounds[-1].data["budget"]
    assert calls(server, COLLAPSE_SYSTEM) == sum(len(e.data["groups"]) for e in rounds)
    group = rounds[0].data["groups"][0]
    assert group["records_in"] > 1 and group["verified_out"] == group["points_out"]
    # every paragraph cites a quote that is exact source text, from a sentence it paraphrases
    assert_exact(answer, text)
    assert {c.paragraph for c in answer.citations} == {1, 2, 3}
    for citation in answer.citations:
        words = set(paragraphs[citation.paragraph - 1].lower().split())
        assert len(words & set(citation.quote.lower().split())) >= 3
    assert answer.usage.by_node["mapreduce.summary_reduce"].llm_calls == 1
    # the trace: per chunk the record, verification, tokens and time; per reduce a decision
    first = events(answer, "mapreduce.summary_map")[0].data
    assert first["record"]["points"][0]["verified"]
    assert first["verification"]["quotes_located"] == 2
    assert {"prompt_tokens", "reply_tokens", "elapsed_s"} <= set(first["call"])
    [reduce] = events(answer, "mapreduce.summary_reduce")
    assert len(reduce.data["paragraphs"]) == 3 and reduce.data["decision"]
    [verify] = events(answer, "verify")
    assert verify.data["paragraphs_cited"] == 3


def test_collapse_that_does_not_shrink_falls_back_and_terminates(sim, tmp_path: Path) -> None:
    server = sim(summary_model(collapse_reply=echo_notes), context_window=1500)
    path, text = write_doc(tmp_path)
    answer = summarize(server, tmp_path, path, words=60)
    collapse = events(answer, "mapreduce.summary_collapse")
    [round_one] = [e for e in collapse if "round" in e.data]
    assert round_one.data["decision"] == "no shrink: fallback"
    assert calls(server, COLLAPSE_SYSTEM) == len(round_one.data["groups"])  # one round only
    [fallback] = [e for e in collapse if e.data.get("decision") == "fallback"]
    assert fallback.data["tokens_after"] <= fallback.data["budget"]
    assert fallback.data["points_out"] < fallback.data["points_in"]
    assert fallback.data["verified_out"] == fallback.data["points_out"]
    assert calls(server, REDUCE_SYSTEM) == 1
    assert_exact(answer, text)


def test_single_oversized_record_drops_its_lowest_points(sim, tmp_path: Path) -> None:
    def rambling(user: str) -> str:
        if "harbour" not in user:
            return map_points(user)
        filler = "\n".join(f"Point: unsupported remark number {i} about many other things "
                           "that the text never says at all." for i in range(40))
        return map_points(user) + "\n" + filler

    server = sim(summary_model(map_reply=rambling), context_window=1500)
    path, text = write_doc(tmp_path, n=3)
    answer = summarize(server, tmp_path, path, words=60)
    [truncated] = [e for e in events(answer, "mapreduce.summary_collapse")
                   if e.data.get("decision") == "truncated"]
    assert truncated.data["chunks"] == ["0:0"]
    assert truncated.data["tokens_out"] < truncated.data["tokens_in"]
    assert truncated.data["points_dropped"] > 0
    assert calls(server, COLLAPSE_SYSTEM) == 0  # after the cut everything fits
    assert_exact(answer, text)
    assert any("harbour" in c.quote for c in answer.citations)


def test_invented_quotes_leave_points_unverified_and_uncited(sim, tmp_path: Path) -> None:
    invented = 'Point: the town built a castle.\nQuote: "A castle of gold was built in 1850."'
    server = sim(summary_model(map_reply=lambda user: invented,
                               reduce_reply=lambda user: "The town built a castle."))
    path, _ = write_doc(tmp_path, n=3)
    answer = summarize(server, tmp_path, path, words=60)
    maps = events(answer, "mapreduce.summary_map")
    assert all(e.data["verified"] == 0 for e in maps)
    assert all(not p["verified"] for e in maps for p in e.data["record"]["points"])
    assert answer.answer == "The town built a castle."
    assert answer.citations == []


def test_paraphrased_summary_is_cited_by_the_sentences_it_paraphrases(
    sim, tmp_path: Path
) -> None:
    """No key point verifies, so no quote is carried; the reducer's paraphrase of one source
    sentence is cited by that sentence (located in code), its invented sentence by nothing."""
    invented = 'Point: the town built a castle.\nQuote: "A castle of gold was built in 1850."'
    summary = ("The council members welcomed the approved bridge and held a festival. "
               "Dragons guarded a castle of gold.")
    server = sim(summary_model(map_reply=lambda user: invented,
                               reduce_reply=lambda user: summary))
    path, text = write_doc(tmp_path, n=3)
    answer = summarize(server, tmp_path, path, words=60)
    assert all(e.data["verified"] == 0 for e in events(answer, "mapreduce.summary_map"))
    assert_exact(answer, text)
    assert [c.quote for c in answer.citations] == [
        "The council members of the bridge welcomed the change and held a festival in the "
        "bridge square."]
    assert answer.citations[0].origin == "located" and answer.citations[0].paragraph == 1
    [reduce] = events(answer, "mapreduce.summary_reduce")
    assert reduce.data["paragraphs"][0]["sentences"] == 2
    assert reduce.data["paragraphs"][0]["sentences_supported"] == 1


def test_direct_summary_for_comparison(sim, tmp_path: Path) -> None:
    server = sim(summary_model())
    path, text = write_doc(tmp_path, n=3)
    answer = summarize(server, tmp_path, path, words=60, strategy="direct")
    assert answer.strategy == "direct"
    assert answer.answer == "The town changed a great deal.\n\nMany places were rebuilt."
    [citation] = answer.citations
    assert citation.quote == "In year 1900 the town harbour was dredged"
    assert_exact(answer, text)
    assert answer.usage.llm_calls == 1


def test_words_out_of_range_is_an_input_error(sim, tmp_path: Path) -> None:
    server = sim(summary_model())
    path, _ = write_doc(tmp_path, n=2)
    with pytest.raises(InputError, match="--words"):
        summarize(server, tmp_path, path, words=5)
    assert server.requests == []


# --- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "expected"), [
    ('Point: The fleet returned.\nQuote: "The fishing fleet returned to the quay."',
     [("The fleet returned.", ["The fishing fleet returned to the quay."])]),
    ('**Key points:**\n1. **The fleet returned.**\n   - Evidence: "the fleet returned home"\n'
     '2. The bridge was approved "by a narrow margin of members present".',
     [("The fleet returned.", ["the fleet returned home"]),
      ('The bridge was approved "by a narrow margin of members present".',
       ["by a narrow margin of members present"])]),
    ("The fleet returned.\nThe bridge was approved.",
     [("The fleet returned.", []), ("The bridge was approved.", [])]),
    ('Point:\nThe fleet returned.\nQuote: "The fleet returned to port"',
     [("The fleet returned.", ["The fleet returned to port"])]),
    ('Quote: "The fishing fleet returned to the quay."',
     [("The fishing fleet returned to the quay.", ["The fishing fleet returned to the quay."])]),
    ('1. The text has 2 points:\n- Point 1: "We are gratified - but we are not satisfied."',
     [("The text has 2 points:", []),
      ("We are gratified - but we are not satisfied.",
       ["We are gratified - but we are not satisfied."])]),
    ("", []), ("***\n---", []),
])
def test_parse_points_tolerantly(reply: str, expected: list) -> None:
    assert parse_points(reply) == expected


def _point(text: str, verified: bool = True, start: int = 0) -> KeyPoint:
    evidence = [Evidence(source="d", start=start, end=start + len(text), text=text,
                         origin="model")] if verified else []
    return KeyPoint(text=text, evidence=evidence, verified=verified)


def test_truncate_keeps_verified_points_first() -> None:
    points = [_point(f"unverified claim number {i} with several words", verified=False)
              for i in range(10)]
    points.insert(5, _point("the harbour was dredged in spring", start=40))
    record = make_record(["0:0"], points, 0)
    smaller, dropped = truncate_record(record, 40)
    assert smaller.tokens <= 40 and dropped == len(points) - len(smaller.points)
    assert smaller.points[0].text.startswith("unverified claim number 0")  # document order
    assert "the harbour was dredged in spring" in [p.text for p in smaller.points]
    assert len(smaller.points) < len(points)
    [alone] = truncate_record(make_record(["0:0"], [_point("word " * 200)], 0), 30)[0].points
    assert alone.text.endswith("...")


def test_grouping_and_coverage_selection() -> None:
    records = [make_record([f"0:{i}"], [_point(f"topic{i} alpha beta gamma delta", start=i * 50)],
                           0) for i in range(6)]
    size = records[0].tokens
    assert [len(g) for g in group_adjacent(records, size * 2)] == [2, 2, 2]
    assert [len(g) for g in group_adjacent(records, size - 1)] == [1] * 6  # never empty
    duplicate = make_record(["0:6"], [_point("alpha beta gamma delta", start=400)], 0)
    chosen = select_by_coverage([*records[:2], duplicate], size * 2 + 2)
    assert [r.chunk_ids for r in chosen] == [["0:0"], ["0:1"]]  # new words beat repeats


def test_repeated_and_cut_off_paragraphs_are_dropped() -> None:
    """SmolLM2 loops: the govreport summary repeated one paragraph three times, then hit the
    token limit mid-sentence."""
    first = "The House adopts special rules. They set the terms of debate."
    loop = "The House also has a process to call up special rules. It is called a layover."
    paragraphs = [first, loop, loop, loop.replace("It is", "It's"),
                  "The House also has a process to call up special", "Rules end. And then th"]
    kept, dropped = drop_degenerate(paragraphs)
    assert kept == [first, loop, "Rules end."] and dropped == 3
    assert drop_degenerate(["One unfinished thought"]) == (["One unfinished thought"], 0)
    assert drop_degenerate([first, "Then an unfinished"]) == ([first], 1)


def test_attach_quotes_per_paragraph() -> None:
    records = [make_record(["0:0"], [_point("the harbour was dredged", start=0),
                                     _point("the bridge was approved", start=30)], 0)]
    attached = attach_quotes(["The harbour was dredged in May.", "A bridge was approved.",
                              "Nothing in common here."], records)
    assert [[e.text for e in evs] for evs in attached] == [
        ["the harbour was dredged"], ["the bridge was approved"], []]


# --- the command line ------------------------------------------------------------------------

SUMMARY_KEYS = {"answer", "strategy", "citations", "usage", "elapsed_s", "dropped_quotes", "route",
                "unsupported_citations", "supported", "coverage"}


def run_cli(args: list[str], server: SimServer, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**sim_env(server), "LONGDOC_CACHE_DIR": str(cwd / "cache"),
           "LONGDOC_CHUNK_TOKENS": "50", "LONGDOC_CHUNK_OVERLAP": "0"}
    return subprocess.run([sys.executable, "-m", "longdoc", "summarize", *args], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_summarize_json_human_and_exit_codes(sim, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ok, broken = sim(summary_model()), sim(lambda m: Fault(status=500))
    _, text = write_doc(tmp_path, n=6)
    cases = {
        "json": (["town.txt", "--words", "60", "--json", "--trace"], ok),
        "human": (["town.txt", "--words", "60"], ok),
        "missing": (["absent.txt"], ok),
        "few_words": (["town.txt", "--words", "3"], ok),
        "unknown": (["town.txt", "--strategy", "nonsense"], ok),
        "backend": (["town.txt"], broken),
    }
    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(run_cli, args, server, tmp_path)
                   for name, (args, server) in cases.items()}
        procs = {name: f.result() for name, f in futures.items()}
    proc = procs["json"]
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.strip().splitlines()
    answer = json.loads(line)
    assert set(answer) == SUMMARY_KEYS | {"trace"} and answer["strategy"] == "mapreduce"
    paragraphs = answer["answer"].split("\n\n")
    assert answer["citations"]
    for citation in answer["citations"]:
        assert {"source", "page", "start", "end", "quote", "origin", "paragraph"} == \
            set(citation)
        assert 1 <= citation["paragraph"] <= len(paragraphs)
        assert text[citation["start"]:citation["end"]] == citation["quote"]
    nodes = {e["node"] for e in answer["trace"]}
    assert {"mapreduce.summary_map", "mapreduce.summary_collapse",
            "mapreduce.summary_reduce", "verify"} <= nodes
    human = procs["human"]
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith("Summary (mapreduce):\n")
    assert re.search(r"\[1\]", human.stdout.split("\n\n")[1] + human.stdout.split("\n\n")[0])
    assert re.search(r"^\[1\] town\.txt, chars \d+-\d+: \"", human.stdout, re.M)
    for name, code, needle in [("missing", 2, "file not found"), ("few_words", 2, "--words"),
                               ("unknown", 2, "unknown strategy"), ("backend", 3, "HTTP 500")]:
        proc = procs[name]
        assert proc.returncode == code, (name, proc.stderr)
        [err] = proc.stderr.strip().splitlines()
        assert err.startswith("error: ") and needle in err and proc.stdout == ""


# --- the real embedded model ---------------------------------------------------------------


@pytest.mark.real_model
def test_real_model_summary_has_verified_citations(real_endpoint, tmp_path: Path) -> None:
    """The sample speech (~1,800 tokens) in chunks of ~500 tokens."""
    doc = tmp_path / "kennedy-1962-state-of-the-union.txt"  # the file name is in the prompt
    doc.write_text((SAMPLES / "kennedy-1962-state-of-the-union.txt").read_text())
    settings = real_settings(real_endpoint, tmp_path, chunk_tokens=500, chunk_overlap=0)
    with Pipeline(settings) as pipeline:
        answer = pipeline.summarize(doc, words=80)
    assert answer.answer.strip()
    maps = events(answer, "mapreduce.summary_map")
    assert len(maps) >= 3
    # the key points are grounded in the source on the real model ...
    assert sum(e.data["verified"] for e in maps) >= 1, [e.message for e in maps]
    # ... and the summary is cited only where a quote fits its paragraph (the 135M model's
    # reduce often writes about the points rather than from them: then it is unsupported)
    text = doc.read_text()
    paragraphs = [p for p in answer.answer.split("\n\n") if p.strip()]
    for citation in answer.citations:
        assert text[citation.start:citation.end] == citation.quote
        assert supports_paragraph(citation.quote, paragraphs[citation.paragraph - 1])
    assert answer.supported == ({c.paragraph for c in answer.citations}
                                == set(range(1, len(paragraphs) + 1)))

"""Conflicting-evidence tasks: the phrasings, their halves, the generator and the benchmark."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from string import Formatter

import pytest

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.evaluation import generate_tasks
from longdoc.pipeline.evaluation.conflicts import (
    CONFLICT_KINDS,
    CONFLICT_SPLITS,
    phrasings,
    split_phrasings,
)
from longdoc.pipeline.evaluation.tasks import UNRELIABLE_PER_TASK, Corpus, conflict_task
from tests.conftest import REPO, sim_env
from tests.test_evaluation import SENTENCES, chats, write_corpus

HALVES = {split: phrasings(split) for split in CONFLICT_SPLITS}
# Words any sentence about a code has; a kind must not be marked by any other one word.
COMMON = {"the", "a", "an", "for", "of", "is", "was", "to", "be", "that", "it", "its", "with",
          "as", "at", "in", "this", "and", "but", "has", "had", "uses", "used", "by", "on"}


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    """About 9,000 tokens of prose in a few files (test_evaluation's folder)."""
    return Corpus.from_folder(write_corpus(tmp_path))


def one_file_folder(tmp_path: Path) -> Path:
    """A folder with one file of the test sentences, repeated."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("\n\n".join(SENTENCES * 60), encoding="utf-8")
    return folder


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def pattern(template: str, attr: str, entity: str) -> re.Pattern[str]:
    """A template as a regex matching its sentences about ``entity``'s ``attr``, a
    sibling being the same unit of the same place on another side."""
    side, rest = entity.split(" ", 2)[1], entity.split(" ", 2)[2]
    sibling = rf"the (?!{side} )(?:north|south|east|west) {re.escape(rest)}"
    fill = {"attr": re.escape(attr), "entity": re.escape(entity),
            "Entity": re.escape(entity[:1].upper() + entity[1:]), "sibling": sibling,
            "Sibling": "T" + sibling[1:], "value": r"\d{5}", "month": r"[A-Z][a-z]+",
            "season": r"[a-z]+"}
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(fill[p] if i % 2 else re.escape(p) for i, p in enumerate(parts))
    return re.compile(regex + "$")


def kind_of(sentence: str, question: str) -> set[tuple[str, str]]:
    """The (split, kind) whose templates render ``sentence`` about the asked entity
    ("genuine" for genuine ones)."""
    attr, entity = re.fullmatch(r"What is the ([\w ]+?) for (the .+)\?", question).groups()
    found = set()
    for split, half in HALVES.items():
        groups = {"genuine": half.genuine, **half.unreliable}
        for kind, templates in groups.items():
            if any(pattern(t, attr, entity).match(sentence) for t in templates):
                found.add((split, kind))
    return found


# --- the phrasings -------------------------------------------------------------------------


def test_at_least_ten_phrasings_per_kind_and_forty_in_all() -> None:
    total = 0
    for kind in CONFLICT_KINDS:
        dev, held = (HALVES[s].unreliable[kind] for s in CONFLICT_SPLITS)
        assert len(dev) + len(held) >= 10 and min(len(dev), len(held)) >= 5, kind
        total += len(dev) + len(held)
    assert total >= 40
    assert len(HALVES["dev"].genuine) + len(HALVES["heldout"].genuine) >= 10


def test_the_halves_are_disjoint_and_the_seeded_split_of_their_union() -> None:
    groups = ["genuine", *CONFLICT_KINDS]
    for group in groups:
        dev, held = (list(HALVES[s].genuine if group == "genuine" else
                          HALVES[s].unreliable[group]) for s in CONFLICT_SPLITS)
        assert not set(dev) & set(held) and len(set(dev)) == len(dev)
        assert split_phrasings(dev + held, group) == (sorted(dev), sorted(held))
    every = [t for half in HALVES.values() for g in (half.genuine, *half.unreliable.values())
             for t in g]
    assert len(every) == len(set(every))  # no phrasing in two kinds either


def test_templates_name_the_right_entity() -> None:
    for half in HALVES.values():
        for template in half.genuine:
            assert {"value", "attr"} <= fields(template) and fields(template) & {
                "entity", "Entity"} and not fields(template) & {"sibling", "Sibling"}
        for kind, templates in half.unreliable.items():
            for template in templates:
                names = fields(template)
                assert "value" in names, template
                wanted = {"sibling", "Sibling"} if kind == "sibling" else {"entity", "Entity"}
                assert names & wanted, template


def test_no_single_word_marks_a_kind() -> None:
    """Within a kind, no word but the common ones is in more than a quarter of the phrasings
    (e.g. "might" does not make a sentence hedged)."""
    for kind in CONFLICT_KINDS:
        templates = [t for half in HALVES.values() for t in half.unreliable[kind]]
        words: dict[str, int] = {}
        for template in templates:
            plain = re.sub(r"\{\w+\}", " ", template).lower()
            for word in set(re.findall(r"[a-z']+", plain)) - COMMON:
                words[word] = words.get(word, 0) + 1
        marker = max(words, key=words.__getitem__)
        assert words[marker] <= len(templates) / 4, (kind, marker, words[marker])


# --- the generator -------------------------------------------------------------------------


@pytest.mark.parametrize("split", CONFLICT_SPLITS)
@pytest.mark.parametrize("kind", CONFLICT_KINDS)
def test_a_conflict_task(corpus: Corpus, kind: str, split: str) -> None:
    task = conflict_task(kind, split, corpus, 3000, 0.5, seed=3)  # type: ignore[arg-type]
    assert task.kind == "conflict" and task.conflict_kind == kind
    assert task.conflict_split == split and task.scoring == "no_distractor"
    [gold] = task.evidence
    value = task.answers[0]
    assert task.text[gold.start:gold.end] == gold.text and value in gold.text
    assert kind_of(gold.text, task.question) == {(split, "genuine")}
    entity = re.fullmatch(r"What is the [\w ]+? for (the .+)\?", task.question).group(1)
    assert entity in gold.text or entity[:1].upper() + entity[1:] in gold.text
    assert len(task.distractors) == UNRELIABLE_PER_TASK
    assert len({value, *task.distractors}) == 1 + UNRELIABLE_PER_TASK
    positions = []
    for distractor in task.distractors:
        assert task.text.count(distractor) == 1
        [sentence] = [s for s in re.split(r"(?<=[.!?])\s+", task.text) if distractor in s]
        assert kind_of(sentence, task.question) == {(split, kind)}, sentence
        assert value not in sentence
        named = re.findall(r"the (?:north|south|east|west) \w+ of the [A-Z]\w+ [A-Z]\w+",
                           sentence.replace("The ", "the "))
        if kind == "sibling":  # the same fact about another entity of the same place
            others = [n for n in named if n != entity]
            assert others and all(n.split()[2:] == entity.split()[2:] for n in others)
        else:
            assert named == [entity]
        positions.append(task.text.index(distractor))
    assert min(positions) < gold.start < max(positions)  # one before, one after
    assert task.text.count(value) == 1


def test_conflict_tasks_from_generate_tasks(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "a.txt").write_text("\n\n".join(SENTENCES * 60), encoding="utf-8")
    tasks = generate_tasks(["conflict"], data=folder, lengths=[2000], depths=[0.3, 0.7],
                           conflict_split="heldout", conflict_kinds=["hedged", "sibling"])
    assert sorted((t.conflict_kind, t.depth) for t in tasks) == [
        ("hedged", 0.3), ("hedged", 0.7), ("sibling", 0.3), ("sibling", 0.7)]
    assert all(t.conflict_split == "heldout" for t in tasks)
    again = generate_tasks(["conflict"], data=folder, lengths=[2000], depths=[0.3, 0.7],
                           conflict_split="heldout", conflict_kinds=["hedged", "sibling"])
    assert [t.digest for t in tasks] == [t.digest for t in again]
    dev = generate_tasks(["conflict"], data=folder, lengths=[2000], depths=[0.3],
                         conflict_kinds=["hedged"])
    assert dev[0].conflict_split == "dev" and dev[0].digest != tasks[0].digest
    with pytest.raises(InputError, match="unknown conflict split"):
        generate_tasks(["conflict"], data=folder, lengths=[2000], conflict_split="test")
    with pytest.raises(InputError, match="unknown conflict kind"):
        generate_tasks(["conflict"], data=folder, lengths=[2000], conflict_kinds=["rumour"])


# --- the benchmark -------------------------------------------------------------------------

OUTCOME = {"hedged": "right", "unconfirmed": "right", "superseded": "none",
           "sibling": "both"}


def test_the_benchmark_end_to_end_on_the_simulated_server(sim, tmp_path: Path) -> None:
    """``benchmarks/conflicts.py`` as the lead runs it, against a scripted server: per kind
    the model answers the genuine value with its sentence (hedged, unconfirmed), nothing
    (superseded) or the genuine and an unreliable value (sibling)."""
    folder = one_file_folder(tmp_path)
    corpus = Corpus.from_folder(folder)
    tasks = [conflict_task(kind, "heldout", corpus, 1500, 0.25, 0, 0) for kind in
             CONFLICT_KINDS]

    def reply(messages: list[dict[str, str]]) -> str:
        prompt = messages[-1]["content"]
        [task] = [t for t in tasks if t.question in prompt]
        gold = task.evidence[0].text
        how = OUTCOME[task.conflict_kind]
        if how == "none":
            return "Answer: not found"
        answer = task.answers[0] if how == "right" else \
            f"{task.answers[0]} or {task.distractors[0]}"
        return f'Answer: {answer}\nQuote: "{gold}"\nConfidence: high'

    server = sim(reply)
    results = tmp_path / "out" / "results.jsonl"
    command = [sys.executable, "-m", "benchmarks.conflicts", "--split", "heldout",
               "--tokens", "1500", "--runs", "1", "--depths", "0.25", "--strategies",
               "direct", "--data", str(folder), "--results", str(results), "--no-progress"]
    done = subprocess.run(command, cwd=REPO, env=sim_env(server), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {line.split(" | ")[0].lstrip("| "): line for line in done.stdout.splitlines()
            if line.startswith("| ") and "| direct |" in line}
    # columns: runs, right supported, right unsupported, wrong, not found, not answered
    assert rows["hedged"].endswith("| direct | 1 | 1 | 0 | 0 | 0 | 0 |")
    assert rows["unconfirmed"].endswith("| direct | 1 | 1 | 0 | 0 | 0 | 0 |")
    assert rows["superseded"].endswith("| direct | 1 | 0 | 0 | 0 | 1 | 0 |")
    assert rows["sibling"].endswith("| direct | 1 | 0 | 0 | 1 | 0 | 0 |")
    assert "- overall: 2/4 (50%) runs" in done.stdout
    # The sibling answer's quote holds only one of its two values: not supported.
    assert "- wrong answers the pipeline marked supported: 0" in done.stdout
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["conflict_kind"] for r in lines) == sorted(CONFLICT_KINDS)
    assert all(r["cited_spans"] is not None and r["conflict_split"] == "heldout"
               for r in lines)
    calls = len(chats(server))
    again = subprocess.run(command, cwd=REPO, env=sim_env(server), capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and len(chats(server)) == calls  # resumed: nothing rerun
    assert len(results.read_text().splitlines()) == 4
    assert "- overall: 2/4 (50%) runs" in again.stdout


@pytest.mark.parametrize("args, message", [
    (["--split", "test"], "unknown conflict split"),
    (["--kinds", "rumour"], "unknown conflict kind"),
    (["--strategies", "fast"], "unknown strategy"),
    (["--tokens", "20x"], "--tokens"),
    (["--runs", "0"], "at least 1"),
    (["--data", "missing"], "data folder not found"),
])
def test_the_benchmark_rejects_bad_input(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.conflicts", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 3


def test_outcomes_of_runs(corpus: Corpus) -> None:
    """Each strict outcome the benchmark counts, from the pipeline's reply."""
    from longdoc.pipeline.evaluation.metrics import evaluate, failed, outcome
    from longdoc.pipeline.models import Answer, Citation

    task = conflict_task("superseded", "dev", corpus, 2000, 0.5)
    [gold] = task.evidence
    value, old = task.answers[0], task.distractors[0]
    on_gold = [Citation(source="d", page=None, start=gold.start, end=gold.end, quote="q")]

    def reply(answer: str, citations: list[Citation]) -> str:
        return outcome(evaluate(task, "auto", Answer(answer=answer, strategy="auto",
                                                     citations=citations), 1.0))

    assert reply(f"It is {value}.", on_gold) == "right, supported"
    assert reply(f"It is {value}.", []) == "right, unsupported"
    assert reply(f"It was {old}.", on_gold) == "wrong"
    assert reply(f"{value} (formerly {old})", on_gold) == "wrong"
    assert reply("It is 10.", []) == "wrong"
    assert reply("Not found: nothing in the document says.", []) == "not found"
    assert outcome(failed(task, "direct", "refused", "over budget", 0.1)) == "not answered"


def test_the_results_section(sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``make_results --only conflicts`` gets a section with the command and the table."""
    from benchmarks.conflicts import Config, results_section

    folder = one_file_folder(tmp_path)
    server = sim(lambda messages: "Answer: not found")
    for key, value in sim_env(server).items():
        if key.startswith("LONGDOC_"):
            monkeypatch.setenv(key, value)
    config = Config(split="dev", tokens=1500, runs=2, strategies=["direct"],
                    kinds=["sibling"], results=tmp_path / "r.jsonl", data=folder)
    section = results_section(config)
    assert section.startswith("## Conflicting evidence, dev phrasings (generated)")
    assert "--split dev --tokens 1500 --runs 2 --strategies direct --kinds sibling" in section
    assert "| sibling | direct | 2 | 0 | 0 | 0 | 2 | 0 |" in section
    assert "Model(s): sim-model" in section and "- overall: 0/2 (0%) runs" in section

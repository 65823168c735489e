"""Evaluation tasks generated from real text, deterministic from a seed.

Needle tasks (RULER/NIAH-style) put short synthetic facts ("needles") into a haystack of
real prose cut to a given number of cl100k tokens, each at a sentence boundary near its
depth (0 = start, 1 = end, measured in tokens):

- ``single_needle``: one fact, asked;
- ``multi_key``: several facts with different keys, one asked;
- ``multi_value``: several values of one key, all asked (scored by the fraction found);
- ``two_hop``: one fact points to another ("... is the room number of NAME"; "NAME
  sleeps in room N"), the second half a document later;
- ``distractor``: the fact, and elsewhere plausible but unsupported different values
  ("Some say ... might be N, but nobody checked.").

``conflict`` tasks (``conflict_task``) ask a code of a named entity ("the west wing of
the Marlow Archive") stated once plainly, with one unreliable statement of a different
value before it and one after it, both of one kind (hedged, unconfirmed claim,
superseded value or sibling entity; the phrasings and their development/held-out halves
are in ``conflicts``).

Reference tasks come from JSONL files of ``{"input", "instructions", "outputs"}`` lines
(as L-Eval's ``gov_report_summ.jsonl``): ``qa`` asks each instruction about the input
(scored by token F1 against the outputs), ``summary`` summarizes the input (scored by
ROUGE against the first output).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from longdoc.pipeline.errors import InputError, LongdocError
from longdoc.pipeline.evaluation.conflicts import (
    CONFLICT_KINDS,
    CONFLICT_SPLITS,
    ConflictKind,
    ConflictSplit,
    phrasings,
)
from longdoc.pipeline.ingest import SUPPORTED_SUFFIXES, load_document, text_document
from longdoc.pipeline.models import Document
from longdoc.pipeline.tokens import count_tokens, token_char_offsets

TaskKind = Literal[
    "single_needle", "multi_key", "multi_value", "two_hop", "distractor", "conflict", "qa",
    "summary"
]
NEEDLE_KINDS: tuple[TaskKind, ...] = (
    "single_needle", "multi_key", "multi_value", "two_hop", "distractor")
# Tasks whose gold values and evidence spans the generator plants (scored by value).
PLANTED_KINDS: tuple[TaskKind, ...] = (*NEEDLE_KINDS, "conflict")
REFERENCE_KINDS: tuple[TaskKind, ...] = ("qa", "summary")
TASK_KINDS: tuple[TaskKind, ...] = (*PLANTED_KINDS, *REFERENCE_KINDS)
Scoring = Literal["contains", "all_values", "no_distractor", "token_f1", "rouge"]
SCORING: dict[str, Scoring] = {
    "single_needle": "contains", "multi_key": "contains", "multi_value": "all_values",
    "two_hop": "contains", "distractor": "no_distractor", "conflict": "no_distractor",
    "qa": "token_f1", "summary": "rouge",
}

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data"
# In the default data folder the haystack is the addresses' prose (its PDFs are parser
# test cases and its README is not prose); any other folder uses every supported file.
DEFAULT_DATA_GLOBS = ("inaugural/*.txt", "state_union/*.txt")
ALL_GLOBS = tuple(f"**/*{suffix}" for suffix in SUPPORTED_SUFFIXES)
DEFAULT_LENGTHS = (4000, 8000, 16000)
DEFAULT_DEPTHS = (0.1, 0.5, 0.9)
MIN_LENGTH, MAX_LENGTH = 1000, 2_000_000

MULTI_KEYS = 4
MULTI_VALUES = 3
DISTRACTORS = 2
_ADJECTIVES = ("amber", "silent", "crimson", "hollow", "northern", "velvet", "iron", "pale",
               "golden", "quiet", "wandering", "frozen", "hidden", "copper", "distant")
_NOUNS = ("lantern", "harbor", "meadow", "falcon", "orchard", "compass", "glacier", "quarry",
          "lighthouse", "violin", "canyon", "parrot", "cathedral", "willow", "anchor")
_PEOPLE = ("Edith Crane", "Tobias Marlow", "Greta Holm", "Silas Fenwick", "Ada Quill",
           "Rufus Pennant", "Mira Castell", "Otto Brandt", "Lena Sorrel", "Hugo Vane")
_DISTRACTOR_FORMS = (
    "Some say the special magic number for {key} might be {value}, but nobody checked.",
    "A rumour had it that the special magic number for {key} was {value}, though this was "
    "never confirmed.",
    "An old note guessed the special magic number for {key} to be {value}, without any proof.",
)
# conflict tasks: "the {side} {unit} of the {place}", its siblings the other sides.
_PLACES = ("Marlow Archive", "Halvorsen Library", "Brandt Observatory", "Castell Museum",
           "Fenwick Clinic", "Sorrel Institute", "Quill Conservatory", "Pennant Gallery",
           "Holm Laboratory", "Crane Depot")
_UNITS = ("wing", "gate", "tower", "annex", "entrance")
_SIDES = ("north", "south", "east", "west")
_ATTRIBUTES = ("access code", "door code", "entry code", "security code")
_MONTHS = ("January", "March", "April", "June", "September", "November")
_SEASONS = ("spring", "summer", "autumn", "winter")
UNRELIABLE_PER_TASK = 2  # one before the genuine statement, one after it
_BOUNDARY = re.compile(r"[.!?][\"')\]]*\s+|\n[ \t]*\n\s*")


class Evidence(BaseModel):
    """A gold evidence sentence: ``task.text[start:end] == text``."""

    text: str
    start: int
    end: int
    depth: float = Field(description="Token position of its start / the text's tokens")


class EvalTask(BaseModel):
    """One evaluation item: a document, a request about it and how to score the reply."""

    id: str = Field(description="Readable: kind/length/depth/sample")
    digest: str = Field(description="Hash of everything that defines the task (resume key)")
    kind: TaskKind
    length: int = Field(description="Target length in cl100k tokens (the cell of the grid)")
    tokens: int = Field(description="Actual cl100k tokens of the document")
    depth: float | None = Field(None, description="Needle tasks: depth of the asked needle")
    sample: int = 0
    seed: int = 0
    question: str | None = Field(None, description="None for summaries")
    words: int | None = Field(None, description="Summaries: requested length in words")
    answers: list[str] = Field(description="Gold values (needles) or reference texts")
    distractors: list[str] = Field(default_factory=list, description="Unsupported values")
    conflict_kind: ConflictKind | None = Field(None, description="conflict: the unreliable kind")
    conflict_split: ConflictSplit | None = Field(None, description="conflict: phrasings' half")
    scoring: Scoring
    evidence: list[Evidence] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list, description="Corpus files the text uses")
    text: str = Field(repr=False)

    def file_name(self) -> str:
        return f"{self.id.replace('/', '_')}-{self.digest[:8]}.txt"

    def document(self) -> Document:
        """The task's text as the document of its file (``file_name``), read from no file:
        what ``write`` and reading the file back would give."""
        return text_document(self.text, self.file_name())

    def write(self, folder: Path) -> Path:
        """Write the document (exactly, so citation offsets index ``text``) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.file_name()
        if not path.is_file() or path.read_text(encoding="utf-8") != self.text:
            path.write_text(self.text, encoding="utf-8", newline="")
        return path


def task_digest(*parts: object) -> str:
    """The hash of everything that defines a task (its results' resume key)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Corpus:
    """Haystack prose: the documents of a folder, read once and tokenized lazily."""

    documents: list[tuple[str, str]]  # (relative name, text)

    @classmethod
    def from_folder(cls, folder: Path, globs: Sequence[str] | None = None) -> Corpus:
        """Every readable .txt/.md/.pdf matching ``globs`` under ``folder``, by name.

        Files that cannot be read (encrypted, image-only, corrupt PDFs) are skipped.
        """
        if not folder.is_dir():
            raise InputError(f"data folder not found: {folder}")
        if globs is None:
            globs = DEFAULT_DATA_GLOBS if folder.resolve() == DEFAULT_DATA.resolve() \
                else ALL_GLOBS
        paths = sorted({p for g in globs for p in folder.glob(g)
                        if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES})
        documents = []
        for path in paths:
            try:
                text = load_document(path).text
            except LongdocError:
                continue
            if text.strip():
                documents.append((str(path.relative_to(folder)), text.strip()))
        if not documents:
            raise InputError(f"no readable .txt, .md or .pdf file under {folder} "
                             f"(patterns {', '.join(globs)})")
        return cls(documents)

    @cached_property
    def token_counts(self) -> list[int]:
        return [count_tokens(text) for _, text in self.documents]

    @property
    def total_tokens(self) -> int:
        return sum(self.token_counts)

    def haystack(self, tokens: int, rng: random.Random) -> tuple[str, list[str]]:
        """About ``tokens`` tokens of prose (never more), ending at a sentence boundary:
        whole documents in a seeded order, the last one cut. Also the documents used."""
        if tokens > self.total_tokens:
            raise InputError(f"the corpus has only {self.total_tokens} tokens; cannot build "
                             f"a {tokens}-token haystack (give a larger data folder)")
        order = list(range(len(self.documents)))
        rng.shuffle(order)
        parts, names, have = [], [], 0
        for i in order:
            parts.append(self.documents[i][1])
            names.append(self.documents[i][0])
            have += self.token_counts[i] + 1
            if have > tokens + 50:
                break
        text = "\n\n".join(parts)
        offsets = token_char_offsets(text)
        if len(offsets) > tokens:
            text = text[:offsets[tokens]]
            ends = [m.end() for m in _BOUNDARY.finditer(text)]
            if ends and ends[-1] > len(text) // 2:
                text = text[:ends[-1]]
        return text.rstrip(), names


def insert_sentences(base: str, needles: Sequence[tuple[float, str]]) -> tuple[str, list[Evidence]]:
    """``base`` with each (depth, sentence) put at the sentence boundary nearest its depth
    (by tokens); the evidence spans in the result, in the order given."""
    offsets = token_char_offsets(base)
    boundaries = [0, *(m.end() for m in _BOUNDARY.finditer(base))]
    boundaries = [b for b in boundaries if b < len(base)]
    cuts = []
    for depth, _ in needles:
        target = offsets[min(len(offsets) - 1, int(depth * len(offsets)))] if offsets else 0
        i = bisect.bisect_left(boundaries, target)
        cuts.append(min(boundaries[max(0, i - 1): i + 1], key=lambda b: abs(b - target)))
    order = sorted(range(len(needles)), key=lambda i: (cuts[i], i))
    pieces, spans, pos, out_len = [], {}, 0, 0
    for i in order:
        sentence = needles[i][1]
        pieces.append(base[pos:cuts[i]])
        out_len += cuts[i] - pos
        pos = cuts[i]
        spans[i] = (out_len, out_len + len(sentence))
        pieces.append(sentence + " ")
        out_len += len(sentence) + 1
    pieces.append(base[pos:])
    text = "".join(pieces)
    starts = token_char_offsets(text)
    total = len(starts) or 1
    evidence = []
    for i, (_, sentence) in enumerate(needles):
        start, end = spans[i]
        evidence.append(Evidence(text=sentence, start=start, end=end,
                                 depth=round(bisect.bisect_left(starts, start) / total, 4)))
    return text, evidence


def parse_length(value: str) -> int:
    """'8000', '8k' or '1m' as a number of tokens (ValueError if it is none)."""
    scale = {"k": 1000, "m": 1_000_000}.get(value[-1:].lower(), 1)
    return int(float(value[:-1] if scale > 1 else value) * scale)


def _values(rng: random.Random, count: int, avoid: str, digits: int = 5) -> list[str]:
    """``count`` distinct random numbers of ``digits`` digits that do not occur in ``avoid``."""
    values: list[str] = []
    while len(values) < count:
        value = str(rng.randint(10 ** (digits - 1), 10 ** digits - 1))
        if value not in values and value not in avoid:
            values.append(value)
    return values


def _keys(rng: random.Random, count: int) -> list[str]:
    pairs = rng.sample([(a, n) for a in _ADJECTIVES for n in _NOUNS], count)
    return [f"{a}-{n}" for a, n in pairs]


def _spread(depth: float, count: int) -> list[float]:
    """``count`` depths: ``depth`` first, the others evenly around the document from it."""
    return [round((depth + i / count) % 1.0, 4) for i in range(count)]


def _fact(key: str, value: str) -> str:
    return f"The special magic number for {key} is {value}."


def _ask(key: str) -> str:
    return f"What is the special magic number for {key}?"


def needle_task(
    kind: TaskKind, corpus: Corpus, length: int, depth: float, sample: int = 0, seed: int = 0
) -> EvalTask:
    """One needle task of ``kind`` with about ``length`` tokens, asked needle at ``depth``."""
    if kind not in NEEDLE_KINDS:
        raise InputError(f"{kind!r} is not a needle task (choose from {list(NEEDLE_KINDS)})")
    rng = random.Random(f"{seed}:{kind}:{length}:{depth}:{sample}")
    keys = _keys(rng, MULTI_KEYS)
    key = keys[0]
    distractors: list[str] = []
    scoring: Scoring = "contains"
    if kind == "single_needle":
        values = _values(rng, 1, "")
        plan = [(depth, _fact(key, values[0]))]
        question, answers = _ask(key), values
    elif kind == "multi_key":
        values = _values(rng, MULTI_KEYS, "")
        depths = _spread(depth, MULTI_KEYS)
        plan = [(d, _fact(k, v)) for d, k, v in zip(depths, keys, values, strict=True)]
        question, answers = _ask(key), values[:1]
    elif kind == "multi_value":
        values = _values(rng, MULTI_VALUES, "")
        plan = [(d, f"One of the special magic numbers for {key} is {v}.")
                for d, v in zip(_spread(depth, MULTI_VALUES), values, strict=True)]
        question = f"What are all the special magic numbers for {key}?"
        answers, scoring = values, "all_values"
    elif kind == "two_hop":
        values = _values(rng, 1, "", digits=4)
        person = rng.choice(_PEOPLE)
        plan = [(depth, f"The special magic number for {key} is the room number of {person}."),
                (round((depth + 0.5) % 1.0, 4), f"{person} sleeps in room {values[0]}.")]
        question, answers = _ask(key), values
    else:  # distractor
        values = _values(rng, 1 + DISTRACTORS, "")
        forms = rng.sample(_DISTRACTOR_FORMS, DISTRACTORS)
        plan = [(depth, _fact(key, values[0]))]
        plan += [(d, form.format(key=key, value=v)) for d, form, v in
                 zip(_spread(depth, 1 + DISTRACTORS)[1:], forms, values[1:], strict=True)]
        question, answers, distractors = _ask(key), values[:1], values[1:]
        scoring = "no_distractor"
    reserve = sum(count_tokens(s) + 1 for _, s in plan)
    base, sources = corpus.haystack(max(1, length - reserve), rng)
    if any(v in base for v in answers + distractors):  # pragma: no cover - 5-digit clash
        raise InputError(f"a needle value occurs in the haystack ({kind}, seed {seed})")
    text, evidence = insert_sentences(base, plan)
    if kind == "distractor":
        evidence = evidence[:1]  # the distractors are not evidence
    task_id = f"{kind}/{length}/d{depth:.2f}/s{sample}"
    return EvalTask(
        id=task_id, digest=task_digest(task_id, seed, text, question, answers), kind=kind,
        length=length, tokens=count_tokens(text), depth=depth, sample=sample, seed=seed,
        question=question, answers=answers, distractors=distractors, scoring=scoring,
        evidence=evidence, sources=sources, text=text,
    )


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def conflict_task(
    conflict_kind: ConflictKind, split: ConflictSplit, corpus: Corpus, length: int,
    depth: float, sample: int = 0, seed: int = 0,
) -> EvalTask:
    """One ``conflict`` task: the genuine statement at ``depth``, an unreliable statement of
    ``conflict_kind`` (phrasings of ``split``) halfway before it and one halfway after it,
    each with a different value; the question asks about the genuine statement's entity."""
    if conflict_kind not in CONFLICT_KINDS:
        raise InputError(f"unknown conflict kind {conflict_kind!r} "
                         f"(choose from {list(CONFLICT_KINDS)})")
    forms = phrasings(split)
    rng = random.Random(f"{seed}:conflict:{split}:{conflict_kind}:{length}:{depth}:{sample}")
    unit, place, attr = rng.choice(_UNITS), rng.choice(_PLACES), rng.choice(_ATTRIBUTES)
    side, *others = rng.sample(_SIDES, 1 + UNRELIABLE_PER_TASK)
    entity = f"the {side} {unit} of the {place}"
    values = _values(rng, 1 + UNRELIABLE_PER_TASK, "")
    fields = {"attr": attr, "entity": entity, "Entity": _capital(entity),
              "month": rng.choice(_MONTHS), "season": rng.choice(_SEASONS)}
    genuine = rng.choice(forms.genuine).format(value=values[0], sibling="", Sibling="",
                                               **fields)
    plan = [(depth, genuine)]
    places = (round(depth / 2, 4), round(depth + (1 - depth) / 2, 4))
    templates = rng.sample(forms.unreliable[conflict_kind], UNRELIABLE_PER_TASK)
    for where, template, value, other in zip(places, templates, values[1:], others,
                                             strict=True):
        sibling = f"the {other} {unit} of the {place}"
        plan.append((where, template.format(value=value, sibling=sibling,
                                            Sibling=_capital(sibling), **fields)))
    question = f"What is the {attr} for {entity}?"
    reserve = sum(count_tokens(sentence) + 1 for _, sentence in plan)
    base, sources = corpus.haystack(max(1, length - reserve), rng)
    if any(v in base for v in values):  # pragma: no cover - 5-digit clash
        raise InputError(f"a planted value occurs in the haystack (conflict, seed {seed})")
    text, evidence = insert_sentences(base, plan)
    task_id = f"conflict/{length}/d{depth:.2f}/s{sample}/{split}-{conflict_kind}"
    return EvalTask(
        id=task_id, digest=task_digest(task_id, seed, text, question, values), kind="conflict",
        length=length, tokens=count_tokens(text), depth=depth, sample=sample, seed=seed,
        question=question, answers=values[:1], distractors=values[1:],
        conflict_kind=conflict_kind, conflict_split=split, scoring=SCORING["conflict"],
        evidence=evidence[:1], sources=sources, text=text,
    )


class ReferenceItem(BaseModel):
    """One line of a reference JSONL file."""

    input: str = Field(min_length=1)
    instructions: list[str] = Field(min_length=1)
    outputs: list[str] = Field(min_length=1)


def read_reference_file(path: Path) -> list[ReferenceItem]:
    """The items of a JSONL file of ``{"input", "instructions", "outputs"}`` lines, deduplicated."""
    if not path.is_file():
        raise InputError(f"reference file not found: {path}")
    items, seen = [], set()
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = ReferenceItem.model_validate_json(line)
            except ValueError as exc:
                why = str(exc).splitlines()[1:2] or [str(exc)]
                raise InputError(f"{path.name} line {number}: not a JSON object with 'input', "
                                 f"'instructions' and 'outputs' ({why[0].strip()})") from exc
            if item.input not in seen:
                seen.add(item.input)
                items.append(item)
    if not items:
        raise InputError(f"{path.name}: no reference items")
    return items


def summary_words(reference: str) -> int:
    """Requested summary length: the reference's words, within 50-500."""
    return max(50, min(500, len(reference.split())))


def reference_tasks(
    kind: TaskKind, files: Sequence[Path], lengths: Sequence[int], samples: int, seed: int = 0
) -> list[EvalTask]:
    """``qa`` or ``summary`` tasks from JSONL files: each item goes to the smallest length
    at least its token count (items longer than every length are skipped); up to
    ``samples`` items per length, chosen by the seed."""
    if kind not in REFERENCE_KINDS:
        raise InputError(f"{kind!r} is not a reference task (choose from {list(REFERENCE_KINDS)})")
    buckets: dict[int, list[tuple[str, ReferenceItem]]] = {n: [] for n in lengths}
    for path in files:
        for item in read_reference_file(path):
            tokens = count_tokens(item.input)
            fits = [n for n in sorted(lengths) if n >= tokens]
            if fits:
                buckets[fits[0]].append((path.name, item))
    tasks = []
    for length, items in buckets.items():
        rng = random.Random(f"{seed}:{kind}:{length}")
        chosen = rng.sample(items, min(samples, len(items)))
        for sample, (name, item) in enumerate(chosen):
            if kind == "qa":
                pairs = list(zip(item.instructions, item.outputs, strict=False))
                question, answer = pairs[rng.randrange(len(pairs))]
                refs, words = [answer], None
            else:
                question, refs, words = None, item.outputs[:1], summary_words(item.outputs[0])
            task_id = f"{kind}/{length}/s{sample}"
            tasks.append(EvalTask(
                id=task_id, digest=task_digest(task_id, seed, item.input, question, refs),
                kind=kind, length=length, tokens=count_tokens(item.input), sample=sample,
                seed=seed, question=question, words=words, answers=refs,
                scoring="token_f1" if kind == "qa" else "rouge", sources=[name],
                text=item.input,
            ))
    return tasks


def reference_files(folder: Path) -> list[Path]:
    """The JSONL files under ``folder``."""
    return sorted(folder.glob("**/*.jsonl")) if folder.is_dir() else []


def check_conflict_options(split: str, kinds: Sequence[str]) -> None:
    """InputError for an unknown split or conflict kind, or none."""
    if split not in CONFLICT_SPLITS:
        raise InputError(f"unknown conflict split {split!r} (choose from {list(CONFLICT_SPLITS)})")
    if not kinds:
        raise InputError("no conflict kinds given")
    for kind in kinds:
        if kind not in CONFLICT_KINDS:
            raise InputError(f"unknown conflict kind {kind!r} (choose from {list(CONFLICT_KINDS)})")


def generate_tasks(
    kinds: Iterable[TaskKind] = NEEDLE_KINDS,
    *,
    data: Path = DEFAULT_DATA,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    samples: int = 1,
    seed: int = 0,
    globs: Sequence[str] | None = None,
    reference: Sequence[Path] | None = None,
    conflict_split: ConflictSplit = "dev",
    conflict_kinds: Sequence[ConflictKind] = CONFLICT_KINDS,
) -> list[EvalTask]:
    """The task grid: needle kinds × lengths × depths × samples (``conflict``: also ×
    ``conflict_kinds``, phrasings of ``conflict_split``), plus reference tasks.

    ``reference`` names the JSONL files of ``qa``/``summary`` tasks (default: those
    under ``data``). Raises :class:`InputError` for bad parameters or data.
    """
    kinds = list(dict.fromkeys(kinds))
    for kind in kinds:
        if kind not in TASK_KINDS:
            raise InputError(f"unknown task {kind!r} (choose from {list(TASK_KINDS)})")
    if not lengths:
        raise InputError("no lengths given")
    for length in lengths:
        if not MIN_LENGTH <= length <= MAX_LENGTH:
            raise InputError(f"length {length} is out of range ({MIN_LENGTH}-{MAX_LENGTH} tokens)")
    for depth in depths:
        if not 0.0 <= depth <= 1.0:
            raise InputError(f"depth {depth} is out of range (0-1)")
    if samples < 1:
        raise InputError(f"samples must be at least 1 (got {samples})")
    if "conflict" in kinds:
        check_conflict_options(conflict_split, conflict_kinds)
    tasks: list[EvalTask] = []
    planted = [k for k in kinds if k in PLANTED_KINDS]
    if planted:
        if not depths:
            raise InputError("no depths given")
        corpus = Corpus.from_folder(data, globs)
        for kind in planted:
            for length in lengths:
                for depth in depths:
                    for sample in range(samples):
                        if kind != "conflict":
                            tasks.append(needle_task(kind, corpus, length, depth, sample, seed))
                            continue
                        tasks += [conflict_task(c, conflict_split, corpus, length, depth,
                                                sample, seed)
                                  for c in dict.fromkeys(conflict_kinds)]
    ref_kinds = [k for k in kinds if k in REFERENCE_KINDS]
    if ref_kinds:
        files = list(reference) if reference is not None else reference_files(data)
        if not files:
            raise InputError(f"tasks {ref_kinds} need a JSONL reference file (none under {data})")
        for kind in ref_kinds:
            tasks += reference_tasks(kind, files, lengths, samples, seed)
    return tasks


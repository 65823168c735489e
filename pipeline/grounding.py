"""Grounding: whether source text supports an answer, and how firmly it states it.

Every strategy and the final verifier use this module; no strategy reads evidence with
code of its own.

Support
    ``answer_keys`` are the strings that identify an answer: its numbers (weight 3),
    capitalized names (2) and other long words (1), question words left out. A sentence
    *supports* an answer when it holds the answer's key (every number or name of the
    strongest weight; for a free-text answer at least half its words), is about the
    question (holds at least one of the question's key words, when the question has
    any) and is not document text that tries to act as an instruction or as the reply
    protocol (``pipeline/injection.py``). Existence in the source is not enough.

Stance (``stance``): how a sentence stands behind a value, from grammatical word
classes rather than phrases of any one document:

    uncertain    a modal or epistemic word ("might", "could", "perhaps", "likely",
                 "seems"), a conditional ("if", "unless", "whether") or a question.
    attributed   the value is somebody's report, not the text's own assertion: a
                 reporting verb ("claimed", "said", "was believed", "rumoured",
                 "according to", "in one account"), or a negated confirmation
                 ("never confirmed", "nobody checked", "unverified").
    superseded   the value held in the past and changed: a past bound ("until", "before
                 ..."), a former-state word ("formerly", "previously", "used to", "old",
                 "original") or a change verb ("replaced", "retired", "changed",
                 "superseded", "no longer"). A clause that states the *current* value
                 ("now", "currently", "new", "as of") is not superseded by those words.
    sibling      the sentence speaks of a neighbouring entity: where the question has a
                 pair of adjacent key words (``west wing``), the sentence keeps one and
                 puts a word the question lacks in place of the other (``east wing``).

Features are read from the clause that holds the value when a sentence names other
values too ("was 1234 until May; the code is now 5678"), else from the whole sentence.
A sentence with none of the four flags is *firm*. The map-reduce reduce keeps only the
answers with firm evidence when there are any, and asks the model only when features do
not decide; the model's self-reported confidence never outranks evidence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from itertools import pairwise

from bm25s.stopwords import STOPWORDS_EN_PLUS
from pydantic import BaseModel

from longdoc.pipeline.folding import normalize
from longdoc.pipeline.injection import imitates_protocol, is_instruction_like

MIN_SENTENCE_CHARS = 8
MIN_PARAGRAPH_OVERLAP = 2  # content words a summary citation shares with its paragraph
# A sentence runs to . ! ? (and closing quotes) or a blank line; single newlines are
# line wraps (PDF text), not sentence ends.
_SENTENCE = re.compile(r"(?:[^.!?。！？\n]|\n(?![ \t]*\n))+(?:[.!?。！？]+[\"')\]]*|\n[ \t]*\n|$)")
_WORD = re.compile(r"[^\W_]+")
_NUMBER = re.compile(r"\d[\d,.:/-]*\d|\d")
STOPWORDS = frozenset(STOPWORDS_EN_PLUS) | frozenset(
    "what which who whom whose how when where why does did".split()
)


# --- words and sentences -----------------------------------------------------------------


def sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of the sentences (or lines) of ``text[start:end]``, whitespace trimmed."""
    end = len(text) if end is None else end
    spans = []
    for m in _SENTENCE.finditer(text, start, end):
        s, e = m.start(), m.end()
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e - s >= MIN_SENTENCE_CHARS:
            spans.append((s, e))
    return spans


def words(text: str) -> list[str]:
    """The casefolded words of ``text`` in order (letters and digits; ``_`` splits)."""
    return _WORD.findall(text.casefold())


def content_tokens(text: str) -> list[str]:
    """The words worth comparing, in order: no stop words, 3+ characters unless a number."""
    return [w for w in words(text) if w not in STOPWORDS and (len(w) > 2 or w.isdigit())]


def content_words(text: str) -> set[str]:
    """The distinct ``content_tokens`` of ``text``."""
    return set(content_tokens(text))


def overlap(text: str, reference: str) -> int:
    """Distinct content words ``text`` shares with ``reference``."""
    return len(content_words(text) & content_words(reference))


# --- answer keys and support -------------------------------------------------------------


def answer_keys(answer: str, question: str = "") -> dict[str, int]:
    """Strings of an answer worth finding in the source, with weights.

    Numbers weigh 3, capitalized names 2, other long words 1; words of the question
    are left out (every candidate sentence would match them).
    """
    question_words = content_words(question)
    keys: dict[str, int] = {}

    def add(key: str, weight: int) -> None:
        key = key.strip(".,:/-").casefold()
        if key and key not in question_words and key not in STOPWORDS:
            keys[key] = max(keys.get(key, 0), weight)

    for number in _NUMBER.findall(answer):
        add(number, 3)
    for word in _WORD.findall(answer):
        if word[:1].isupper() and len(word) > 2:
            add(word, 2)
        elif len(word) > 4:
            add(word, 1)
    return keys


def answer_key(answer: str, question: str) -> list[str]:
    """The strings that identify an answer: its numbers, else its names, else its words."""
    keys = answer_keys(answer, question)
    if not keys:
        return []
    top = max(keys.values())
    return sorted(k for k, w in keys.items() if w == top)


def question_keys(question: str) -> list[str]:
    """The question's own key words (its numbers, names and long words)."""
    return sorted(answer_keys(question))


def contains(folded: str, key: str) -> bool:
    """Whether ``key`` occurs in already normalized text as a whole word."""
    return re.search(rf"(?<!\w){re.escape(key)}(?!\w)", folded) is not None


def count_keys(keys: Iterable[str], text: str) -> int:
    """How many of ``keys`` occur in ``text`` as whole words (case-insensitive)."""
    folded = normalize(text).text
    return sum(contains(folded, k) for k in keys)


def relevance(question: str, text: str) -> int:
    """How many of the question's key words occur in ``text``."""
    return count_keys(question_keys(question), text)


def key_supported(key: list[str], text: str) -> bool:
    """Whether ``text`` holds the answer key (case- and whitespace-insensitive).

    Numbers must all occur, and so must a key of one or two strings (a name: "Bob Smith"
    is not "Alice Smith"); of a longer key at least half.
    """
    if not key:
        return False
    present = count_keys(key, text)
    if any(k[:1].isdigit() for k in key) or len(key) <= 2:
        return present == len(key)
    return present >= math.ceil(len(key) / 2)


def is_steering(text: str) -> bool:
    """Document text that addresses a model or imitates its reply: never evidence."""
    return is_instruction_like(text) or imitates_protocol(text)


def acceptable(text: str, key: list[str]) -> bool:
    """Whether ``text`` holds ``key`` and is not steering text."""
    return key_supported(key, text) and not is_steering(text)


def supports(text: str, answer: str, question: str) -> bool:
    """Whether source ``text`` supports ``answer`` to ``question`` (see the module doc)."""
    key = answer_key(answer, question)
    if not acceptable(text, key):
        return False
    return not question_keys(question) or relevance(question, text) > 0


def supports_paragraph(text: str, paragraph: str) -> bool:
    """Whether source ``text`` can cite a summary ``paragraph``: it shares at least
    ``MIN_PARAGRAPH_OVERLAP`` content words with it and is not steering text."""
    return overlap(text, paragraph) >= MIN_PARAGRAPH_OVERLAP and not is_steering(text)


def supporting(texts: list[str], answer: str, question: str) -> list[int]:
    """Which of the cited ``texts`` support ``answer`` together (indices, in order).

    A text supports it when it holds the answer's key (``acceptable``) and is about the
    question (holds a question key word): an answer key found in sentences on other
    subjects ("10" in seven unrelated sentences) is not support. Only when no text does
    both, a two-hop pair counts: a text about the question that names what a key-holding
    text names ("A's code is B's room number" ... "B's room is 4127").
    """
    key = answer_key(answer, question)
    bearing = [i for i, t in enumerate(texts) if acceptable(t, key)]
    about = [i for i, t in enumerate(texts) if not is_steering(t)
             and (not question_keys(question) or relevance(question, t) > 0)]
    direct = [i for i in bearing if i in about]
    if direct:
        return direct
    names = {k for i in bearing for k, w in answer_keys(texts[i], question).items() if w >= 2}
    bridges = [i for i in about if i not in bearing and count_keys(names, texts[i]) > 0]
    if not bridges:
        return []
    bridged = {k for i in bridges for k, w in answer_keys(texts[i], question).items() if w >= 2}
    return sorted([*bridges, *(i for i in bearing if count_keys(bridged, texts[i]) > 0)])


def best_sentence(
    text: str, key: list[str], question: str, start: int = 0, end: int | None = None
) -> tuple[int, int] | None:
    """The sentence of ``text[start:end]`` that holds ``key`` and no steering text; among
    those the one with most question words, then the firmest, then the first."""
    best, best_score = None, None
    for s, e in sentences(text, start, end):
        sentence = text[s:e]
        if not acceptable(sentence, key):
            continue
        score = (relevance(question, sentence), -stance(sentence, key, question).flags)
        if best_score is None or score > best_score:
            best, best_score = (s, e), score
    return best


# --- stance ------------------------------------------------------------------------------


def _alternation(*parts: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b", re.I)


_UNCERTAIN = _alternation(
    r"might", r"could", r"would", r"perhaps", r"maybe", r"possib(?:ly|le|ility)",
    r"probabl[ey]", r"likely", r"unlikely", r"presumabl[ey]", r"apparent(?:ly)?",
    r"seem(?:s|ed|ingly)?", r"appear(?:s|ed)? to", r"suspect(?:s|ed)?", r"guess(?:es|ed)?",
    r"wonder(?:s|ed)?", r"unsure", r"not sure", r"uncertain", r"unclear", r"doubt(?:s|ful|ed)?",
    r"speculat\w*", r"conceivabl[ey]", r"hypothe\w+", r"if", r"unless", r"whether",
)
_MAY = re.compile(r"\bmay\b(?!\s+\d)|^\W*May\b(?!\s+\d)")  # the modal, not the month
_REPORTING = _alternation(
    r"claim(?:s|ed|ing)?", r"sa(?:y|ys|id)", r"tell(?:s)?|told", r"suggest(?:s|ed|ing)?",
    r"believ(?:e|es|ed|ing)", r"thought", r"think(?:s|ing)?", r"rumou?r(?:s|ed)?",
    r"report(?:s|ed|edly)?", r"alleg(?:e|es|ed|edly)", r"assum(?:e|es|ed|ing)",
    r"suppos(?:e|es|ed|edly)", r"heard", r"hearsay", r"gossip\w*", r"insist(?:s|ed)?",
    r"recall(?:s|ed)?", r"remember(?:s|ed)?", r"maintain(?:s|ed)?", r"contend(?:s|ed)?",
    r"asserted", r"according to", r"in (?:one|some|an?|another) (?:account|version|story|"
    r"telling|source|note|letter|memo)", r"word (?:has it|was)", r"legend", r"anecdot\w*",
    r"(?:one|some|an?) (?:visitor|guest|source|witness|person|observer|writer|author)s?",
)
_NEGATION = (r"(?:\b(?:never|not|no|nobody|no one|none|neither|nor|without|cannot|failed to)\b"
             r"|n't\b)")
_CONFIRM = (r"(?:confirm\w*|verif\w*|check\w*|prov(?:e|ed|en)|establish\w*|corroborat\w*|"
            r"substantiat\w*|document(?:ed)?|validat\w*|test(?:ed)?|vouch\w*|official\w*)")
_UNCONFIRMED = re.compile(
    rf"{_NEGATION}(?:\W+\w+){{0,4}}?\W+{_CONFIRM}\b"
    r"|\b(?:un(?:confirmed|verified|substantiated|proven|checked|documented|official|tested|"
    r"corroborated|reliable)|dubious|questionable|disputed|contested|mistaken|erroneous|"
    r"incorrect|wrong|false)\b",
    re.I,
)
_PAST_BOUND = _alternation(
    r"until", r"till", r"up to", r"formerly", r"previously", r"used to", r"once",
    r"earlier", r"old", r"older", r"former", r"original(?:ly)?", r"prior", r"initially",
    r"at first", r"outdated", r"obsolete", r"expired", r"retired", r"replac(?:ed|ement)",
    r"supersed(?:ed|es)", r"chang(?:ed|es)", r"discontinued", r"revoked", r"deprecated",
    r"no longer", r"abandoned", r"reassigned", r"withdrawn", r"cancel(?:l)?ed", r"lapsed",
    r"retracted", r"overwritten", r"in the past", r"back then", r"\w+ ago",
    r"last (?:year|month|week|time|season|spring|summer|autumn|fall|winter|\w+day)",
    r"in (?:earlier|previous|past|former) (?:years|days|times)", r"had been",
)
_PAST_TENSE = _alternation(r"was", r"were", r"had")
_CURRENT = _alternation(
    r"now", r"currently", r"current", r"new", r"newly", r"today", r"at present",
    r"presently", r"as of", r"latest", r"(?:changed|updated|replaced|reset|set) to",
    r"has been", r"in force", r"in effect", r"valid", r"active",
)
_CLAUSE = re.compile(r"[;:]|,\s*(?=(?:but|while|whereas|although|though|however|and now|"
                     r"yet)\b)|\s[-–—]\s|\((?=[^)]*\))|\)")


class Stance(BaseModel):
    """How one sentence stands behind a value (see the module doc for the rules)."""

    uncertain: bool = False
    attributed: bool = False
    superseded: bool = False
    sibling: bool = False

    @property
    def flags(self) -> int:
        """How many of the four weaknesses the sentence has (0: firm)."""
        return self.uncertain + self.attributed + self.superseded + self.sibling

    @property
    def firm(self) -> bool:
        return self.flags == 0

    def labels(self) -> list[str]:
        return [name for name in ("uncertain", "attributed", "superseded", "sibling")
                if getattr(self, name)]


def clause_of(sentence: str, key: list[str], others: Iterable[str] = ()) -> str:
    """The clause of ``sentence`` that holds ``key`` when another value (``others``) is
    named in the same sentence; otherwise the whole sentence."""
    folded = normalize(sentence).text
    rivals = [k for k in others if k not in key and contains(folded, k)]
    if not rivals or not key:
        return sentence
    bounds = [0, *(m.end() for m in _CLAUSE.finditer(sentence)), len(sentence)]
    clauses = [sentence[a:b] for a, b in pairwise(bounds) if b > a]
    holding = [c for c in clauses if count_keys(key, c) and not count_keys(rivals, c)]
    return holding[0] if holding else sentence


def _modifier_pairs(text: str) -> list[tuple[str, str]]:
    """Adjacent content-word pairs of ``text`` ("west wing", "access code")."""
    tokens = words(text)
    content = content_words(text)
    return [(a, b) for a, b in pairwise(tokens) if a in content and b in content
            and not a.isdigit() and not b.isdigit() and a != b]


def is_sibling(sentence: str, question: str) -> bool:
    """Whether ``sentence`` names a neighbour of the question's entity: where the question
    has two adjacent key words (``west wing``), the sentence has one of them next to a
    word the question lacks in the other's place (``east wing``), anywhere in it."""
    asked = set(content_words(question))
    pairs = _modifier_pairs(question)
    if not pairs:
        return False
    for x, y in _modifier_pairs(sentence):
        for a, b in pairs:
            if (y == b and x != a and x not in asked) or (x == a and y != b and y not in asked):
                return True
    return False


def stance(sentence: str, key: list[str], question: str, others: Iterable[str] = ()) -> Stance:
    """The stance of ``sentence`` toward the value ``key`` (``others``: rival values).

    The question's own words describe the subject, not a stance ("the old mill"), so they
    are masked before the word classes are matched.
    """
    asked = content_words(question)
    if asked:
        pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(asked))) + r")\b", re.I)
        masked = pattern.sub(lambda m: "_" * len(m.group(0)), sentence)
    else:
        masked = sentence
    found = stance_of_clause(masked, clause_of(masked, key, others), others)
    return found.model_copy(update={"sibling": is_sibling(sentence, question)})


def stance_of_clause(sentence: str, clause: str, others: Iterable[str]) -> Stance:
    """The word-class flags of ``clause`` (the value's clause of ``sentence``)."""
    superseded = _PAST_BOUND.search(clause) is not None and not (
        _CURRENT.search(clause) and not _PAST_BOUND.search(_CURRENT.sub(" ", clause))
    )
    rest = sentence.replace(clause, " ") if clause is not sentence else ""
    if rest and not superseded and not count_keys(others, rest):
        # "was 1234 until May; it has since been replaced", "... was 1234; a new one has
        # since been issued": the change is told in a clause after the value's.
        superseded = (bool(_PAST_BOUND.search(rest)) and not _CURRENT.search(rest)) or \
            (bool(_PAST_TENSE.search(clause)) and bool(_CURRENT.search(rest)))
    return Stance(
        uncertain=_UNCERTAIN.search(clause) is not None or _MAY.search(clause) is not None
        or clause.rstrip().endswith("?"),
        attributed=_REPORTING.search(clause) is not None
        or _UNCONFIRMED.search(sentence) is not None,
        superseded=superseded,
    )

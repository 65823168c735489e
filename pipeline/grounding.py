"""Grounding: whether source text supports an answer, and how firmly it states it.

Every strategy and the final verifier use this module; no strategy reads evidence with
code of its own.

Support
    ``answer_keys`` are the strings that identify an answer: its numbers (weight 3),
    capitalized names (2) and other long words (1), question words left out. A sentence
    *supports* an answer when it holds the answer's key (every number or name of the
    strongest weight; for a free-text answer at least half its words), is about the
    question (holds at least one of the question's key words, when the question has
    any; or, given a sentence embedder's ``Similarity``, means what the question asks
    about: cosine at least ``SEMANTIC_ABOUT``, for a question that paraphrases its
    answer) and is not document text that tries to act as an instruction or as the reply
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
from typing import Literal, Protocol

from bm25s.stopwords import STOPWORDS_EN_PLUS
from pydantic import BaseModel

from longdoc.pipeline.folding import normalize
from longdoc.pipeline.injection import imitates_protocol, is_instruction_like

MIN_SENTENCE_CHARS = 8
SHORT_ANSWER_WORDS = 4  # in an answer this short a number word ("seven") is its value
MIN_PARAGRAPH_OVERLAP = 2  # content words a summary citation shares with its paragraph
# Cosine (all-MiniLM-L6-v2) of a sentence with the question at which the sentence is about
# the question though it holds none of its key words. The development paraphrase needles
# (benchmarks/retrieval_bench.py, the first five) score 0.38-0.58 against their questions;
# of 5,000 sentences of the 1M-token haystack 0-0.5 % reach 0.35 (median 0.04 %). At 0.3,
# "Lawrence River Basin ... 1945" (0.31) and "the Sandy Recovery Improvement Act of 2013"
# (0.30) were about a boat taken out of service after bad weather, and ended auto's
# reading at 1M and 2M tokens with a wrong year.
SEMANTIC_ABOUT = 0.35


class Similarity(Protocol):
    """How close a text is in meaning to one question (a cosine), from a sentence embedder
    (``retrieval.question_similarity``)."""

    def __call__(self, text: str) -> float: ...

    def many(self, texts: list[str]) -> list[float]: ...

# A sentence runs to . ! ? (and closing quotes) or a blank line; single newlines are
# line wraps (PDF text), not sentence ends, nor is a decimal point ("$6.8 billion").
_SENTENCE = re.compile(r"(?:[^.!?。！？\n]|(?<=\d)\.(?=\d)|\n(?![ \t]*\n))+"
                       r"(?:[.!?。！？]+[\"')\]]*|\n[ \t]*\n|$)")
# Periods that end no sentence: after a title ("Mr. Smith") when the line goes on; after
# an initial inside a name or an abbreviation ("John F. Kennedy", "U.S.") or after a
# company, date or number abbreviation ("Inc.", "Corp.'s", "No. 5") when the text goes on
# in lower case, digits or punctuation ("U.S. Visudyne" still ends at "U.S.").
_TITLE = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Prof|Rev|Gov|Sen|Rep|Lt|Sgt|Capt|Col|Gen|St|Mt|Ft|vs)"
                    r"\.$")
_INITIAL = re.compile(r"\b[A-Z]\.$")  # not in a name: _NAME_INITIAL is tried first
_NAME_INITIAL = re.compile(r"\b[A-Z][a-z]+[ \t]+[A-Z]\.$")
_ABBREVIATION = re.compile(r"\b(?:Inc|Corp|Co|Ltd|Bros|Jr|Sr|No|Jan|Feb|Mar|Apr|Aug|Sept?|"
                           r"Oct|Nov|Dec)\.[\"')\]’]*$")
_LINE_GOES_ON = re.compile(r"[ \t]*\S")
_GOES_ON = re.compile(r"[ \t]*[a-z0-9'’,;:(&%$-]|[A-Za-z]\.")


def _ends_sentence(text: str, start: int, end: int) -> bool:
    """Whether the period that ends ``text[start:end]`` ends a sentence."""
    if _TITLE.search(text, start, end) or _NAME_INITIAL.search(text, start, end):
        return not _LINE_GOES_ON.match(text, end)
    if _INITIAL.search(text, start, end) or _ABBREVIATION.search(text, start, end):
        return not _GOES_ON.match(text, end)
    return True


_WORD = re.compile(r"[^\W_]+")
_NUMBER = re.compile(r"\d[\d,.:/-]*\d|\d")
STOPWORDS = frozenset(STOPWORDS_EN_PLUS) | frozenset(
    "what which who whom whose how when where why does did".split()
)


# --- words and sentences -----------------------------------------------------------------


def sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of the sentences (or lines) of ``text[start:end]``, whitespace trimmed. A
    period after an abbreviation or an initial ("Inc.", "Corp.", "U.S.", "John F.") ends
    no sentence."""
    end = len(text) if end is None else end
    spans = []
    opened: int | None = None
    for m in _SENTENCE.finditer(text, start, end):
        s, e = m.start() if opened is None else opened, m.end()
        if e < end and not _ends_sentence(text, s, e):
            opened = s
            continue
        opened = None
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

    Numbers weigh 3 (in a short answer number words too: "seven"), capitalized names 2,
    other long words 1; words of the question are left out (every candidate sentence
    would match them).
    """
    question_words = content_words(question)
    keys: dict[str, int] = {}

    def add(key: str, weight: int) -> None:
        key = key.strip(".,:/-").casefold()
        if key and key not in question_words and key not in STOPWORDS:
            keys[key] = max(keys.get(key, 0), weight)

    for number in _NUMBER.findall(answer):
        add(number, 3)
    short = len(_WORD.findall(answer)) <= SHORT_ANSWER_WORDS
    for word in _WORD.findall(answer):
        if short and word.casefold() in NUMBER_WORDS:  # "seven", "third": a number
            add(word, 3)
        elif word[:1].isupper() and len(word) > 2:
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


def relevance(question: str, text: str, similar: Similarity | None = None) -> float:
    """How much ``text`` is about ``question``, from 0 to 1: the share of the question's
    key words it holds; for a text with none, its closeness in meaning (``similar``'s
    cosine, when at least ``SEMANTIC_ABOUT``), so that a paraphrase of the question
    outranks a sentence that shares one common word with it ("military service" for a
    boat "taken out of service"). 0 for a question without key words."""
    keys = question_keys(question)
    hits = count_keys(keys, text)
    if hits:
        return hits / len(keys)
    if similar is None or not keys:
        return 0.0
    closeness = similar(text)
    return closeness if closeness >= SEMANTIC_ABOUT else 0.0


def mentions(question: str, text: str) -> bool:
    """Whether ``text`` holds one of the question's key words."""
    return count_keys(question_keys(question), text) > 0


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


def is_about(question: str, text: str, similar: Similarity | None = None) -> bool:
    """Whether ``text`` is about ``question``: it holds one of the question's key words
    (any text is, for a question without any), or means what it asks (``relevance``)."""
    return not question_keys(question) or relevance(question, text, similar) > 0


def supports(text: str, answer: str, question: str, similar: Similarity | None = None) -> bool:
    """Whether source ``text`` supports ``answer`` to ``question`` (see the module doc)."""
    return acceptable(text, answer_key(answer, question)) and is_about(question, text, similar)


def supports_paragraph(text: str, paragraph: str) -> bool:
    """Whether source ``text`` can cite a summary ``paragraph``: it shares at least
    ``MIN_PARAGRAPH_OVERLAP`` content words with it and is not steering text."""
    return overlap(text, paragraph) >= MIN_PARAGRAPH_OVERLAP and not is_steering(text)


def supporting(texts: list[str], answer: str, question: str,
               similar: Similarity | None = None) -> list[int]:
    """Which of the cited ``texts`` support ``answer`` together (indices, in order).

    A text supports it when it holds the answer's key (``acceptable``) and is about the
    question (holds a question key word): an answer key found in sentences on other
    subjects ("10" in seven unrelated sentences) is not support. Only when no text does
    both, a two-hop pair counts: a text about the question that names what a key-holding
    text names ("A's code is B's room number" ... "B's room is 4127").
    """
    key = answer_key(answer, question)
    bearing = [i for i, t in enumerate(texts) if acceptable(t, key)]
    about = [i for i, t in enumerate(texts)
             if not is_steering(t) and is_about(question, t, similar)]
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
    text: str, key: list[str], question: str, start: int = 0, end: int | None = None,
    similar: Similarity | None = None,
) -> tuple[int, int] | None:
    """The sentence of ``text[start:end]`` that holds ``key`` and no steering text; among
    those the one with most question words (``relevance``), then the firmest, then the
    first."""
    best, best_score = None, None
    for s, e in sentences(text, start, end):
        sentence = text[s:e]
        if not acceptable(sentence, key):
            continue
        score = (relevance(question, sentence, similar),
                 -stance(sentence, key, question).flags)
        if best_score is None or score > best_score:
            best, best_score = (s, e), score
    return best


# --- question types and fitted answers ---------------------------------------------------

QuestionType = Literal["passages", "yesno", "explain", "date", "number", "name", "place",
                       "phrase"]
# "... act as a member of the call and answer the question: What ..." asks "What ...".
_PREAMBLE = re.compile(r"^.*?\banswer (?:the|this|my|a) question\s*:\s*(?=\S)", re.I | re.S)
_PASSAGES_Q = re.compile(
    r"\b(?:which|what) (?:parts?|sections?|clauses?|passages?|provisions?|sentences?|"
    r"paragraphs?|portions?|lines?)\b|\bhighlight\b|\bquote the\b", re.I)
_YESNO_Q = re.compile(r"^\W*(?:is|are|was|were|am|do|does|did|can|could|has|have|had|will|"
                      r"would|should|shall|must|may|might)\b", re.I)
_WH = re.compile(r"\b(?:who|whom|whose|what|when|where|which|why|how)\b", re.I)
_EXPLAIN_Q = re.compile(
    r"^\W*(?:why|how (?:do|does|did|is|are|was|were|has|have|had|can|could|will|would|"
    r"should)|describe|explain|discuss|summari[sz]e|elaborate|can you|could you)\b"
    r"|\bwhat (?:are|were) (?:some|the) (?:key|main|major)\b"
    r"|\bwhat (?:\w+ )?(?:actions|steps|factors|reasons|measures|plans?|strateg(?:y|ies)|"
    r"challenges|impact|effect|role|perspective|outlook)\b", re.I)
_DATE_Q = re.compile(r"^\W*when\b|\b(?:what|which) (?:year|date|day|month|decade|century)\b"
                     r"|\bin what year\b|\bwhen (?:did|does|do|is|was|were|will)\b", re.I)
_NUMBER_Q = re.compile(r"\bhow (?:many|much|long|old|far|big|tall|high|often)\b"
                       r"|\b(?:what|which) (?:number|percentage|percent|amount|total)\b", re.I)
_NAME_Q = re.compile(r"^\W*(?:who|whom|whose)\b|\b(?:by|to|with|for) whom\b"
                     r"|\bwho (?:is|was|are|were|plays|played|does|did|has|won)\b", re.I)
_PLACE_Q = re.compile(r"^\W*where\b|\bwhere (?:is|was|are|were|do|does|did)\b"
                      r"|\b(?:what|which) (?:country|city|state|place|location|town|island|"
                      r"region|continent)\b", re.I)
SHORT_PHRASE_WORDS = 6  # a name question's answer this short is kept whole if it is no name
EXPLAIN_WORDS = 16  # a question this long wants an explanation (unless it opens "when"...)

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|"
          r"aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_YEAR = r"(?:1[0-9]{3}|20[0-9]{2})(?:s)?"
_DATE = re.compile(
    rf"\b(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?\s*,?\s*{_YEAR}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\s*,?\s*{_YEAR}"
    rf"|{_MONTH}\s*,?\s*{_YEAR}|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?\b"
    rf"|(?:early|mid|late)\s*-?\s*{_YEAR}|{_YEAR})\b", re.I)
NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve "
                "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty "
                "forty fifty sixty seventy eighty ninety hundred thousand million billion "
                "first second third fourth fifth sixth seventh eighth ninth tenth").split()
_AMOUNT = re.compile(
    r"(?:[$€£]\s*)?\b\d[\d,]*(?:\.\d+)?(?:\s*(?:%|percent|million|billion|thousand|"
    r"trillion))?(?!\w)"
    r"|\b(?:" + "|".join(NUMBER_WORDS) + r")(?:[\s-]+(?:" + "|".join(NUMBER_WORDS) + r"))*\b",
    re.I)
# A name: capitalized words, joined by particles, initials and hyphens ("Dr. Heinz
# Doofenshmirtz", "Kareem Abdul - Jabbar", "Harry Potter and the Philosopher's Stone").
_CAP = r"(?:[A-Z][\w'’.]*|[A-Z]\.)"
_NAME = re.compile(
    rf"{_CAP}(?:(?:\s+(?:of|the|de|da|del|van|von|der|la|le|and|&|-)){{0,2}}\s+{_CAP}"
    rf"|\s*-\s*{_CAP})*")
_MARKUP = re.compile(r"</?[A-Za-z][\w=\"'-]*>")
_DENIED = re.compile(r"\b(?:not|never|rather than|instead of|unlike|except)\s+(?:the\s+|a\s+)?"
                     r"(?:[A-Z][\w'’.-]*\s*)+")
_CALENDAR = re.compile(rf"{_MONTH}|(?:mon|tues|wednes|thurs|fri|satur|sun)day", re.I)
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.I)
_NEGATED = re.compile(r"\b(?:not|no|never|none|cannot|neither|nor)\b|n't\b", re.I)
_COPULA = re.compile(r"\s(?:is|are|was|were|is called|was called|are called|named|"
                     r"became|becomes|remains|by)\s", re.I)


EXPLANATION_WORDS = 60  # an explanation answer: the best sentences up to this many words
EXPLANATION_RERANK = 50  # with a sentence embedder, the lexical best this many are reranked


def explanation_spans(texts: list[str], question: str, answer: str = "",
                      budget: int = EXPLANATION_WORDS, similar: Similarity | None = None
                      ) -> list[tuple[int, int, int]]:
    """The sentences of ``texts`` that explain the answer to ``question``, as (text index,
    start, end) in document order.

    Each sentence scores the inverse sentence frequency of the question's content words
    (``stems``) it holds (the ``answer``'s other words at half weight: what the strategy
    read points at its evidence); a sentence must hold at least two of the question's
    words (one if the question has only one) and no steering text. With ``similar`` (a
    sentence embedder's closeness to the question), the best ``EXPLANATION_RERANK`` by
    that score are ranked by closeness in meaning instead (tuned on the financial
    questions outside the real-QA subset: token F1 0.288 -> 0.312). The best are taken
    until ``budget`` words.
    """
    asked = stems(question_core(question))
    told = stems(answer) - asked
    spans = [(i, s, e) for i, text in enumerate(texts) for s, e in sentences(text)]
    frequency: dict[str, int] = {}
    held = [stems(texts[i][s:e]) for i, s, e in spans]
    for found in held:
        for word in found & (asked | told):
            frequency[word] = frequency.get(word, 0) + 1
    total = len(spans) + 1
    need = min(2, len(asked))
    scored: list[tuple[float, tuple[int, int, int]]] = []
    for span, found in zip(spans, held, strict=True):
        if not asked or len(found & asked) < need:
            continue
        score = sum(math.log(total / frequency[w]) for w in found & asked) + \
            0.5 * sum(math.log(total / frequency[w]) for w in found & told)
        scored.append((score, span))
    scored.sort(key=lambda item: (-item[0], item[1]))
    if similar is not None and scored:
        best = scored[:EXPLANATION_RERANK]
        closeness = similar.many([texts[i][s:e] for _, (i, s, e) in best])
        scored = [(c, span) for c, (_, span) in zip(closeness, best, strict=True)]
        scored.sort(key=lambda item: (-item[0], item[1]))
    chosen, used, seen = [], 0, set()
    for _, (i, s, e) in scored:
        if used >= budget:
            break
        said = " ".join(words(texts[i][s:e]))
        if is_steering(texts[i][s:e]) or said in seen:  # a repeated sentence says nothing new
            continue
        seen.add(said)
        chosen.append((i, s, e))
        used += len(words(texts[i][s:e]))
    return sorted(chosen)


_SUFFIX = re.compile(r"(?:ing|ed|es|s|ly)$")


def stems(text: str) -> set[str]:
    """The content words of ``text`` without a plain inflection ("governed", "governing"
    -> "govern"; "laws" -> "law")."""
    return {w if w.isdigit() else (_SUFFIX.sub("", w) if len(w) > 5 else w.rstrip("s"))
            for w in content_words(text)}


def question_core(question: str) -> str:
    """The question itself, without a role-play preamble ("... answer the question: ")."""
    return _PREAMBLE.sub("", question.strip(), count=1) or question.strip()


def question_type(question: str) -> QuestionType:
    """What shape of answer ``question`` wants (see ``fit_answer``).

    In order: verbatim passages ("which parts of the contract ..."), an explanation
    (why/how does, "can you ...", several wh-words), yes/no (it opens with an auxiliary
    verb), a date, a number, a name, a place, else a phrase; a question of
    ``EXPLAIN_WORDS`` words or more wants an explanation unless it opens with its
    wh-word ("when was the last time ...").
    """
    core = question_core(question)
    if _PASSAGES_Q.search(core):
        return "passages"
    if len(_WH.findall(core)) > 1 or _EXPLAIN_Q.search(core):
        return "explain"
    if _YESNO_Q.search(core) and " or " not in core.casefold():
        return "yesno"
    long = len(words(core)) >= EXPLAIN_WORDS
    for kind, pattern in (("date", _DATE_Q), ("number", _NUMBER_Q), ("name", _NAME_Q),
                          ("place", _PLACE_Q)):
        found = pattern.search(core)
        if found:  # a long question asks for more than the value, unless it opens with it
            return kind if found.start() < 3 or not long else "explain"  # type: ignore
    return "explain" if long else "phrase"


_SENTENCE_BREAK = re.compile(r"[.!?]+[\"')\]”’]*\s+(?=[A-Z\"“‘(])|\n")


def first_sentence(text: str) -> str:
    """The first sentence of an answer (or its first line); "Dr." and initials do not end
    one."""
    text = text.strip()
    for m in _SENTENCE_BREAK.finditer(text):
        if m.group(0) != "\n" and not _ends_sentence(text, 0, m.start() + 1):
            continue
        return text[:m.start() + (0 if m.group(0) == "\n" else 1)].strip()
    return text


def holds_words(text: str, span: str) -> bool:
    """Whether ``text`` holds the words of ``span`` in a row (case, spacing and
    punctuation aside: "July 16 , 2017" holds "July 16, 2017")."""
    wanted = " ".join(words(span))
    return bool(wanted) and re.search(rf"(?<!\w){re.escape(wanted)}(?!\w)",
                                      " ".join(words(text))) is not None


def _clean(span: str) -> str:
    return span.strip().strip(" ,;:").rstrip(".").strip()


def _new_words(span: str, question: str) -> bool:
    """Whether ``span`` says something the question does not (a word beyond its words)."""
    asked = set(words(question))
    return any(w not in asked and w not in STOPWORDS for w in words(span))


def typed_spans(answer: str, kind: QuestionType, question: str = "") -> list[str]:
    """The spans of ``answer`` of the shape ``kind`` wants (dates, amounts, names), in
    order, that are not the question's own words (nor markup: "<H1>", "<Li>")."""
    answer = _MARKUP.sub(" ", answer)
    if kind == "date":
        found = [m.group(0) for m in _DATE.finditer(answer)]
    elif kind == "number":  # a range ("from 101 to 60") is one answer
        amount = _AMOUNT.pattern
        ranges = re.compile(rf"(?:\bfrom\s+|\bbetween\s+)?(?:{amount})\s*(?:to|and|-|–)\s*"
                            rf"(?:{amount})|\bto\s+(?:{amount})\s+from\s+(?:{amount})", re.I)
        found = [m.group(0) for m in ranges.finditer(answer)]
        found += [m.group(0) for m in _AMOUNT.finditer(answer)]
    elif kind in ("name", "place"):
        answer = re.sub(r"\s*\([^()]*\)", "", answer)  # an aside: "Charter (CRC)"
        answer = _DENIED.sub(" ", answer)  # "..., not the United States": not the answer
        found = [m.group(0) for m in _NAME.finditer(answer)]
        if kind == "place":  # "Vancouver, British Columbia"
            joined = re.finditer(rf"{_NAME.pattern}(?:\s*,\s*{_NAME.pattern})*", answer)
            found = [m.group(0) for m in joined]
        found = [re.sub(r"^(?:The|A|An)\s+", "", f) for f in found]
        # A name made mostly of the question's own words names its subject, not the
        # answer; a month or weekday is no name.
        found = [f for f in found if _new_share(f, question) >= 0.5
                 and not _CALENDAR.fullmatch(f.strip(" .,"))]
    else:
        return []
    return [_clean(f) for f in found if _clean(f) and _new_words(f, question)]


def _new_share(span: str, question: str) -> float:
    said = [w for w in words(span) if w not in STOPWORDS]
    asked = set(words(question))
    return sum(w not in asked for w in said) / len(said) if said else 0.0


def nearest_spans(texts: Iterable[str], kind: QuestionType, question: str) -> list[str]:
    """The ``kind`` spans of ``texts``, nearest (in words) to a content word of the
    question first."""
    asked = content_words(question)
    ranked: list[tuple[int, int, str]] = []
    for text in texts:
        tokens = words(text)
        anchors = [i for i, w in enumerate(tokens) if w in asked]
        for span in typed_spans(text, kind, question):
            first = words(span)[:1]
            at = [i for i, w in enumerate(tokens) if first and w == first[0]]
            distance = min((abs(i - a) for i in at for a in anchors), default=len(tokens))
            ranked.append((distance, len(ranked), span))
    return [span for _, _, span in sorted(ranked)]


def strip_restatement(answer: str, question: str) -> str:
    """``answer`` without a leading restatement of the question: "The evil guy's name is
    Dr. X" -> "Dr. X" when the words before the verb are all the question's (or a
    pronoun: "It is X")."""
    asked = content_words(question)
    for m in _COPULA.finditer(answer):
        head, tail = answer[:m.start()], answer[m.end():]
        head_words = content_words(head)
        restated = head_words <= asked if head_words else len(words(head)) <= 2  # "It is"
        if restated and _new_words(tail, question):
            return _clean(tail)
    return _clean(answer)


def fit_answer(answer: str, question: str, evidence: Iterable[str] = ()) -> str:
    """The shortest form of ``answer`` that answers ``question`` by its type.

    date, number, name, place: the first span of that shape in the answer that the
    ``evidence`` (verified citations) holds, else the first such span, else (dates and
    numbers) the first in the evidence (a short phrase
    answer to a name or place question that does not open with a name stays whole);
    yes/no: "Yes" or
    "No" (a bare restatement of the question asserts it, so yes unless negated);
    phrase: the answer's first sentence without a restatement of the question;
    explanations and passages keep the answer as it is. An answer with none of the
    wanted shape keeps its phrase form.
    """
    core = question_core(question)
    kind = question_type(core)
    text = answer.strip()
    if not text or kind in ("explain", "passages"):
        return text
    first = first_sentence(text)
    if kind == "yesno":
        said = _YES_NO.match(first)
        if said:
            return said.group(1).capitalize()
        return "No" if _NEGATED.search(first) and not _NEGATED.search(core) else "Yes"
    phrase = strip_restatement(first, core)
    spans = typed_spans(first, kind, core)
    evidence = list(evidence)
    if not spans and kind in ("date", "number"):  # "... renewed. It premiered on <date>."
        spans = typed_spans(text, kind, core)
        # else the shortest span of the supporting evidence that answers: its date or
        # number nearest to the question's words
        spans = spans or nearest_spans(evidence, kind, core)[:1]
    if kind in ("name", "place") and spans and len(words(phrase)) <= SHORT_PHRASE_WORDS \
            and not phrase.startswith(spans[0]):
        return phrase  # "Canadian citizens and everyone in Canada": a phrase names them
    if spans:
        held = [s for s in spans if any(holds_words(t, s) for t in evidence)]
        return (held or spans)[0]
    return phrase


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


def firmly_stated(texts: Iterable[str], key: list[str], question: str) -> bool:
    """Whether one of ``texts`` states the answer ``key`` firmly (``stance``: not hedged,
    attributed, superseded or about a neighbouring entity)."""
    return any(stance(text, key, question).firm for text in texts)


def firm_value(texts: list[str], key: list[str], question: str, weak: list[str]
               ) -> tuple[str, int, int, int] | None:
    """When an answer's numeric ``key`` rests only on the ``weak`` sentences (hedged,
    attributed or superseded: ``stance``), the one other number that sentences as much
    about the question (as many of its key words) state firmly, with its sentence (text
    index, start, end): a plain statement outweighs a rumour, wherever each was read.
    None when the key is no number, or no other value or several are stated firmly."""
    if not key or not all(_NUMBER.fullmatch(k) for k in key):
        return None
    keys = question_keys(question)
    need = max((count_keys(keys, w) for w in weak), default=0)
    asked = set(_NUMBER.findall(question))
    found: dict[str, tuple[int, int, int]] = {}
    for i, text in enumerate(texts):
        for s, e in sentences(text):
            sentence = text[s:e]
            if count_keys(keys, sentence) < max(need, min(2, len(keys)), 1):
                continue
            for value in set(_NUMBER.findall(sentence)) - asked - set(key):
                if stance(sentence, [value], question).firm:
                    found.setdefault(value, (i, s, e))
    if len(found) != 1:
        return None
    value, (i, s, e) = next(iter(found.items()))
    return value, i, s, e


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
    update = {"sibling": is_sibling(sentence, question)}
    if question_type(question) == "date":
        # A date dates an event, and a change is an event: "retired in 1931" answers when
        # the boat was taken out of service; nothing that held before was superseded.
        update["superseded"] = False
    return found.model_copy(update=update)


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

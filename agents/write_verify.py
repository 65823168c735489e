"""Deterministic checks of ``longdoc write``: citation markers, support, figures, conflicts.

Nothing here calls a model. The rules, built on ``pipeline/grounding.py``:

marker      ``[2]``, ``[2, 5]``, ``[2][5]`` after (or inside) a sentence cite evidence
            items by their number in the prompt; a marker at the start of a sentence
            belongs to the sentence before it (the model puts it after the period).
support     a cited evidence sentence *supports* an article sentence when it is not
            steering text and shares at least ``MIN_SHARED`` content words with it, and
            at least ``SUPPORT_SHARE`` of the sentence's content words (the writer
            paraphrases, so not all of them). Existing in the source is not enough.
figures     the numbers (dates and years included), month names and capitalized names of
            a sentence; its first word only when the documents never use it in lower case
            ("Johnson, ..." is a name, "The", "Our" and "Federal" are not). Each must
            occur, as a whole word, in a cited source sentence of the same paragraph
            (``untraced``); numbers match with or without thousands separators and with an
            ordinal or plural ending ("81st").
conflicts   two evidence sentences from different sources that state different values
            (a number with its unit) about the same thing: the values' neighbourhoods
            share at least ``CONFLICT_SHARED`` subject words (content words that are not
            numbers, units or filler) and the units agree. Years are context, not values.
"""

from __future__ import annotations

import math
import re
from itertools import combinations

from pydantic import BaseModel

from longdoc.pipeline.folding import normalize
from longdoc.pipeline.grounding import STOPWORDS, contains, content_words, is_steering, sentences
from longdoc.pipeline.state import Evidence

MIN_SHARED = 2
SUPPORT_SHARE = 0.25
CONFLICT_SHARED = 2
CONFLICT_WINDOW = 8  # words either side of a value that describe what it measures
MAX_CONFLICTS = 6

_MARKER = re.compile(
    r"\[\s*(?:evidence\s*|source\s*|ref\.?\s*)?(\d{1,3}(?:\s*[,;&]\s*\d{1,3})*)\s*\]", re.I)
_TRAILING_MARKERS = re.compile(r"([.!?]+[\"')]*)((?:\s*\[[^\[\]]{1,30}\])+)")
_LEADING_MARKERS = re.compile(r"^(?:\s*\[[^\]]{0,30}\])+")
_NUMBER = re.compile(r"\d[\d,.:/-]*\d|\d")
_LOWER_WORD = re.compile(r"(?<![\w'’-])[a-z][a-z'’-]*")
_TOKEN = re.compile(r"\$?\d[\d,.]*\d%?|\$?\d%?|[^\W\d_][\w'’-]*")
MONTHS = frozenset("january february march april june july august september october "
                   "november december".split())  # "may" is a modal as often as a month
OPENERS = frozenset(  # words that open sentences in any text, capitalized there only
    "however moreover furthermore additionally therefore thus hence finally overall "
    "meanwhile instead indeed still yet also another first second third today together "
    "similarly likewise consequently nevertheless nonetheless accordingly".split())
UNITS = {"billion": "billion", "billions": "billion", "million": "million",
         "millions": "million", "thousand": "thousand", "percent": "percent",
         "per": "percent", "%": "percent", "trillion": "trillion"}
FILLER = frozenset("year years total about over nearly almost more less than some least most "
                   "cent per percent dollars dollar billion million thousand trillion fiscal "
                   "last next first second third new now also coming pounds euros".split())


def count_words(text: str) -> int:
    """Words as the length targets count them: whitespace-separated, markers excluded."""
    return len(_MARKER.sub(" ", text).split())


def markers_inside(text: str) -> str:
    """"end. [2] Next" -> "end [2]. Next": a marker after the period stays with its
    sentence (and a paragraph ending in a marker ends in a period)."""
    return _TRAILING_MARKERS.sub(lambda m: m.group(2) + m.group(1), text)


def split_marked(paragraph: str) -> list[tuple[str, list[int]]]:
    """The sentences of ``paragraph`` with the marker numbers each carries, markers removed.

    A marker opening a sentence goes to the sentence before it.
    """
    out: list[tuple[str, list[int]]] = []
    paragraph = markers_inside(paragraph)
    for s, e in sentences(paragraph):
        text = paragraph[s:e]
        leading = _LEADING_MARKERS.match(text)
        if leading and out:
            out[-1][1].extend(_numbers(leading.group(0)))
            text = text[leading.end():]
        numbers = _numbers(text)
        clean = " ".join(_MARKER.sub(" ", text).split())
        clean = re.sub(r"\s+([.,;:!?])", r"\1", clean)
        if any(ch.isalpha() for ch in clean):
            out.append((clean, numbers))
        elif out:
            out[-1][1].extend(numbers)
    return [(text, list(dict.fromkeys(numbers))) for text, numbers in out]


def _numbers(text: str) -> list[int]:
    return [int(n) for m in _MARKER.finditer(text) for n in re.findall(r"\d+", m.group(1))]


def common_words(texts: list[str]) -> frozenset[str]:
    """Words the texts use in lower case: a capitalized sentence opener that is not one of
    them ("Johnson, ...") is a name."""
    return frozenset(w.casefold() for t in texts for w in _LOWER_WORD.findall(t))


def figures(sentence: str, common: frozenset[str] | None = None) -> list[str]:
    """The numbers, months and proper names of ``sentence`` (casefolded, in order). The
    first word counts as a name only when ``common`` is given and lacks it."""
    found: list[str] = []
    tokens = _TOKEN.findall(_MARKER.sub(" ", sentence))
    for position, token in enumerate(tokens):
        if token[:1].isdigit() or token[:2].startswith("$"):
            for number in _NUMBER.findall(token):
                found.append(number.strip(".,:/-"))
            continue
        word = token.strip("'’-")
        folded = word.casefold()
        opener_is_name = common is not None and folded.removesuffix("'s") not in common \
            and folded not in OPENERS
        if folded in MONTHS or ((position > 0 or opener_is_name) and word[:1].isupper()
                                and len(word) > 2 and folded not in STOPWORDS):
            found.append(folded.removesuffix("'s").removesuffix("’s"))
    return list(dict.fromkeys(f for f in found if f))


def _folded(texts: list[str]) -> list[str]:
    folded = [normalize(t).text for t in texts]
    return folded + [re.sub(r"(?<=\d),(?=\d{3})", "", t) for t in folded]


def untraced(sentence: str, texts: list[str], common: frozenset[str] | None = None
             ) -> list[str]:
    """The figures of ``sentence`` that occur in none of ``texts`` (source sentences)."""
    folded = _folded(texts)
    missing = []
    for key in figures(sentence, common):
        if key[:1].isdigit():
            forms = {key, key.replace(",", "")}
            found = any(re.search(rf"(?<!\w){re.escape(f)}(?:st|nd|rd|th|s)?(?!\w)", t)
                        for f in forms for t in folded)
        else:
            found = any(contains(t, key) for t in folded)
        if not found:
            missing.append(key)
    return missing


def supports_sentence(evidence: str, sentence: str) -> bool:
    """Whether the source ``evidence`` can be cited for ``sentence`` (module doc)."""
    if is_steering(evidence):
        return False
    words = content_words(_MARKER.sub(" ", sentence))
    shared = len(words & content_words(evidence))
    return shared >= max(MIN_SHARED, math.ceil(len(words) * SUPPORT_SHARE))


def support_score(evidence: str, sentence: str) -> tuple[int, int]:
    """(figures of ``sentence`` the evidence holds, content words shared): for ranking."""
    held = len(figures(sentence)) - len(untraced(sentence, [evidence]))
    return held, len(content_words(sentence) & content_words(evidence))


def best_support(sentence: str, pool: list[Evidence]) -> Evidence | None:
    """The pool's evidence that supports ``sentence`` and holds most of its figures."""
    ranked = sorted((ev for ev in pool if supports_sentence(ev.text, sentence)),
                    key=lambda ev: support_score(ev.text, sentence), reverse=True)
    return ranked[0] if ranked else None


# --- conflicts ------------------------------------------------------------------------------


class Mention(BaseModel):
    """A value stated in an evidence sentence and the words around it."""

    value: str  # the number as written, with its unit: "37.7 billion"
    number: str  # comparable: digits without separators
    unit: str
    subject: list[str]  # content words near the value, in order


class Conflict(BaseModel):
    """Two sources stating different values for the same thing."""

    subject: list[str]
    first: Evidence
    second: Evidence
    first_value: str
    second_value: str

    def sentence(self) -> str:
        """The article's statement of both values; it cites ``first`` then ``second`` (the
        references name the sources: file names would add figures no quote holds)."""
        about = " ".join(self.subject[:3])
        return (f"The sources give different figures for {about}: one gives "
                f"{self.first_value}, another {self.second_value}.")


def _is_year(token: str) -> bool:
    return bool(re.fullmatch(r"1[6-9]\d\d|20\d\d", token))


def mentions(text: str) -> list[Mention]:
    """The values (non-year numbers with their units) of a source sentence."""
    tokens = _TOKEN.findall(text)
    found = []
    for i, token in enumerate(tokens):
        if not token[:1].isdigit() and not token.startswith("$"):
            continue
        number = token.strip("$%").rstrip(".,")
        if not number or _is_year(number):
            continue
        following = tokens[i + 1].casefold() if i + 1 < len(tokens) else ""
        unit = "percent" if token.endswith("%") else UNITS.get(following, "")
        window = tokens[max(0, i - CONFLICT_WINDOW):i] + tokens[i + 1:i + 1 + CONFLICT_WINDOW]
        subject = [w.casefold() for w in window if not w[:1].isdigit() and not
                   w.startswith("$")]
        subject = [w for w in dict.fromkeys(subject)
                   if w in content_words(w) and w not in FILLER and w not in MONTHS]
        value = ("$" if token.startswith("$") else "") + number + \
            (f" {following}" if unit and following in UNITS and unit != "percent" else "") + \
            (" percent" if unit == "percent" else "")
        found.append(Mention(value=value, number=number.replace(",", ""), unit=unit,
                             subject=subject))
    return found


def find_conflicts(pool: list[Evidence], limit: int = MAX_CONFLICTS) -> list[Conflict]:
    """Pairs of evidence from different sources giving different values for one thing,
    most shared subject words first, each evidence sentence and each pair of values in
    at most one."""
    stated = [(ev, m) for ev in pool for m in mentions(ev.text)]
    candidates = []
    for (ev_a, a), (ev_b, b) in combinations(stated, 2):
        if ev_a.source == ev_b.source or a.number == b.number or a.unit != b.unit:
            continue
        shared = [w for w in a.subject if w in b.subject]
        if len(shared) >= CONFLICT_SHARED:
            candidates.append((len(shared), ev_a, ev_b, a, b, shared))
    candidates.sort(key=lambda c: (-c[0], c[1].source, c[1].start, c[2].start))
    used: set[tuple[str, int]] = set()
    stated_values: set[frozenset[str]] = set()
    conflicts = []
    for _, ev_a, ev_b, a, b, shared in candidates:
        keys = {(ev_a.source, ev_a.start), (ev_b.source, ev_b.start)}
        values = frozenset({a.number + a.unit, b.number + b.unit})
        if keys & used or values in stated_values:
            continue
        used |= keys
        stated_values.add(values)
        conflicts.append(Conflict(subject=shared, first=ev_a, second=ev_b,
                                  first_value=a.value, second_value=b.value))
        if len(conflicts) == limit:
            break
    return conflicts

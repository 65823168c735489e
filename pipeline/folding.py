"""Text folding for comparisons: case, Unicode forms, typographic quotes, whitespace.

``normalize`` keeps a map from every folded character back to the original text, so a
match found in folded text is a span of the original.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

_FOLD = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\u00a0": " "})


@dataclass(frozen=True)
class Normalized:
    """Folded text and, for each of its characters, the offset in the original."""

    text: str
    index: list[int]


def normalize(text: str) -> Normalized:
    """Casefold, fold quotes/dashes, collapse whitespace; keep a map back to ``text``."""
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKC", ch).translate(_FOLD).casefold():
            if c.isspace():
                if not out or out[-1] == " ":
                    continue
                c = " "
            out.append(c)
            index.append(i)
    if out and out[-1] == " ":
        out.pop()
        index.pop()
    return Normalized("".join(out), index)

"""Cut a chunk into windows an embedder reads whole (it would silently truncate the rest).

Windows end at sentence boundaries where possible and are cut inside a sentence only
when the sentence alone is longer than a window. Consecutive windows share the last
sentence of the earlier one when it is short, so no sentence loses all its context.
Together the windows cover every token of the text.
"""

from __future__ import annotations

import re
from bisect import bisect_left

_SENTENCE_BREAK = re.compile(r"[.!?。！？][\"')\]”’]*\s+|\n[ \t]*\n\s*")


def _sentence_starts(text: str, offsets: list[int]) -> list[int]:
    """Token indices where a sentence starts (always 0 and ``len(offsets)``)."""
    starts = {0, len(offsets)}
    for match in _SENTENCE_BREAK.finditer(text):
        starts.add(bisect_left(offsets, match.end()))
    return sorted(starts)


def window_spans(text: str, offsets: list[int], max_tokens: int) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the windows of ``text``, each holding at most
    ``max_tokens`` of the tokens starting at ``offsets`` (the embedder's tokens)."""
    n = len(offsets)
    if n == 0:
        return [(0, len(text))] if text.strip() else []
    if n <= max_tokens:
        return [(0, len(text))]
    bounds = _sentence_starts(text, offsets)
    hard_overlap = max(1, min(32, max_tokens // 8))
    spans: list[tuple[int, int]] = []
    first = 0
    while True:
        limit = first + max_tokens
        # The last sentence start in (first, limit]; a sentence longer than a window is cut.
        i = bisect_left(bounds, limit + 1) - 1
        cut = bounds[i] if bounds[i] > first else min(limit, n)
        start = 0 if first == 0 else offsets[first]
        end = len(text) if cut >= n else offsets[cut]
        while end > start + 1 and text[end - 1].isspace():
            end -= 1
        spans.append((start, end))
        if cut >= n:
            return spans
        if bounds[i] > first:
            # Share the window's last sentence with the next one when it is short.
            j = bisect_left(bounds, cut) - 1
            last_sentence = bounds[j]
            short = cut - last_sentence <= max_tokens // 4
            nxt = last_sentence if first < last_sentence and short else cut
        else:
            nxt = cut - hard_overlap
        first = max(nxt, first + 1)

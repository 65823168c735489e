"""HTML markup in documents, turned into plain text with its structure kept.

Web pages saved as text (and ``.html`` files) carry tags that cost tokens and read as noise
to a small model: in the L-Eval Wikipedia pages a third of the tokens are tags such as
``<Td_colspan="2">``. ``plain_text`` keeps what the tags mean for reading: paragraphs and
headings become blank-line separated blocks, list items lines of their own ("- item"),
table rows lines whose cells are separated by " | " (so an infobox row reads
"Production location ( s ) | Vancouver , British Columbia"), and every other tag a space.
The result is the document's text: citations point into it, as they point into a PDF's
extracted text.
"""

from __future__ import annotations

import html
import re

# A tag: "<P>", "</Td>", "<Td_colspan="2">" (L-Eval's form), "<a href='...'>"; a name must
# follow "<" directly or after "/", so "a < b > c" in prose is no tag.
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)(?:[_\s][^<>]*)?/?>")
_BLOCKS = frozenset(
    "p div h1 h2 h3 h4 h5 h6 table ul ol dl dd dt br hr section article header footer "
    "blockquote pre caption tbody thead tfoot figure figcaption nav aside main form".split())
_KNOWN = _BLOCKS | frozenset(
    "tr td th li a b i u em strong span small sup sub code img html head body title meta "
    "link script style abbr cite q s strike font center".split())
_SKIPPED = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.I | re.S)
MIN_TAGS = 10  # fewer known tags than this: the text is not markup
MIN_TAG_SHARE = 0.05  # the share of the text's characters that tags must make up


def is_markup(text: str) -> bool:
    """Whether ``text`` is HTML markup rather than prose that mentions a tag or two: at
    least ``MIN_TAGS`` known HTML tags, making up ``MIN_TAG_SHARE`` of its characters."""
    tags = [m for m in _TAG.finditer(text) if m.group(2).lower() in _KNOWN]
    return len(tags) >= MIN_TAGS and sum(len(m.group(0)) for m in tags) >= \
        MIN_TAG_SHARE * len(text)


def _replacement(match: re.Match[str]) -> str:
    closing, name = match.group(1), match.group(2).lower()
    if name not in _KNOWN:
        return match.group(0)  # "<Foo>" that is no HTML tag stays text
    if name == "tr":
        return "\n"
    if name in ("td", "th"):
        return " " if closing else " | "
    if name == "li":
        return "\n" if closing else "\n- "
    if name in _BLOCKS:
        return "\n\n"
    return " "


def plain_text(text: str) -> str:
    """``text`` with its HTML tags replaced by the structure they mark (see the module
    doc), entities decoded and spacing tidied; scripts and styles are dropped."""
    out = _TAG.sub(_replacement, _SKIPPED.sub(" ", text))
    out = html.unescape(out)
    out = re.sub(r"[ \t\r\f\v]+", " ", out)
    out = re.sub(r" ?\n ?", "\n", out)
    out = re.sub(r"\n(?:\| ?)+", "\n", out)  # a row's leading cell separator
    out = re.sub(r"(?: ?\|)+\n", "\n", out)  # empty cells at a row's end
    out = re.sub(r"\| (?:\| )+", "| ", out)  # empty cells inside a row
    out = re.sub(r"\n{3,}", "\n\n", out)
    return out.strip()

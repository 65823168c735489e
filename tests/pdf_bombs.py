"""Small PDFs that are expensive to read ("PDF bombs"), built on the fly: a repository must
not carry them, and a test needs only a few kilobytes to make one."""

from __future__ import annotations

import io

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject


def text_bomb(pages: int, shows_per_page: int, text: bytes = b"(Hello bomb) Tj ") -> bytes:
    """``pages`` pages that all draw one compressed content stream of ``shows_per_page``
    text operators: ~33 KB for 200 pages, each extracting 10 characters per operator."""
    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica")}))
    stream = DecodedStreamObject()
    stream.set_data(b"BT /F1 12 Tf 10 10 Td " + text * shows_per_page + b"ET")
    content = writer._add_object(stream.flate_encode())
    resources = DictionaryObject({NameObject("/Font"): DictionaryObject(
        {NameObject("/F1"): font})})
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = content
        page[NameObject("/Resources")] = resources
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()

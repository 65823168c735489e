"""Regenerate samples/kennedy-1962-state-of-the-union.pdf (needs `pip install fpdf2`).

Source text: the opening sections of President John F. Kennedy's State of the Union
address of 11 January 1962, as in the C-Span State of the Union corpus packaged by
NLTK (corpora/state_union, 1962-Kennedy.txt). A work of the US government: public domain.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).resolve().parent
TEXT = HERE / "kennedy-1962-state-of-the-union.txt"
PDF = HERE / "kennedy-1962-state-of-the-union.pdf"


def main() -> None:
    lines = [line.strip() for line in TEXT.read_text().splitlines()]
    pdf = FPDF(format="letter")
    pdf.set_title("State of the Union Address, 1962 (excerpt)")
    pdf.set_author("John F. Kennedy")
    pdf.set_margins(25, 25)
    pdf.set_auto_page_break(True, margin=25)
    pdf.add_page()
    for line in lines:
        if not line:
            continue
        heading = line.isupper()
        pdf.set_font("Helvetica", "B" if heading else "", 12 if heading else 11)
        pdf.multi_cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    pdf.output(str(PDF))
    print(f"wrote {PDF} ({pdf.page_no()} pages)", file=sys.stderr)


if __name__ == "__main__":
    main()

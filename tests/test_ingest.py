"""Tests of ``longdoc.pipeline.ingest``: generated files, plus real-world PDFs (tests/data/pdfs)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import time
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf._page import PageObject
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.ingest import PAGE_SEPARATOR, load_document, load_documents
from longdoc.pipeline.models import Document

PDFS = Path(__file__).resolve().parent / "data" / "pdfs"


# --------------------------------------------------------------------------- helpers


def shared_pdf(name: str) -> Path:
    """Path of one of the real-world PDFs in tests/data/pdfs."""
    return PDFS / name


def make_pdf(pages: list[str], password: str | None = None) -> bytes:
    """A small PDF with one Helvetica text line per ``\\n`` of each page's text."""
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in text.split("\n") if text else []:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page.replace_contents(stream)
    if password is not None:
        writer.encrypt(password, algorithm="AES-256")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def error_of(path: Path | str, **kwargs: object) -> str:
    """The InputError message of loading ``path``; checks it is one line led by the name."""
    with pytest.raises(InputError) as info:
        load_document(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{Path(path).name}: "), message
    return message


def reference_pages(path: Path, password: str = "") -> list[str]:
    """Each page's text as pypdf extracts it, independently of the code under test."""
    reader = PdfReader(path, strict=False)
    if reader.is_encrypted:
        assert reader.decrypt(password)
    return [page.extract_text() for page in reader.pages]


def check_page_map(doc: Document) -> None:
    """Pages are numbered 1..n, in order, tile the text with PAGE_SEPARATOR between."""
    assert doc.pages, "a PDF document must have pages"
    assert [p.number for p in doc.pages] == list(range(1, len(doc.pages) + 1))
    assert doc.pages[0].start == 0
    assert doc.pages[-1].end == len(doc.text)
    for prev, page in zip(doc.pages, doc.pages[1:], strict=False):
        assert prev.start <= prev.end < page.start <= page.end
        assert doc.text[prev.end : page.start] == PAGE_SEPARATOR
    assert doc.sha256 == hashlib.sha256(doc.text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- text files


def test_text_file_drops_bom_and_keeps_text_exactly(tmp_path: Path) -> None:
    raw = "Title\r\n\r\n  café — “quoted”\ttab\nlast line without newline"
    path = write(tmp_path / "notes.txt", b"\xef\xbb\xbf" + raw.encode("utf-8"))
    doc = load_document(path)
    assert doc.text == raw
    assert doc.pages == []
    assert doc.metadata == {}
    assert doc.source == str(path)
    assert doc.sha256 == hashlib.sha256(raw.encode("utf-8")).hexdigest()
    assert doc.page_at(3) is None


@pytest.mark.parametrize("suffix", [".md", ".markdown", ".text", ".TXT"])
def test_text_suffixes(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"doc{suffix}", b"# Heading\n\nBody.\n")
    assert load_document(path).text == "# Heading\n\nBody.\n"


def test_source_is_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "a.txt", b"hello")
    monkeypatch.chdir(tmp_path)
    assert load_document("a.txt").source == "a.txt"


def test_non_utf8_falls_back_to_cp1252(tmp_path: Path) -> None:
    path = write(tmp_path / "legacy.txt", b"caf\xe9 \x93quoted\x94 \x80 5")
    assert load_document(path).text == "café “quoted” € 5"


def test_bytes_undefined_in_cp1252_fall_back_to_latin1(tmp_path: Path) -> None:
    path = write(tmp_path / "odd.txt", b"a\x81b\xe9")
    assert load_document(path).text == "a\x81bé"


def test_empty_text_file(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "x.txt", b""))
    assert message.startswith("x.txt: empty document")


@pytest.mark.parametrize("content", [b"   \n\t\r\n  ", b"\xef\xbb\xbf \n"])
def test_whitespace_only_text_file(tmp_path: Path, content: bytes) -> None:
    assert error_of(write(tmp_path / "x.md", content)) == "x.md: empty document"


# --------------------------------------------------------------------------- file-level errors


def test_unsupported_suffix(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "x.docx", b"PK\x03\x04"))
    assert message.startswith("x.docx: unsupported file type '.docx' (supported: .pdf, .txt, .md")


def test_no_suffix(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "README", b"text"))
    assert "unsupported file type (no extension)" in message


def test_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.pdf")
    assert message.startswith("nope.pdf: file not found")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "folder.pdf").mkdir()
    assert "is a directory" in error_of(tmp_path / "folder.pdf")


def test_size_limit(tmp_path: Path) -> None:
    path = write(tmp_path / "big.txt", b"x" * 2048)
    message = error_of(path, max_file_mb=0.001)
    assert message == "big.txt: 0.00195 MB exceeds the 0.001 MB limit (max_file_mb)"
    assert load_document(path, max_file_mb=0.01).text == "x" * 2048


def test_not_a_pdf(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "fake.pdf", b"just some text, not a PDF"))
    assert message == "fake.pdf: not a PDF file (no %PDF header)"


def test_load_documents_in_order(tmp_path: Path) -> None:
    a = write(tmp_path / "a.txt", b"first")
    b = write(tmp_path / "b.pdf", make_pdf(["second"]))
    docs = load_documents([a, b], max_pages=10)
    assert [d.source for d in docs] == [str(a), str(b)]
    assert docs[0].text == "first" and "second" in docs[1].text
    with pytest.raises(InputError, match=r"^missing\.txt: file not found"):
        load_documents([a, tmp_path / "missing.txt"])


# --------------------------------------------------------------------------- generated PDFs


def test_generated_pdf_page_map(tmp_path: Path) -> None:
    path = write(tmp_path / "gen.pdf", make_pdf(["Alpha line\nsecond line", "", "Gamma (3)"]))
    doc = load_document(path)
    check_page_map(doc)
    assert len(doc.pages) == 3
    expected = reference_pages(path)
    assert [doc.text[p.start : p.end] for p in doc.pages] == expected
    assert doc.pages[1].start == doc.pages[1].end  # the blank page is an empty span
    assert doc.page_at(doc.text.index("Gamma")) == 3
    assert doc.metadata["pages"] == "3"


def test_page_limit(tmp_path: Path) -> None:
    path = write(tmp_path / "long.pdf", make_pdf(["p1", "p2", "p3"]))
    assert error_of(path, max_pages=2) == "long.pdf: 3 pages exceeds the limit of 2 (max_pages)"
    assert len(load_document(path, max_pages=3).pages) == 3


def test_pdf_without_text_layer(tmp_path: Path) -> None:
    path = write(tmp_path / "blank.pdf", make_pdf(["", ""]))
    assert error_of(path) == "blank.pdf: no text layer; OCR is not supported"


def test_generated_password_pdf(tmp_path: Path) -> None:
    path = write(tmp_path / "secret.pdf", make_pdf(["Top secret"], password="s3cret"))
    assert error_of(path) == "secret.pdf: encrypted; pass --password"
    assert error_of(path, password="wrong") == "secret.pdf: wrong password"
    assert "Top secret" in load_document(path, password="s3cret").text


def test_generated_empty_password_pdf_opens_without_password(tmp_path: Path) -> None:
    path = write(tmp_path / "open.pdf", make_pdf(["Readable"], password=""))
    assert "Readable" in load_document(path).text
    assert "Readable" in load_document(path, password="irrelevant").text


def test_generated_garbage_pdf(tmp_path: Path) -> None:
    path = write(tmp_path / "junk.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8)
    message = error_of(path)
    assert message.startswith("junk.pdf: corrupt or truncated PDF (")


def test_generated_truncated_pdf_is_quick(tmp_path: Path) -> None:
    data = make_pdf([f"Page {i} text" for i in range(1, 5)])
    path = write(tmp_path / "cut.pdf", data[: len(data) // 2])
    started = time.monotonic()
    try:
        doc = load_document(path)
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("cut.pdf: ")
    else:
        check_page_map(doc)
        assert doc.text.strip()
    assert time.monotonic() - started < 10


def test_one_failing_page_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "flaky.pdf", make_pdf(["one", "two", "three"]))
    original = PageObject.extract_text
    calls = {"n": 0}

    def flaky(self: PageObject, *args: object, **kwargs: object) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("broken content stream")
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PageObject, "extract_text", flaky)
    doc = load_document(path)
    check_page_map(doc)
    assert doc.pages[1].start == doc.pages[1].end
    assert "one" in doc.text and "three" in doc.text
    assert doc.metadata["failed_pages"] == "2"


def test_all_pages_failing_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "broken.pdf", make_pdf(["one", "two"]))

    def boom(self: PageObject, *args: object, **kwargs: object) -> str:
        raise ValueError("bad\nstream")

    monkeypatch.setattr(PageObject, "extract_text", boom)
    message = error_of(path)
    assert message == (
        "broken.pdf: corrupt or truncated PDF (text extraction failed on page 1: "
        "bad stream and 1 more)"
    )


def test_pypdf_warnings_are_silenced_and_logger_restored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Missing xref/startxref: pypdf (non-strict) logs warnings while it rebuilds the file.
    data = make_pdf(["Recovered text"])
    data = data[: data.rindex(b"xref")]
    path = write(tmp_path / "noxref.pdf", data)
    logger = logging.getLogger("pypdf")
    before = logger.level
    caplog.set_level(logging.WARNING)
    with contextlib.suppress(InputError):
        load_document(path)
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]
    assert logger.level == before


# --------------------------------------------------------------------------- shared real PDFs


@pytest.mark.parametrize(
    ("name", "pages"),
    [
        ("normal__pdflatex-4-pages.pdf", 4),
        ("normal__multicolumn.pdf", 3),
        ("normal__dmca.pdf", 18),
    ],
)
def test_shared_page_map_matches_pypdf(name: str, pages: int) -> None:
    path = shared_pdf(name)
    doc = load_document(path)
    check_page_map(doc)
    assert len(doc.pages) == pages
    assert doc.metadata["pages"] == str(pages)
    assert [doc.text[p.start : p.end] for p in doc.pages] == reference_pages(path)
    assert doc.source == str(path)


def test_shared_dmca_opens_without_password() -> None:
    doc = load_document(shared_pdf("normal__dmca.pdf"))
    assert "DIGITAL MILLENNIUM COPYRIGHT ACT" in doc.text
    assert doc.metadata["title"] == "The Digital Millennium Copyright Act of 1998"


def test_shared_password_pdf() -> None:
    path = shared_pdf("enc-pw__libreoffice-writer-password.pdf")
    assert error_of(path) == f"{path.name}: encrypted; pass --password"
    assert error_of(path, password="wrong") == f"{path.name}: wrong password"
    doc = load_document(path, password="openpassword")
    check_page_map(doc)
    assert "Lorem ipsum" in doc.text


def test_shared_r6_aes_empty_password_opens() -> None:
    doc = load_document(shared_pdf("enc-nopw__r6-empty-password.pdf"))
    check_page_map(doc)
    assert "pdf encryption test" in doc.text


def test_shared_corrupt_xref_recovers_or_errors_cleanly() -> None:
    path = shared_pdf("corrupt__issue-297.pdf")
    try:
        doc = load_document(path)
    except InputError as exc:
        assert str(exc).startswith(f"{path.name}: corrupt or truncated PDF (")
    else:
        check_page_map(doc)
        assert doc.text.strip()


def test_shared_truncated_errors_quickly() -> None:
    path = shared_pdf("truncated__pdflatex-4-pages.first50pct.pdf")
    started = time.monotonic()
    try:
        doc = load_document(path)
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message
        assert message.startswith(f"{path.name}: corrupt or truncated PDF (")
    else:
        check_page_map(doc)
        assert doc.text.strip()
    assert time.monotonic() - started < 10


def test_shared_image_only_needs_ocr() -> None:
    path = shared_pdf("imageonly__grayscale-image.pdf")
    assert error_of(path) == f"{path.name}: no text layer; OCR is not supported"


@pytest.mark.parametrize(
    ("name", "needle"), [("nonlatin__habibi.pdf", "حَبيبي"), ("nonlatin__jo.pdf", None)]
)
def test_shared_non_latin_text(name: str, needle: str | None) -> None:
    doc = load_document(shared_pdf(name))
    check_page_map(doc)
    assert doc.text.strip()
    if needle:
        assert needle in doc.text


def test_shared_form_includes_field_values() -> None:
    doc = load_document(shared_pdf("form__libreoffice-form.pdf"))
    check_page_map(doc)
    assert "Example for a Form" in doc.text
    assert "First Name: Alice" in doc.text
    assert "First Name_2: Bob" in doc.text


def test_shared_many_pages_is_fast_with_page_map() -> None:
    path = shared_pdf("manypages__GeoTopo-komprimiert.pdf")
    started = time.monotonic()
    doc = load_document(path)
    assert time.monotonic() - started < 60
    assert len(doc.pages) == 117
    check_page_map(doc)
    assert doc.metadata["title"] == "Geometrie und Topologie"
    assert doc.metadata["author"] == "Martin Thoma"
    reader = PdfReader(path)
    for index in (0, 1, 58, 116):
        page = doc.pages[index]
        assert doc.text[page.start : page.end] == reader.pages[index].extract_text()
    assert error_of(path, max_pages=100) == (
        f"{path.name}: 117 pages exceeds the limit of 100 (max_pages)"
    )


# --------------------------------------------------------------------------- issue 17


def test_pdf_bomb_over_the_page_text_budget_is_refused_at_once(tmp_path: Path) -> None:
    from tests.pdf_bombs import text_bomb

    path = write(tmp_path / "bomb.pdf", text_bomb(200, 25_000))  # 250k characters a page
    assert path.stat().st_size < 40_000
    started = time.monotonic()
    with pytest.raises(InputError, match=r"^bomb\.pdf: text extraction stopped on page 1: "
                       r"over the budget of 100,000 characters on one page \(pdf_page_chars\)"):
        load_document(path)
    assert time.monotonic() - started < 10


def test_pdf_bomb_over_the_expansion_budget_is_refused(tmp_path: Path) -> None:
    """200 pages of 30k characters each from 33 KB (6 MB in all, as in the issue): refused
    once the text passes 50 characters per byte of the file."""
    from tests.pdf_bombs import text_bomb

    path = write(tmp_path / "bomb.pdf", text_bomb(200, 3_000))
    with pytest.raises(InputError, match=r"per byte of the file \(pdf_chars_per_byte\)"):
        load_document(path)


def test_pdf_time_budgets_stop_extraction_mid_document(tmp_path: Path) -> None:
    from longdoc.pipeline.ingest import Budget
    from tests.pdf_bombs import text_bomb

    path = write(tmp_path / "slow.pdf", text_bomb(40, 3_000))
    loose = {"pdf_chars_per_byte": 10**6, "pdf_page_chars": 10**6}
    started = time.monotonic()
    with pytest.raises(InputError, match=r"over the budget of 0.01 s on one page"):
        load_document(path, budget=Budget(pdf_page_seconds=0.01, **loose))
    with pytest.raises(InputError, match=r"over the budget of 0.4 s in all \(pdf_seconds\)"):
        load_document(path, budget=Budget(pdf_seconds=0.4, **loose))
    assert time.monotonic() - started < 10
    assert len(load_document(path, budget=Budget(**loose)).pages) == 40  # within budget


@pytest.mark.parametrize(("data", "text"), [
    ("Grüße aus Köln\n".encode("utf-16"), "Grüße aus Köln\n"),  # BOM, little-endian
    (b"\xfe\xff" + "Grüße\n".encode("utf-16-be"), "Grüße\n"),
    ("Hi there\n".encode("utf-32"), "Hi there\n"),
    ("Plain English text, no byte order mark.\n".encode("utf-16-le"),
     "Plain English text, no byte order mark.\n"),
    ("Plain English text, no byte order mark.\n".encode("utf-16-be"),
     "Plain English text, no byte order mark.\n"),
    ("Привет! Это документ на русском языке, достаточно длинный для распознавания.\n"
     .encode("cp1251"),
     "Привет! Это документ на русском языке, достаточно длинный для распознавания.\n"),
    (("Café au lait, déjà vu, naïve résumé. " * 4).encode("cp1252"),
     "Café au lait, déjà vu, naïve résumé. " * 4),
])
def test_text_encodings_are_detected(tmp_path: Path, data: bytes, text: str) -> None:
    assert load_document(write(tmp_path / "t.txt", data)).text == text


@pytest.mark.parametrize("kind", ["nul", "elf", "random", "random_without_nul", "controls"])
def test_binary_files_are_refused(tmp_path: Path, kind: str) -> None:
    import random
    import sys

    rng = random.Random(17)
    data = {
        "nul": b"looks like text\x00but is not",
        "elf": Path(sys.executable).resolve().read_bytes()[:65536],  # a real ELF binary
        "random": bytes(rng.randrange(256) for _ in range(4096)),
        "random_without_nul": bytes(rng.randrange(1, 256) for _ in range(4096)),
        "controls": b"text\x01\x02\x03\x04\x05\x06\x07\x08 " * 20,
    }[kind]
    with pytest.raises(InputError, match=r"^b\.txt: binary file \(.*\), not text$"):
        load_document(write(tmp_path / "b.txt", data))

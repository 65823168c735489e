"""Load input files (PDF or plain text) into :class:`Document` objects.

Every failure raises :class:`InputError` with a one-line message that starts with the file
name, so the CLI can print it as is.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pypdf import PdfReader
from pypdf.errors import DependencyError, PyPdfError
from pypdf.generic import DictionaryObject, NameObject

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.models import Document, Page, text_sha256
from longdoc.pipeline.settings import Budget

PDF_SUFFIXES = (".pdf",)
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text")
HTML_SUFFIXES = (".html", ".htm")
SUPPORTED_SUFFIXES = PDF_SUFFIXES + TEXT_SUFFIXES + HTML_SUFFIXES
PAGE_SEPARATOR = "\n\n"
"""Joins the pages' texts in ``Document.text``; it belongs to no page."""

_MB = 1024 * 1024
_PDF_LOGGER = logging.getLogger("pypdf")
_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_level = logging.NOTSET


class _OverBudget(Exception):
    """PDF extraction went past its budget (raised from pypdf's visitor callbacks)."""


class _Extraction:
    """Clocks and counts one PDF's text extraction against its budget: pypdf calls
    ``operator`` before every content-stream operator (nested forms included) and ``text``
    for every piece of text, so a page is stopped while it is being read."""

    CHECK_EVERY = 64  # operators between clock reads
    PROJECT_AFTER_S = 5.0  # from then on, refuse a document whose pace would break the budget
    EXPANSION_FLOOR = 1_000_000  # characters any PDF may extract, however small the file

    def __init__(self, budget: Budget, pages: int, size: int):
        self.budget, self.pages = budget, pages
        self.max_chars = min(budget.pdf_chars, max(
            self.EXPANSION_FLOOR, int(budget.pdf_chars_per_byte * size)))
        self.started = time.monotonic()
        self.deadline = self.started + budget.pdf_seconds
        self.page_deadline = self.deadline
        self.page_chars = self.chars = self._ops = self.done = 0

    def start_page(self) -> None:
        self.page_deadline = min(self.deadline, time.monotonic() + self.budget.pdf_page_seconds)
        self.page_chars = 0

    def operator(self, *_args: Any) -> None:
        self._ops += 1
        if self._ops % self.CHECK_EVERY == 0:
            self.check_time()

    def check_time(self) -> None:
        now = time.monotonic()
        if now > self.deadline:
            raise _OverBudget(f"{self.budget.pdf_seconds:g} s in all (pdf_seconds)")
        if now > self.page_deadline:
            raise _OverBudget(f"{self.budget.pdf_page_seconds:g} s on one page "
                              "(pdf_page_seconds)")

    def text(self, text: str, *_args: Any) -> None:
        self.page_chars += len(text)
        if self.page_chars > self.budget.pdf_page_chars:
            raise _OverBudget(f"{self.budget.pdf_page_chars:,} characters on one page "
                              "(pdf_page_chars)")
        if self.chars + self.page_chars > self.max_chars:
            raise _OverBudget(self._chars_limit())

    def _chars_limit(self) -> str:
        if self.max_chars == self.budget.pdf_chars:
            return f"{self.budget.pdf_chars:,} characters in all (pdf_chars)"
        return (f"{self.max_chars:,} characters in all: {self.budget.pdf_chars_per_byte:g} per "
                "byte of the file (pdf_chars_per_byte)")

    def end_page(self, page_text: str) -> None:
        """Count a finished page; stop early when the pages so far project past the
        budget for the whole document (the bomb of issue 17 took 287 s)."""
        self.chars += len(page_text)
        self.done += 1
        self.check_time()
        elapsed = time.monotonic() - self.started
        if elapsed < min(self.PROJECT_AFTER_S, self.budget.pdf_seconds / 4) \
                or self.done == self.pages:
            return
        projected = elapsed / self.done * self.pages
        if projected > self.budget.pdf_seconds:
            raise _OverBudget(f"{self.budget.pdf_seconds:g} s in all (pdf_seconds): "
                              f"{self.done} of {self.pages} pages took {elapsed:.1f} s, "
                              f"~{projected:.0f} s for all")
        if self.chars / self.done * self.pages > self.max_chars:
            raise _OverBudget(f"{self._chars_limit()}: {self.chars:,} in the first "
                              f"{self.done} of {self.pages} pages")


def load_document(
    path: str | Path,
    *,
    password: str | None = None,
    max_file_mb: float = 200.0,
    max_pages: int = 5000,
    budget: Budget | None = None,
) -> Document:
    """Read ``path`` (.pdf, .txt, .md, .markdown, .text, .html, .htm) into a :class:`Document`.

    PDF pages are joined with ``PAGE_SEPARATOR``; ``Document.pages`` maps each page to its
    span of the text; extraction stops past ``budget``'s time and text limits. Text files
    are decoded by their BOM (UTF-8/16/32), else as UTF-8, else as the encoding
    charset-normalizer detects, and otherwise kept exactly, line endings included; binary
    files (NULs, control bytes) are refused; HTML files, and text files that are mostly
    HTML markup, become plain text with their structure (``Document.from_text``).
    ``budget`` (default: from ``max_file_mb`` and ``max_pages``) holds every limit. Raises
    :class:`InputError` with a one-line message starting with the file name.
    """
    budget = budget or Budget(max_file_mb=max_file_mb, max_pages=max_pages)
    max_file_mb, max_pages = budget.max_file_mb, budget.max_pages
    p = Path(path)
    name = p.name or str(path)
    if not p.exists():
        where = "" if str(path) == name else f" ({path})"
        raise InputError(f"{name}: file not found{where}")
    if p.is_dir():
        raise InputError(f"{name}: is a directory, not a file")
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        shown = f"'{p.suffix}'" if p.suffix else "(no extension)"
        raise InputError(
            f"{name}: unsupported file type {shown} (supported: {', '.join(SUPPORTED_SUFFIXES)})"
        )
    try:
        size = p.stat().st_size
        if size > max_file_mb * _MB:
            raise InputError(
                f"{name}: {_format_mb(size / _MB)} MB exceeds the {max_file_mb:g} MB limit "
                "(max_file_mb)"
            )
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    if not data:
        raise InputError(f"{name}: empty document (0-byte file)")

    if suffix not in PDF_SUFFIXES:
        return text_document(_decode_text(data, name), str(path),
                             markup=True if suffix in HTML_SUFFIXES else None)
    text, pages, metadata = _read_pdf(data, name, password=password, budget=budget)
    return Document(source=str(path), text=text, pages=pages, metadata=metadata,
                    sha256=text_sha256(text))


def text_document(text: str, source: str, *, markup: bool | None = None,
                  budget: Budget | None = None) -> Document:
    """The document a text file holding ``text`` becomes (``Document.from_text``), without
    the file: binary-looking text (NUL bytes, control characters) and an empty document
    are refused as a file's would be. With ``budget`` the text's UTF-8 size is held to
    ``max_file_mb`` (a file's size is checked before it is decoded). InputError names
    ``source``'s file name."""
    name = Path(source).name or source
    if budget is not None and \
            len(text.encode("utf-8", "surrogatepass")) > budget.max_file_mb * _MB:
        raise InputError(f"{name}: text over the {budget.max_file_mb:g} MB limit (max_file_mb)")
    _refuse_binary(text, name)
    document = Document.from_text(text, source, markup=markup)
    if not document.text.strip():
        raise InputError(f"{name}: empty document" + (
            " (no text outside its markup)" if text.strip() else ""))
    return document


def load_documents(paths: Iterable[str | Path], **kwargs: Any) -> list[Document]:
    """Load each of ``paths`` with :func:`load_document` (same keyword arguments), in order."""
    return [load_document(path, **kwargs) for path in paths]


def _format_mb(mb: float) -> str:
    return f"{mb:.1f}" if mb >= 1 else f"{mb:.3g}"


# Byte-order marks, longest first (UTF-32-LE's starts with UTF-16-LE's).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))
_TEXT_CONTROLS = frozenset("\t\n\r\f\v\x1b")  # control characters that text files hold
MAX_CONTROL_SHARE = 0.01  # more control characters than this share: a binary file
_DETECT_BYTES = 1 << 20  # charset detection reads at most this much
_DETECT_MIN_BYTES = 64  # shorter non-UTF-8 text is taken as Windows-1252 (or Latin-1)
_LEGACY_HIGH_SHARE = 0.3  # more bytes >= 0x80 than this: not Western text, detect it


def _decode_text(data: bytes, name: str) -> str:
    """The text of a text file: by its BOM, else UTF-8, else UTF-16 when every other byte
    is NUL (no BOM), else what charset-normalizer detects (Windows-1252 or Latin-1 when it
    cannot tell). Binary data is refused by ``text_document``."""
    text = None
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom):].decode(encoding)
            except UnicodeDecodeError as exc:
                raise InputError(f"{name}: not valid {encoding.upper()} text despite its byte "
                                 f"order mark ({exc.reason} at byte {exc.start})") from exc
            break
    if text is None:
        text = _without_bom(data, name)
    return text


def _refuse_binary(text: str, name: str) -> None:
    """InputError for text that is binary data: NUL bytes or more than
    ``MAX_CONTROL_SHARE`` control characters."""
    if "\x00" in text:
        raise InputError(f"{name}: binary file (NUL bytes), not text")
    controls = sum(1 for c in text if c < " " and c not in _TEXT_CONTROLS)
    if controls > MAX_CONTROL_SHARE * max(len(text), 1):
        raise InputError(f"{name}: binary file ({controls:,} control characters in "
                         f"{len(text):,}), not text")


def _without_bom(data: bytes, name: str) -> str:
    head = data[:_DETECT_BYTES]
    if head.count(0) > len(head) // 4:  # NULs everywhere: UTF-16 without a BOM, or binary
        for encoding, zeros in (("utf-16-le", head[1::2]), ("utf-16-be", head[0::2])):
            if zeros.count(0) > len(zeros) * 0.9:
                with contextlib.suppress(UnicodeDecodeError):
                    return data.decode(encoding)
        raise InputError(f"{name}: binary file (NUL bytes), not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    high = sum(1 for byte in head if byte >= 0x80)
    # Western text has a few accented letters among ASCII; Cyrillic, Greek or CJK legacy
    # encodings are mostly high bytes, and charset-normalizer tells those apart.
    if len(head) >= _DETECT_MIN_BYTES and high > len(head) * _LEGACY_HIGH_SHARE:
        from charset_normalizer import from_bytes

        best = from_bytes(head).best()
        if best is not None and best.encoding:
            with contextlib.suppress(UnicodeDecodeError, LookupError):
                return data.decode(best.encoding)
    try:  # too short to detect, or detection failed: Windows-1252, else Latin-1
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """Hide pypdf's log output while loading; thread-safe and nestable.

    Non-strict parsing logs warnings about every repair, and text extraction logs
    recoverable font-encoding problems at ERROR level; real failures raise exceptions,
    which become :class:`InputError`.
    """
    global _quiet_depth, _saved_level
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved_level = _PDF_LOGGER.level
            _PDF_LOGGER.setLevel(logging.CRITICAL)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                _PDF_LOGGER.setLevel(_saved_level)


def _reason(exc: BaseException) -> str:
    """A short one-line description of ``exc``."""
    msg = " ".join(str(exc).split())
    if len(msg) > 120:
        msg = msg[:117] + "..."
    return msg or type(exc).__name__


def _read_pdf(
    data: bytes, name: str, *, password: str | None, budget: Budget
) -> tuple[str, list[Page], dict[str, str]]:
    max_pages = budget.max_pages
    if b"%PDF-" not in data[:1024]:
        raise InputError(f"{name}: not a PDF file (no %PDF header)")
    with _quiet_pypdf():
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
        except (
            PyPdfError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            IndexError,
            RecursionError,
        ) as exc:
            raise InputError(f"{name}: corrupt or truncated PDF ({_reason(exc)})") from exc
        _decrypt(reader, name, password)
        try:
            count = len(reader.pages)
        except Exception as exc:
            raise InputError(f"{name}: corrupt or truncated PDF ({_reason(exc)})") from exc
        if count == 0:
            raise InputError(f"{name}: empty document (PDF has no pages)")
        if count > max_pages:
            raise InputError(f"{name}: {count} pages exceeds the limit of {max_pages} (max_pages)")
        texts: list[str] = []
        failures: list[tuple[int, str]] = []
        extraction = _Extraction(budget, count, len(data))
        for index in range(count):
            extraction.start_page()
            try:
                page = reader.pages[index]
                page_text = page.extract_text(visitor_operand_before=extraction.operator,
                                              visitor_text=extraction.text) or ""
                page_text = _with_form_fields(page_text, page)
                extraction.end_page(page_text)
            except _OverBudget as exc:
                raise InputError(f"{name}: text extraction stopped on page {index + 1}: over "
                                 f"the budget of {exc} (a PDF bomb?)") from exc
            except Exception as exc:  # one broken page must not lose the others
                failures.append((index + 1, _reason(exc)))
                page_text = ""
            texts.append(_clean(page_text))
        metadata = _metadata(reader, count)

    if not any(t.strip() for t in texts):
        if failures:
            number, reason = failures[0]
            more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
            raise InputError(
                f"{name}: corrupt or truncated PDF (text extraction failed on page {number}: "
                f"{reason}{more})"
            )
        raise InputError(f"{name}: no text layer; OCR is not supported")
    if failures:
        metadata["failed_pages"] = ", ".join(str(number) for number, _ in failures)

    pages: list[Page] = []
    offset = 0
    for number, page_text in enumerate(texts, start=1):
        if number > 1:
            offset += len(PAGE_SEPARATOR)
        pages.append(Page(number=number, start=offset, end=offset + len(page_text)))
        offset += len(page_text)
    return PAGE_SEPARATOR.join(texts), pages, metadata


def _decrypt(reader: PdfReader, name: str, password: str | None) -> None:
    """Open an encrypted PDF: the empty user password first, then ``password``."""
    try:
        if not reader.is_encrypted or reader.decrypt(""):
            return
        if password is None:
            raise InputError(f"{name}: encrypted; pass --password")
        if not reader.decrypt(password):
            raise InputError(f"{name}: wrong password")
    except InputError:
        raise
    except (DependencyError, NotImplementedError) as exc:
        raise InputError(f"{name}: cannot decrypt ({_reason(exc)})") from exc
    except Exception as exc:
        raise InputError(f"{name}: corrupt or truncated PDF ({_reason(exc)})") from exc


def _clean(text: str) -> str:
    """Replace lone surrogates (from broken font maps), which cannot be encoded as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _with_form_fields(text: str, page: Any) -> str:
    """``text`` plus a ``name: value`` line per filled form field whose widget is on ``page``.

    pypdf's ``extract_text`` does not include AcroForm field values.
    """
    lines: list[str] = []
    seen: set[int] = set()
    try:
        annots = page.get("/Annots")
        annots = annots.get_object() if annots is not None else []
        for ref in annots:
            annot = ref.get_object()
            if not isinstance(annot, DictionaryObject) or annot.get("/Subtype") != "/Widget":
                continue
            field: Any = annot
            if "/T" not in field and "/Parent" in field:
                field = field["/Parent"].get_object()
            if id(field) in seen:
                continue
            seen.add(id(field))
            value = _field_value(_inherited(field, "/V"))
            label = _field_name(field)
            if value and label:
                lines.append(f"{label}: {value}")
    except Exception:  # form fields are a bonus; never fail the page for them
        return text
    if not lines:
        return text
    return "\n".join([text, *lines]) if text else "\n".join(lines)


def _inherited(field: DictionaryObject, key: str) -> Any:
    node: Any = field
    for _ in range(32):  # bounded: malformed files may have parent cycles
        if node is None:
            return None
        if key in node:
            return node[key].get_object() if hasattr(node[key], "get_object") else node[key]
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    return None


def _field_name(field: DictionaryObject) -> str:
    parts: list[str] = []
    node: Any = field
    for _ in range(32):
        if node is None:
            break
        title = node.get("/T")
        if isinstance(title, str) and title:
            parts.append(title)
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    return ".".join(reversed(parts)).strip()


def _field_value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(v for v in (_field_value(x.get_object()) for x in value) if v)
    if not isinstance(value, str):
        return ""
    if isinstance(value, NameObject):  # checkbox/radio state
        return "" if value == "/Off" else value[1:]
    return " ".join(value.split())


def _metadata(reader: PdfReader, count: int) -> dict[str, str]:
    """Title, author and producer when present (as strings), and the page count."""
    out: dict[str, str] = {}
    try:
        info: Any = reader.metadata or {}
        for key, label in (("/Title", "title"), ("/Author", "author"), ("/Producer", "producer")):
            value = info.get(key)
            value = value.get_object() if hasattr(value, "get_object") else value
            if isinstance(value, str) and value.strip():
                out[label] = " ".join(value.split())
    except Exception:  # broken Info dictionaries are common and harmless
        pass
    out["pages"] = str(count)
    return out

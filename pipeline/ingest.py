"""Load input files (PDF or plain text) into :class:`Document` objects.

Every failure raises :class:`InputError` with a one-line message that starts with the file
name, so the CLI can print it as is.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pypdf import PdfReader
from pypdf.errors import DependencyError, PyPdfError
from pypdf.generic import DictionaryObject, NameObject

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.models import Document, Page

PDF_SUFFIXES = (".pdf",)
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text")
SUPPORTED_SUFFIXES = PDF_SUFFIXES + TEXT_SUFFIXES
PAGE_SEPARATOR = "\n\n"
"""Joins the pages' texts in ``Document.text``; it belongs to no page."""

_MB = 1024 * 1024
_PDF_LOGGER = logging.getLogger("pypdf")
_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_level = logging.NOTSET


def load_document(
    path: str | Path,
    *,
    password: str | None = None,
    max_file_mb: float = 200.0,
    max_pages: int = 5000,
) -> Document:
    """Read ``path`` (.pdf, .txt, .md, .markdown, .text) into a :class:`Document`.

    PDF pages are joined with ``PAGE_SEPARATOR``; ``Document.pages`` maps each page to its
    span of the text. Text files are decoded as UTF-8 (a BOM is dropped; undecodable files
    fall back to cp1252, then latin-1) and otherwise kept exactly, line endings included.
    Raises :class:`InputError` with a one-line message starting with the file name.
    """
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

    if suffix in PDF_SUFFIXES:
        text, pages, metadata = _read_pdf(data, name, password=password, max_pages=max_pages)
    else:
        text, pages, metadata = _decode_text(data), [], {}
        if not text.strip():
            raise InputError(f"{name}: empty document")
    sha = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return Document(source=str(path), text=text, pages=pages, metadata=metadata, sha256=sha)


def load_documents(paths: Iterable[str | Path], **kwargs: Any) -> list[Document]:
    """Load each of ``paths`` with :func:`load_document` (same keyword arguments), in order."""
    return [load_document(path, **kwargs) for path in paths]


def _format_mb(mb: float) -> str:
    return f"{mb:.1f}" if mb >= 1 else f"{mb:.3g}"


def _decode_text(data: bytes) -> str:
    """UTF-8 (BOM dropped), else cp1252, else latin-1 (which never fails)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
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
    data: bytes, name: str, *, password: str | None, max_pages: int
) -> tuple[str, list[Page], dict[str, str]]:
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
        for index in range(count):
            try:
                page = reader.pages[index]
                page_text = page.extract_text() or ""
                page_text = _with_form_fields(page_text, page)
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
            field = annot
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
        info = reader.metadata or {}
        for key, label in (("/Title", "title"), ("/Author", "author"), ("/Producer", "producer")):
            value = info.get(key)
            value = value.get_object() if hasattr(value, "get_object") else value
            if isinstance(value, str) and value.strip():
                out[label] = " ".join(value.split())
    except Exception:  # broken Info dictionaries are common and harmless
        pass
    out["pages"] = str(count)
    return out

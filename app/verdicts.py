"""Reviewer verdicts on answers and their citations, appended to a JSONL file."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.models import Answer, Citation, Task
from longdoc.pipeline.settings import private_dir

Mark = Literal["correct", "incorrect", "unsure"]
MARKS: tuple[Mark, ...] = ("correct", "incorrect", "unsure")
VERDICTS_FILE = "verdicts.jsonl"
VERDICTS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.jsonl")

log = logging.getLogger(__name__)


class DocumentRef(BaseModel):
    """A reviewed document: where it was read from and the hash of its extracted text."""

    name: str = Field(description="File name shown to the reviewer")
    source: str = Field(description="The path citations name as their source")
    sha256: str = Field(description="Hash of the extracted text (Document.sha256)")


class CitationVerdict(BaseModel):
    """One citation's span, with the reviewer's mark on it (None: not reviewed)."""

    source: str
    page: int | None = None
    start: int
    end: int
    quote: str
    paragraph: int | None = None
    verdict: Mark | None = None
    comment: str = ""

    @classmethod
    def of(cls, citation: Citation, verdict: Mark | None = None, comment: str = "") -> \
            CitationVerdict:
        return cls(source=citation.source, page=citation.page, start=citation.start,
                   end=citation.end, quote=citation.quote, paragraph=citation.paragraph,
                   verdict=verdict, comment=comment.strip())


class Verdict(BaseModel):
    """A reviewer's verdict on one strategy's answer to one request: one JSONL line."""

    task: Task = "qa"
    question: str = Field("", description="The question; empty for summaries")
    words: int | None = Field(None, description="Summaries and articles: the requested length")
    documents: list[DocumentRef]
    strategy: str
    route: str | None = Field(None, description="auto: the strategy it chose")
    answer: str
    citations: list[CitationVerdict] = Field(default_factory=list)
    verdict: Mark
    comment: str = ""
    reviewer: str = ""
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of(
        cls,
        answer: Answer,
        *,
        task: Task,
        question: str,
        documents: list[DocumentRef],
        verdict: Mark,
        comment: str = "",
        reviewer: str = "",
        words: int | None = None,
        citation_marks: Iterable[tuple[Mark | None, str]] = (),
    ) -> Verdict:
        """A verdict on ``answer``; ``citation_marks`` pairs (mark, comment) with its
        citations in order (missing ones are left unreviewed)."""
        marks = list(citation_marks)
        marks += [(None, "")] * (len(answer.citations) - len(marks))
        return cls(
            task=task, question=question.strip(),
            words=words if task in ("summary", "write") else None,
            documents=documents, strategy=answer.strategy,
            route=(answer.route or {}).get("chosen"), answer=answer.answer,
            citations=[CitationVerdict.of(c, m, note) for c, (m, note)
                       in zip(answer.citations, marks, strict=False)],
            verdict=verdict, comment=comment.strip(), reviewer=reviewer.strip(),
        )

    def matches(self, task: Task, question: str, hashes: Iterable[str]) -> bool:
        """Whether this verdict is about the same request: task, question and documents."""
        return (self.task == task and self.question == question.strip()
                and sorted(d.sha256 for d in self.documents) == sorted(hashes))


def verdicts_path(cache_dir: Path, name: str) -> Path:
    """The verdicts file ``name`` in ``cache_dir``: a plain ``*.jsonl`` name, never a path
    (the app must not read or append to files elsewhere)."""
    name = name.strip()
    if not VERDICTS_NAME.fullmatch(name):
        raise InputError(f"verdicts file {name!r}: give a file name ending in .jsonl (letters, "
                         "digits, '_', '-', '.'), not a path; it is kept in the cache folder")
    return cache_dir / name


class VerdictStore:
    """Verdicts appended one JSON line each to ``path`` (created on the first append)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.skipped = 0  # unreadable lines seen by the last ``read``

    def append(self, verdict: Verdict) -> None:
        """Append ``verdict`` as one line, in a single write (safe beside other writers)."""
        line = (verdict.model_dump_json() + "\n").encode()
        try:
            private_dir(self.path.parent)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            raise InputError(f"cannot write verdicts to {self.path}: "
                             f"{exc.strerror or exc}") from exc

    def read(self) -> list[Verdict]:
        """Every verdict in the file, oldest first; lines that are not verdicts are skipped
        (and counted in ``skipped``)."""
        self.skipped = 0
        if not self.path.is_file():
            return []
        try:  # lines end at "\n" only: U+2028 and the like are valid inside JSON strings
            lines = self.path.read_text(encoding="utf-8", errors="replace").split("\n")
        except OSError as exc:
            raise InputError(f"cannot read verdicts from {self.path}: "
                             f"{exc.strerror or exc}") from exc
        found = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                found.append(Verdict.model_validate_json(line))
            except ValidationError:
                self.skipped += 1
                log.warning("%s:%d is not a verdict; skipped", self.path, number)
        return found

    def for_request(self, task: Task, question: str, hashes: Iterable[str]) -> list[Verdict]:
        """The verdicts on the same task, question and documents, oldest first."""
        hashes = list(hashes)
        return [v for v in self.read() if v.matches(task, question, hashes)]

    def export(self) -> bytes:
        """The file's bytes, for download (empty if there is none yet)."""
        return self.path.read_bytes() if self.path.is_file() else b""

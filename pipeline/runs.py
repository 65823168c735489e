"""What the long resumable runs (``batch``, ``eval``) share: the JSONL log they resume
from and their progress bar.

A :class:`JsonLog` holds one pydantic row per line. A run reads it back to skip what is
done, then appends each row as soon as it exists, flushed and synced, so a killed run loses
nothing finished; a line cut short by the kill is skipped when read and never swallows the
next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Hashable
from operator import attrgetter
from pathlib import Path
from typing import IO, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from longdoc.pipeline.errors import InputError

Row = TypeVar("Row", bound=BaseModel)


class JsonLog(Generic[Row]):
    """An append-only JSONL file of ``model`` rows that a run resumes from.

    ``read``/``done`` work on a closed log. Opening it (``with``) creates the file, locks it
    so that two runs cannot write it at once, and ends a line cut by a kill; ``append``
    then writes one synced line per row. ``key`` names what a row is about (default: its
    ``key`` attribute); ``option`` is the flag that named the file, for error messages.
    """

    def __init__(self, path: Path, model: type[Row], *,
                 key: Callable[[Row], Hashable] = attrgetter("key"), option: str = "--out"):
        self.path, self.model, self.key, self.option = path, model, key, option
        self._file: IO[bytes] | None = None

    def read(self) -> list[Row]:
        """The rows in the file (none if it does not exist); a line that is not one (e.g.
        cut by a kill) is skipped."""
        if not self.path.is_file():
            return []
        rows = []
        with self.path.open("rb") as handle:
            for line in handle:  # split on b"\n" only, never inside a JSON string
                if line.strip():
                    with contextlib.suppress(ValidationError):
                        rows.append(self.model.model_validate_json(line))
        return rows

    def done(self, finished: Callable[[Row], bool]) -> set[Hashable]:
        """The keys of the rows ``finished`` accepts: what a resumed run skips."""
        return {self.key(row) for row in self.read() if finished(row)}

    def __enter__(self) -> JsonLog[Row]:
        if self.path.is_dir():
            raise InputError(f"{self.option} {self.path} is a folder; give a .jsonl file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+b")
        except OSError as exc:
            raise InputError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise InputError(f"{self.path} is being written by another run") from exc
        # A line cut by a kill (maybe inside a UTF-8 character: bytes, not text) must not
        # swallow the next one.
        end = handle.seek(0, os.SEEK_END)
        if end > 0:
            handle.seek(end - 1)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
        self._file = handle
        return self

    def append(self, row: Row) -> None:
        """Write one row as a line, flushed and synced to disk."""
        assert self._file is not None, "JsonLog is not open"
        self._file.write(row.model_dump_json().encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the lock
            self._file = None


def progress_bar(console: Console, *counts: ProgressColumn, disable: bool) -> Progress:
    """A run's progress bar: description, bar, done/total, ``counts``, time and ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *counts,
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=disable,
    )

"""Corpora: a folder (searched recursively) or a list of files, PDF and text mixed."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.ingest import SUPPORTED_SUFFIXES, load_documents
from longdoc.pipeline.models import Document


def corpus_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Every supported file of ``inputs``: files as given, folders expanded to their
    supported files (recursively, sorted, hidden ones skipped); duplicates dropped."""
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise InputError(f"{path.name}: folder holds no supported documents")
        else:
            found = [path]
        for p in found:
            if p.resolve() not in seen:
                seen.add(p.resolve())
                out.append(p)
    return out


def load_corpus(inputs: Iterable[str | Path], **kwargs: Any) -> list[Document]:
    """The documents of ``inputs`` (see ``corpus_files``); keyword arguments as for
    ``load_documents``."""
    return load_documents(corpus_files(inputs), **kwargs)

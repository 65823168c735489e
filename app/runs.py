"""What the review app runs: the documents, the session's pipeline, one run per strategy."""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from longdoc.app.verdicts import DocumentRef
from longdoc.pipeline.api import Pipeline, read_documents
from longdoc.pipeline.backends import Backend as ModelBackend
from longdoc.pipeline.backends import SharedServers, endpoint_settings
from longdoc.pipeline.errors import InputError
from longdoc.pipeline.ingest import SUPPORTED_SUFFIXES
from longdoc.pipeline.models import Answer, Document, Task
from longdoc.pipeline.settings import Backend, Settings, load_settings, private_dir

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
UPLOAD_TYPES = tuple(s.lstrip(".") for s in SUPPORTED_SUFFIXES)
UPLOADS_DIR = "uploads"

log = logging.getLogger(__name__)


def sample_documents() -> list[Path]:
    """The bundled sample PDFs (present in a source checkout)."""
    return sorted(SAMPLES_DIR.glob("*.pdf")) if SAMPLES_DIR.is_dir() else []


def save_upload(name: str, data: bytes, folder: Path) -> Path:
    """Keep an uploaded file under ``folder/<content hash>/<its base name>`` and return the
    path (the same bytes land at the same path; no name can leave ``folder``)."""
    base = Path(name.replace("\\", "/")).name.strip() or "upload"
    if base in {".", ".."}:
        base = "upload"
    target = folder / hashlib.sha256(data).hexdigest()[:16] / base
    if not target.is_file():
        try:
            private_dir(target.parent)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            raise InputError(f"{base}: cannot store the upload ({exc.strerror or exc})") from exc
    return target


def load_for_review(paths: Sequence[str | Path], settings: Settings,
                    password: str | None = None) -> list[Document]:
    """The documents as the pipeline reads them (same text, so citation offsets index it),
    parsed once for the strategies that then run on them (``read_documents``)."""
    if not paths:
        raise InputError("choose or upload at least one document")
    return read_documents(paths, settings, password)


def document_refs(documents: Sequence[Document]) -> list[DocumentRef]:
    return [DocumentRef(name=Path(d.source).name, source=d.source, sha256=d.sha256)
            for d in documents]


class BackendChoice(BaseModel):
    """The backend the reviewer picked (and, for ``openai``, the endpoint the settings
    name, so that a changed setting opens a new pipeline); everything else comes from the
    settings."""

    model_config = ConfigDict(frozen=True)

    backend: Backend
    base_url: str | None = None
    model: str | None = None

    def settings(self) -> Settings:
        """Effective settings (file and environment) with this choice on top."""
        return load_settings(backend=self.backend, base_url=self.base_url or None,
                             model=self.model or None)


# Open pipelines -> the backend choice whose shared server they use (None: an endpoint).
_open: weakref.WeakKeyDictionary[Pipeline, BackendChoice | None] = weakref.WeakKeyDictionary()
_open_lock = threading.Lock()
# One model server per managed backend choice (embedded, vllm), shared by every session.
_shared = SharedServers(lambda settings: ModelBackend(settings))


def open_pipeline(choice: BackendChoice) -> Pipeline:
    """A pipeline on ``choice``, its endpoint ready. An embedded or vLLM server is started
    once and shared by every session on the same choice (a second server would only
    compete for the same cores); an endpoint is asked for its model. Closed by
    ``close_pipeline`` or at exit."""
    settings = choice.settings()
    shared = choice if settings.backend != "openai" else None
    if shared is not None:
        settings = endpoint_settings(settings, _shared.acquire(shared, settings))
    pipeline = Pipeline(settings)
    try:
        pipeline.backend.start()
    except BaseException:
        pipeline.close()
        if shared is not None:
            _shared.release(shared)
        raise
    with _open_lock:
        _open[pipeline] = shared
    return pipeline


def close_pipeline(pipeline: Pipeline) -> None:
    """Close the pipeline's cache; its shared server stops with its last user."""
    with _open_lock:
        shared = _open.pop(pipeline, None)
    pipeline.close()
    if shared is not None:
        _shared.release(shared)


@atexit.register
def close_all() -> None:
    """Stop every pipeline and shared server still open (the app's process is exiting)."""
    with _open_lock:
        pipelines = list(_open)
    for pipeline in pipelines:
        close_pipeline(pipeline)


class ReviewRequest(BaseModel):
    """One request of the reviewer: a question (or a summary) over some documents."""

    task: Task = "qa"
    question: str = ""
    words: int | None = None
    documents: list[DocumentRef]
    strategies: list[str]


class StrategyRun(BaseModel):
    """One strategy's result for a request: its answer, or the error it stopped with."""

    strategy: str
    answer: Answer | None = None
    error: str | None = None


def run_strategy(pipeline: Pipeline, request: ReviewRequest, strategy: str,
                 password: str | None = None) -> StrategyRun:
    """Run ``strategy`` on ``request``; expected failures become a one-line ``error``, as do
    unexpected ones (logged with their traceback)."""
    paths = [d.source for d in request.documents]
    outcome = pipeline.attempt(request.task, paths, question=request.question,
                               words=request.words, strategy=strategy, password=password)
    if outcome.failure == "internal":
        log.error("strategy %s failed", strategy, exc_info=outcome.exception)
    return StrategyRun(strategy=strategy, answer=outcome.answer, error=outcome.error or None)

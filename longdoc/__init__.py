"""longdoc: agentic processing of documents far longer than a model's context window.

The public names are imported lazily, so ``longdoc extract`` and ``longdoc config`` start
without loading LangGraph and the OpenAI client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from longdoc.pipeline.api import Pipeline, ask, summarize, write
    from longdoc.pipeline.models import Answer, Citation, Document
    from longdoc.pipeline.settings import Settings

_EXPORTS = {
    "Answer": "longdoc.pipeline.models",
    "Citation": "longdoc.pipeline.models",
    "Document": "longdoc.pipeline.models",
    "Pipeline": "longdoc.pipeline.api",
    "Settings": "longdoc.pipeline.settings",
    "ask": "longdoc.pipeline.api",
    "summarize": "longdoc.pipeline.api",
    "write": "longdoc.pipeline.api",
}
__all__ = ["Answer", "Citation", "Document", "Pipeline", "Settings", "ask", "summarize", "write"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'longdoc' has no attribute {name!r}")

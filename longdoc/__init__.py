"""longdoc: agentic processing of documents far longer than a model's context window."""

from longdoc.pipeline.api import Pipeline, ask
from longdoc.pipeline.models import Answer, Citation, Document
from longdoc.pipeline.settings import Settings

__all__ = ["Answer", "Citation", "Document", "Pipeline", "Settings", "ask"]
__version__ = "0.1.0"

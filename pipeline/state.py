"""The typed state every strategy reads and writes, and the per-run context."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, TypedDict

from pydantic import BaseModel, Field

from longdoc.pipeline.llm import LLMClient
from longdoc.pipeline.models import Chunk, Citation, Document, Quote, Task, TraceEvent
from longdoc.pipeline.settings import Settings


class Draft(BaseModel):
    """A strategy's answer before citation verification."""

    answer: str
    quotes: list[Quote] = Field(default_factory=list)
    found: bool = True


class GraphState(TypedDict, total=False):
    """Shared state: request fields in, documents and chunks, a draft, verified citations."""

    paths: list[str]
    question: str
    task: Task
    strategy: str
    documents: list[Document]
    chunks: list[Chunk]
    draft: Draft
    citations: list[Citation]
    dropped_quotes: int
    trace: Annotated[list[TraceEvent], operator.add]


@dataclass
class RunContext:
    """What nodes need besides state: settings, the LLM client, a PDF password."""

    settings: Settings
    llm: LLMClient
    password: str | None = None

"""Prompts as named templates: code asks for a template by name and fills its fields."""

from __future__ import annotations

from pathlib import PurePath
from string import Formatter

from pydantic import BaseModel

from longdoc.pipeline.llm import Message


class PromptTemplate(BaseModel):
    """A system message and a user message with ``{field}`` placeholders."""

    name: str
    system: str
    user: str

    def fields(self) -> set[str]:
        return {f for _, f, _, _ in Formatter().parse(self.system + self.user) if f}

    def render(self, **values: str) -> list[Message]:
        """Chat messages with every placeholder filled; a missing field is an error."""
        missing = self.fields() - values.keys()
        if missing:
            raise KeyError(f"prompt {self.name!r} needs {sorted(missing)}")
        return [
            {"role": "system", "content": self.system.format(**values)},
            {"role": "user", "content": self.user.format(**values)},
        ]


_REGISTRY: dict[str, PromptTemplate] = {}


def register(template: PromptTemplate) -> PromptTemplate:
    if template.name in _REGISTRY:
        raise ValueError(f"duplicate prompt name {template.name!r}")
    _REGISTRY[template.name] = template
    return template


def get_prompt(name: str) -> PromptTemplate:
    """The template registered under ``name``."""
    from longdoc.prompts import direct, mapreduce  # noqa: F401  (register their templates)

    return _REGISTRY[name]


def all_prompts() -> dict[str, PromptTemplate]:
    get_prompt("direct.answer")
    return dict(_REGISTRY)


def document_block(source: str, text: str) -> str:
    """A document wrapped in delimiters the document itself cannot close.

    Only the file name is shown: where a file lives must not change the prompt (the
    small model's answers shift with any change to it, and the cache would miss).
    """
    safe = text.replace("</document>", "</ document>")
    name = PurePath(source).name.replace('"', "'")
    return f'<document name="{name}">\n{safe}\n</document>'

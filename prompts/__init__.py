"""Prompts as named templates: code asks for a template by name and fills its fields."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import PurePath
from string import Formatter

from pydantic import BaseModel

from longdoc.pipeline.injection import break_markup, neutralize
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


def _load_all() -> None:
    """Import every module of this package, so each registers its templates."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def get_prompt(name: str) -> PromptTemplate:
    """The template registered under ``name`` (a strategy's module: ``prompts/<name>.py``)."""
    if name not in _REGISTRY:
        _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no prompt named {name!r} (known: {sorted(_REGISTRY)})") from None


def all_prompts() -> dict[str, PromptTemplate]:
    """Every registered template, by name."""
    _load_all()
    return dict(_REGISTRY)


def document_block(source: str, text: str) -> str:
    """A document wrapped in delimiters the document itself cannot close: its text is
    ``neutralize``d (no instructions, fake turns or protocol lines; control tokens and
    ``<document>`` tags in any case or spacing broken).

    Only the file name is shown: where a file lives must not change the prompt (the
    small model's answers shift with any change to it, and the cache would miss).
    """
    name = break_markup(PurePath(source).name.replace('"', "'"))
    return f'<document name="{name}">\n{neutralize(text)}\n</document>'

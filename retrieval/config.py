"""Retrieval options: the ``retrieval`` branch of the settings tree (``RetrievalConfig``,
defined in ``pipeline/settings.py`` so that reading settings loads no index code)."""

from __future__ import annotations

from longdoc.pipeline.settings import FusionMethod, RetrievalConfig, SearchMode

__all__ = ["FusionMethod", "RetrievalConfig", "SearchMode"]

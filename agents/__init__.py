"""Strategies: each a small LangGraph subgraph over the shared ``GraphState``."""

from __future__ import annotations

from collections.abc import Callable

from langgraph.graph.state import CompiledStateGraph

from longdoc.agents.direct import build_direct

STRATEGIES: dict[str, Callable[[], CompiledStateGraph]] = {
    "direct": build_direct,
}

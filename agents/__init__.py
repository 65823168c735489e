"""Strategies: each a small LangGraph subgraph over the shared ``GraphState``."""

from __future__ import annotations

from collections.abc import Callable

from langgraph.graph.state import CompiledStateGraph

from longdoc.agents.chain import build_chain
from longdoc.agents.direct import build_direct
from longdoc.agents.mapreduce import build_mapreduce
from longdoc.agents.memory import build_memory
from longdoc.agents.rag import build_rag

STRATEGIES: dict[str, Callable[[], CompiledStateGraph]] = {
    "direct": build_direct,
    "mapreduce": build_mapreduce,
    "chain": build_chain,
    "memory": build_memory,
    "rag": build_rag,
}

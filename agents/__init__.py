"""Strategies: each a small LangGraph subgraph over the shared ``GraphState``.

``STRATEGIES`` is the one registry of them (name -> subgraph builder, the tasks it
serves, a description) that the graph, the API, the CLI, the eval runner, the review app
and the benchmarks read. It imports no strategy module until a subgraph is built, so
``longdoc config`` and ``--help`` stay light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from longdoc.pipeline.models import Task

if TYPE_CHECKING:
    from longdoc.pipeline.state import CompiledGraph


@dataclass(frozen=True)
class Strategy:
    """One way of reading documents: its subgraph, the tasks it serves, what it does."""

    name: str
    build: Callable[[], CompiledGraph]
    tasks: frozenset[Task]
    description: str
    reads_retrieved: bool = False  # --retrieve K restricts what it reads to the top-K chunks


def _direct() -> CompiledGraph:
    from longdoc.agents.direct import build_direct

    return build_direct()


def _mapreduce() -> CompiledGraph:
    from longdoc.agents.mapreduce import build_mapreduce

    return build_mapreduce()


def _chain() -> CompiledGraph:
    from longdoc.agents.chain import build_chain

    return build_chain()


def _memory() -> CompiledGraph:
    from longdoc.agents.memory import build_memory

    return build_memory()


def _rag() -> CompiledGraph:
    from longdoc.agents.rag import build_rag

    return build_rag()


def _auto() -> CompiledGraph:
    raise TypeError("auto is a router in the shared graph (pipeline.graph.build_graph), "
                    "not a subgraph of its own")


QA_AND_SUMMARY: frozenset[Task] = frozenset({"qa", "summary"})

# In the order reports and benchmarks list them.
STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("direct", _direct, QA_AND_SUMMARY,
             "the whole input in one prompt; refuses inputs over the window unless --truncate"),
    Strategy("rag", _rag, frozenset({"qa"}),
             "top-k retrieved chunks (adjacent ones merged) and one answer call"),
    Strategy("mapreduce", _mapreduce, QA_AND_SUMMARY,
             "one map call per chunk, answers verified against their chunk, conflicts "
             "resolved by evidence; summaries: key points collapsed until they fit",
             reads_retrieved=True),
    Strategy("chain", _chain, QA_AND_SUMMARY,
             "Chain of Agents: workers read chunks in order and pass notes and verified "
             "quotes; a manager answers from the last", reads_retrieved=True),
    Strategy("memory", _memory, QA_AND_SUMMARY,
             "MemAgent: a fixed-size memory rewritten after each segment; the answer comes "
             "from the memory alone", reads_retrieved=True),
    Strategy("auto", _auto, QA_AND_SUMMARY,
             "direct when the input fits the window, else mapreduce over every chunk "
             "(small documents) or over retrieved chunks in widening rounds"),
)}
STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGIES)
DEFAULT_STRATEGY: dict[Task, str] = {"qa": "auto", "summary": "mapreduce"}


def strategies_for(task: Task) -> list[str]:
    """The strategies that serve ``task``, its default first, then in registry order."""
    names = [name for name, s in STRATEGIES.items() if task in s.tasks]
    return sorted(names, key=lambda name: name != DEFAULT_STRATEGY.get(task))


def import_all() -> None:
    """Import every strategy module (so their pydantic state types are defined)."""
    from longdoc.agents import auto, chain, direct, mapreduce, memory, rag  # noqa: F401

"""Chain of Agents: workers read the parts in order and relay a communication unit (CU);
a manager answers from the last CU alone.

Each worker gets its part, the question and the previous CU (notes plus verified
quotes) and writes the next CU's notes; code adds the part's verified quotes and holds
the CU to ``cu_tokens`` (see ``agents/sequential.py`` for evidence and budget rules).
"""

from __future__ import annotations

from longdoc.agents.sequential import ReaderSpec, build_reader
from longdoc.pipeline.state import CompiledGraph
from longdoc.prompts import fragments

CHAIN = ReaderSpec(
    name="chain",
    step_node="chain.worker",
    answer_node="chain.manager",
    compress_node="chain.compress",
    budget=lambda settings: settings.reader.cu_tokens,
    budget_name="cu_tokens",
    initial_notes=fragments.CHAIN_FIRST_NOTES,
)


def build_chain() -> CompiledGraph:
    """START -> prepare -> worker (once per part, looping) -> manager -> END."""
    return build_reader(CHAIN)

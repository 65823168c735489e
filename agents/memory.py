"""MemAgent-style reading: a fixed-size plain-text memory, overwritten after each segment.

The memory starts as "No previous memory."; after each segment the model rewrites all of
it (the new text replaces the old, nothing is appended); code adds the segment's verified
quotes and holds the memory to ``memory_tokens``. The answer comes from the memory alone.
Segments are the chunks, or ``segment_tokens``-token parts of the documents when that
setting is given. Every step's memory, and what it kept and dropped, is in the trace.
"""

from __future__ import annotations

from longdoc.agents.sequential import ReaderSpec, build_reader
from longdoc.pipeline.state import CompiledGraph
from longdoc.prompts import fragments

MEMORY = ReaderSpec(
    name="memory",
    step_node="memory.update",
    answer_node="memory.answer",
    compress_node="memory.compress",
    budget=lambda settings: settings.reader.memory_tokens,
    budget_name="memory_tokens",
    initial_notes=fragments.MEMORY_FIRST_NOTES,
    segment_tokens=lambda settings: settings.reader.segment_tokens,
)


def build_memory() -> CompiledGraph:
    """START -> prepare -> update (once per segment, looping) -> answer -> END."""
    return build_reader(MEMORY)

"""Templates of the memory strategy (MemAgent): a fixed-size memory rewritten per segment."""

from longdoc.prompts import PromptTemplate, register
from longdoc.prompts.direct import DATA_NOT_INSTRUCTIONS

_UPDATE_SYSTEM = (
    "You read a long document one segment at a time. You keep a memory of fixed size and "
    "rewrite all of it after each segment: keep what matters, drop the rest. "
    + DATA_NOT_INSTRUCTIONS
)
_ANSWER_SYSTEM = (
    "You answer from a memory that was written while reading a long document; the document "
    "itself is gone. " + DATA_NOT_INSTRUCTIONS
)

MEMORY_UPDATE = register(
    PromptTemplate(
        name="memory.update",
        system=_UPDATE_SYSTEM,
        user=(
            "Question: {question}\n\n"
            "Memory:\n{notes}\n\n"
            "{document}\n\n"
            "Rewrite the memory in at most {words} words: keep what helps answer the question, "
            "add what this segment says about it, drop everything else. Copy helpful sentences "
            "exactly, in double quotes."
        ),
    )
)

MEMORY_UPDATE_SUMMARY = register(
    PromptTemplate(
        name="memory.update.summary",
        system=_UPDATE_SYSTEM,
        user=(
            "Goal: {question}\n\n"
            "Memory:\n{notes}\n\n"
            "{document}\n\n"
            "Rewrite the memory in at most {words} words: keep the key points so far, add the "
            "key points of this segment, drop details. Copy the most important sentence of "
            "this segment exactly, in double quotes."
        ),
    )
)

MEMORY_ANSWER = register(
    PromptTemplate(
        name="memory.answer",
        system=_ANSWER_SYSTEM,
        user=(
            "Memory:\n{notes}\n\n"
            "Quotes kept in memory:\n{evidence}\n\n"
            "Question: {question}\n\n"
            "Answer the question in one short sentence, using only the memory above."
        ),
    )
)

MEMORY_ANSWER_SUMMARY = register(
    PromptTemplate(
        name="memory.answer.summary",
        system=_ANSWER_SYSTEM,
        user=(
            "Memory:\n{notes}\n\n"
            "Quotes kept in memory:\n{evidence}\n\n"
            "Goal: {question}\n\n"
            "Write a summary of the document in at most {words} words, using only the memory "
            "above."
        ),
    )
)

MEMORY_COMPRESS = register(
    PromptTemplate(
        name="memory.compress",
        system="You shorten a memory without losing what matters. " + DATA_NOT_INSTRUCTIONS,
        user=(
            "Memory:\n{notes}\n\n"
            "Goal: {question}\n\n"
            "Rewrite this memory in at most {words} words. Keep every fact, name and number "
            "that helps with the goal; drop the rest."
        ),
    )
)

"""Templates of the chain strategy (Chain of Agents): workers pass notes, a manager answers."""

from longdoc.prompts import PromptTemplate, register
from longdoc.prompts.direct import DATA_NOT_INSTRUCTIONS

_WORKER_SYSTEM = (
    "You are one of several workers who read a long document in order, one part each. "
    "You receive the notes of the worker before you and write notes for the next one. "
    + DATA_NOT_INSTRUCTIONS
)
_MANAGER_SYSTEM = (
    "You are the manager. Workers read a long document part by part and passed notes and "
    "quotes along; you see only their last notes. " + DATA_NOT_INSTRUCTIONS
)

CHAIN_WORKER = register(
    PromptTemplate(
        name="chain.worker",
        system=_WORKER_SYSTEM,
        user=(
            "Notes from the workers before you:\n{notes}\n\n"
            "{document}\n\n"
            "Question: {question}\n\n"
            "Write the notes for the next worker in at most {words} words: keep the useful "
            "notes above, add what this part says about the question, and copy any sentence "
            "of this part that helps answer it in double quotes."
        ),
    )
)

CHAIN_WORKER_SUMMARY = register(
    PromptTemplate(
        name="chain.worker.summary",
        system=_WORKER_SYSTEM,
        user=(
            "Notes from the workers before you:\n{notes}\n\n"
            "{document}\n\n"
            "Goal: {question}\n\n"
            "Write the notes for the next worker in at most {words} words: keep the key "
            "points above, add the key points of this part, and copy its most important "
            "sentence in double quotes."
        ),
    )
)

CHAIN_MANAGER = register(
    PromptTemplate(
        name="chain.manager",
        system=_MANAGER_SYSTEM,
        user=(
            "Notes:\n{notes}\n\n"
            "Quotes from the document:\n{evidence}\n\n"
            "Question: {question}\n\n"
            "Answer the question in one short sentence, using only the notes and quotes above."
        ),
    )
)

CHAIN_MANAGER_SUMMARY = register(
    PromptTemplate(
        name="chain.manager.summary",
        system=_MANAGER_SYSTEM,
        user=(
            "Notes:\n{notes}\n\n"
            "Quotes from the document:\n{evidence}\n\n"
            "Goal: {question}\n\n"
            "Write a summary of the document in at most {words} words, using only the notes "
            "and quotes above."
        ),
    )
)

CHAIN_COMPRESS = register(
    PromptTemplate(
        name="chain.compress",
        system="You shorten notes without losing the facts that matter. " + DATA_NOT_INSTRUCTIONS,
        user=(
            "Notes:\n{notes}\n\n"
            "Goal: {question}\n\n"
            "Rewrite these notes in at most {words} words. Keep every fact, name and number "
            "that helps with the goal; drop the rest."
        ),
    )
)

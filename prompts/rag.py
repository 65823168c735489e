"""Templates of the rag strategy: the retrieved passages in one prompt, one answer."""

from longdoc.prompts import PromptTemplate, register
from longdoc.prompts.direct import DATA_NOT_INSTRUCTIONS

RAG_ANSWER = register(
    PromptTemplate(
        name="rag.answer",
        system=(
            "You answer questions about documents using only the passages given from them. "
            + DATA_NOT_INSTRUCTIONS
        ),
        user=(
            "Passages retrieved from the documents for this question, in document order:\n\n"
            "{documents}\n\n"
            "Question: {question}\n\n"
            "{answer_format} using only the passages above. "
            "Then on a new line write: Quote: \"<a sentence copied exactly from a passage "
            "that supports the answer>\". If the passages do not contain the answer, "
            "write: Answer: not found."
        ),
    )
)

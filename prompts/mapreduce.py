"""Templates of the map-reduce strategy: one protocol per chunk, a conflict resolution."""

from longdoc.prompts import PromptTemplate, register
from longdoc.prompts.direct import DATA_NOT_INSTRUCTIONS

# In-context confidence calibration (LLM×MapReduce): every map call gets the same
# criteria, so the levels chunks report are comparable.
CONFIDENCE_CRITERIA = (
    "Confidence levels:\n"
    "high = the answer is stated word for word in the text above;\n"
    "medium = the answer is inferred from the text above;\n"
    "low = the answer is a guess, it is not in the text above."
)

MAP_CHUNK = register(
    PromptTemplate(
        name="mapreduce.map",
        system=(
            "You read one part of a long document and report what this part says about a "
            "question. Use only the text of this part. " + DATA_NOT_INSTRUCTIONS
        ),
        user=(
            "{document}\n\n"
            "Question: {question}\n\n"
            "Report on the text above in exactly this form:\n"
            "Information: <facts of the text that relate to the question>\n"
            "Rationale: <how these facts answer the question>\n"
            "Answer: <the short answer, or none if the text does not contain it>\n"
            "Quote: \"<one sentence copied exactly from the text that contains the answer>\"\n"
            "Confidence: <high, medium or low>\n\n"
            + CONFIDENCE_CRITERIA
        ),
    )
)

RESOLVE_CONFLICT = register(
    PromptTemplate(
        name="mapreduce.resolve",
        system=(
            "Parts of a long document gave different answers to one question. You decide "
            "which answer the quoted evidence supports. " + DATA_NOT_INSTRUCTIONS
        ),
        user=(
            "Question: {question}\n\n"
            "{options}\n\n"
            "Each option quotes the document as its evidence. Which option's evidence "
            "answers the question? Reply with the letter of that option only ({letters})."
        ),
    )
)

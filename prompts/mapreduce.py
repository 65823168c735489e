"""Templates of the map-reduce strategy: one protocol per chunk, a conflict resolution."""

from longdoc.prompts import PromptTemplate, register
from longdoc.prompts.direct import DATA_NOT_INSTRUCTIONS

# In-context confidence calibration (LLM×MapReduce): every map call gets the same
# criteria, so the levels chunks report are comparable.
CONFIDENCE_CRITERIA = (
    "Confidence levels:\n"
    "high = the answer is stated word for word in the text;\n"
    "medium = the answer is inferred from the text;\n"
    "low = the answer is a guess, it is not in the text."
)

# The map reply's form (``protocol.parse_map_reply`` reads it), in both layouts.
MAP_REPLY_FORM = (
    "Information: <facts of the text that relate to the question>\n"
    "Rationale: <how these facts answer the question>\n"
    "Answer: <the short answer, or none if the text does not contain it>\n"
    "Quote: \"<one sentence copied exactly from the text that contains the answer>\"\n"
    "Confidence: <high, medium or low>"
)
MAP_SYSTEM = (
    "You read one part of a long document and report what this part says about a "
    "question. " + DATA_NOT_INSTRUCTIONS
)

MAP_CHUNK = register(
    PromptTemplate(
        name="mapreduce.map",
        system=MAP_SYSTEM,
        # Layout "question_first" (the default off vLLM). Shared part first (instructions,
        # question, rubric), the chunk last: a server's prefix cache then serves the shared
        # part across the whole map fan-out of one question. The question is repeated after
        # the chunk, where a small model attends best.
        user=(
            "Question: {question}\n\n"
            "Report on the text below in exactly this form:\n"
            + MAP_REPLY_FORM + "\n\n"
            + CONFIDENCE_CRITERIA
            + "\n\n{document}\n\n"
            "Question: {question}\n"
            "Report in the form above."
        ),
    )
)

# The same report with the chunk before the question (``mapreduce.map_prompt_layout``
# "chunk_first", the default on vLLM): everything up to the end of the chunk is the same
# for every question, so a server's prefix cache serves the chunk itself to the second
# and later questions about a document; only the question and the form are new.
MAP_CHUNK_FIRST = register(
    PromptTemplate(
        name="mapreduce.map_chunk_first",
        system=MAP_SYSTEM,
        user=(
            "Read the text below. A question about it follows the text.\n\n"
            + CONFIDENCE_CRITERIA
            + "\n\n{document}\n\n"
            "Question: {question}\n\n"
            "Report on the text above in exactly this form:\n"
            + MAP_REPLY_FORM
        ),
    )
)

# The map prompt of each layout, by layout name (``mapreduce.map_prompt_layout``).
MAP_LAYOUTS = {"question_first": MAP_CHUNK.name, "chunk_first": MAP_CHUNK_FIRST.name}

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


# --- summarization (task "summary") ---------------------------------------------------
# One protocol for map and collapse records: "Point:" lines, each followed by a "Quote:"
# line copied from the text. Quotes are only candidates: code locates them in the source.

# No <placeholder> examples: SmolLM2-135M copies them verbatim as its answer.
SUMMARY_PROTOCOL = (
    "For each point, write a line that starts with \"Point:\" and states the point, then a "
    "line that starts with \"Quote:\" and copies one sentence of the text that supports it."
)

SUMMARY_MAP = register(
    PromptTemplate(
        name="mapreduce.summary_map",
        system=(
            "You read one part of a long document and note its key points, each with a "
            "sentence copied from the text as evidence. " + DATA_NOT_INSTRUCTIONS
        ),
        user=(  # shared part first, as in the QA map prompt
            "Write the {points} most important points of the text below. " + SUMMARY_PROTOCOL
            + "\n\n{document}\n\n"
            "Write the {points} most important points of the text above, in that form."
        ),
    )
)

SUMMARY_COLLAPSE = register(
    PromptTemplate(
        name="mapreduce.summary_collapse",
        system=(
            "You merge notes on consecutive parts of a long document into fewer notes. "
            "Keep the most important points and their quotes. " + DATA_NOT_INSTRUCTIONS
        ),
        user=(
            "<document name=\"notes\">\n{notes}\n</document>\n\n"
            "Merge the notes above into at most {points} points, in the order of the document, "
            "copying each quote from the notes. " + SUMMARY_PROTOCOL
        ),
    )
)

SUMMARY_REDUCE = register(
    PromptTemplate(
        name="mapreduce.summary_reduce",
        system=(
            "You write the summary of a long document from notes on its parts. Use only "
            "the notes. " + DATA_NOT_INSTRUCTIONS
        ),
        user=(
            "<document name=\"notes\">\n{notes}\n</document>\n\n"
            "Write a summary of the whole document in about {words} words, in {paragraphs} "
            "paragraph(s) separated by blank lines. Write plain prose, no lists, no headings."
        ),
    )
)

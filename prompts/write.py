"""Templates of ``longdoc write``: plan, revise the plan, write a section, rewrite a sentence,
extend a section. The digests reuse the map-reduce summary map (``mapreduce.summary_map``).

Every reply is plain text read tolerantly in code (``agents/write.py``); nothing the model
writes is trusted: citations and figures are checked against the sources afterwards.
No ``<placeholder>`` examples: SmolLM2-135M copies them verbatim.
"""

from longdoc.prompts import PromptTemplate, register
from longdoc.prompts.direct import DATA_NOT_INSTRUCTIONS

WRITE_PLAN = register(
    PromptTemplate(
        name="write.plan",
        system=(
            "You plan an article that is written from numbered notes on long documents. "
            + DATA_NOT_INSTRUCTIONS
        ),
        user=(
            "<document name=\"notes\">\n{notes}\n</document>\n\n"
            "Topic: {topic}\n\n"
            "Plan an article on the topic in {sections} sections, using the numbered notes "
            "above. For each section write a line that starts with \"Section:\" and gives a "
            "short title, then a line that starts with \"Notes:\" and lists the numbers of "
            "the notes the section uses."
        ),
    )
)

WRITE_REVISE = register(
    PromptTemplate(
        name="write.revise",
        system=(
            "You check the outline of an article against notes on one part of the "
            "documents and propose changes. " + DATA_NOT_INSTRUCTIONS
        ),
        user=(
            "Outline:\n{outline}\n\n"
            "<document name=\"notes\">\n{notes}\n</document>\n\n"
            "Topic: {topic}\n\n"
            "Does the outline fit the notes above? If a section title does not fit its "
            "notes, write a line that starts with \"Section\", its number and a colon, then "
            "a better title. If some notes need a section of their own, write a line that "
            "starts with \"New section:\" and gives its title. If the outline fits, write "
            "\"Keep\"."
        ),
    )
)

WRITE_SECTION = register(
    PromptTemplate(
        name="write.section",
        system=(
            "You write one section of an article from numbered evidence. Use only facts "
            "from the evidence. " + DATA_NOT_INSTRUCTIONS
        ),
        user=(
            "Article topic: {topic}\n"
            "Outline:\n{outline}\n\n"
            "The article so far: {before}\n\n"
            "<document name=\"evidence\">\n{evidence}\n</document>\n\n"
            "Write the section \"{title}\" in about {words} words, in {paragraphs} "
            "paragraph(s) separated by blank lines. Use only facts from the evidence above "
            "and put the evidence number in brackets after each sentence that uses it, like "
            "[2]. Write plain prose, no headings, no lists."
        ),
    )
)

WRITE_EXTEND = register(
    PromptTemplate(
        name="write.extend",
        system=(
            "You continue one section of an article from numbered evidence. Use only facts "
            "from the evidence. " + DATA_NOT_INSTRUCTIONS
        ),
        user=(
            "Section \"{title}\" so far:\n{text}\n\n"
            "<document name=\"evidence\">\n{evidence}\n</document>\n\n"
            "Continue the section with about {words} more words that use the evidence above. "
            "Put the evidence number in brackets after each sentence that uses it, like [1]. "
            "Do not repeat the section so far. Write plain prose, no headings, no lists."
        ),
    )
)

WRITE_REWRITE = register(
    PromptTemplate(
        name="write.rewrite",
        system=(
            "You correct one sentence of an article so that it states only what the "
            "evidence says. " + DATA_NOT_INSTRUCTIONS
        ),
        user=(
            "<document name=\"evidence\">\n{evidence}\n</document>\n\n"
            "Sentence: {sentence}\n\n"
            "The sentence has facts that are not in the evidence: {missing}. Rewrite it as "
            "one sentence that uses only facts from the evidence above, with the evidence "
            "number in brackets at its end, like [1]. Reply with the sentence only."
        ),
    )
)

"""Prompt text that code assembles into a template's field, one piece per item (an option,
a key point, a carried quote). Not templates of their own: they are not registered, so the
prompt-echo check (``protocol.prompt_shingles``) does not count them. The simulated server
(``tests/simserver.py``) reads carried notes by these names, not by copies of the prose."""

# mapreduce.resolve: one conflicting answer with its evidence (document blocks).
OPTION = "Option {letter}: {answer}\nEvidence:\n{evidence}"
OPTION_SEPARATOR = "\n\n"

# mapreduce_summary: a key point and the quote supporting it, as collapse and reduce see them.
POINT = "Point: {text}"
POINT_QUOTE = 'Quote: "{quote}"'

# chain/memory: the carried unit, notes then the verified quotes.
QUOTES_LABEL = "Quotes:"
CARRIED_UNIT = "{notes}\n" + QUOTES_LABEL + "\n{quotes}"
CARRIED_QUOTE = '- "{quote}"'
NO_CARRIED_QUOTES = "(none)"
CHAIN_FIRST_NOTES = "(no notes yet: you read the first part)"
MEMORY_FIRST_NOTES = "No previous memory."

"""Phrasings of the conflicting-evidence tasks: the HELD-OUT half.

Only the evaluation reads this module (``conflicts.phrasings("heldout")``); do not tune
conflict decisions on it. See ``conflicts`` for the kinds, placeholders and the split.
"""

from __future__ import annotations

from longdoc.pipeline.evaluation.conflicts import ConflictKind

GENUINE: tuple[str, ...] = (
    "Anyone entering {entity} types the {attr} {value}.",
    "For {entity}, the {attr} is {value}.",
    "Staff enter {entity} with the {attr} {value}.",
    "The {attr} in force for {entity} is {value}.",
    "Today the {attr} for {entity} is {value}.",
    "{Entity} uses the {attr} {value}.",
)
UNRELIABLE: dict[ConflictKind, tuple[str, ...]] = {
    "hedged": (
        "At a guess, the {attr} for {entity} is {value}.",
        "I suspect the {attr} for {entity} is {value}.",
        "One would expect the {attr} for {entity} to be {value}.",
        "The {attr} for {entity} could well be {value}.",
        "The {attr} for {entity} is possibly {value}.",
        "The {attr} for {entity} might be {value}.",
        "The {attr} for {entity} would presumably be {value}.",
        "{value} may be the {attr} for {entity}.",
    ),
    "unconfirmed": (
        "A contractor is said to have written down {value} as the {attr} for {entity}.",
        "A former guard alleged that the {attr} for {entity} was {value}.",
        "An old note claimed that the {attr} for {entity} was {value}.",
        "One tenant told reporters that the {attr} for {entity} was {value}.",
        "Rumour has it that the {attr} for {entity} is {value}.",
        "Some people believe the {attr} for {entity} is {value}.",
        "Someone scribbled on a napkin that {entity} opens with {value}; nobody checked.",
        "The {attr} for {entity} is {value}, according to an unverified post on a forum.",
    ),
    "superseded": (
        "Before the renovation, {entity} opened with the {attr} {value}.",
        "Formerly, the {attr} for {entity} was {value}.",
        "Originally {entity} had the {attr} {value}, which was later superseded.",
        "The old {attr} {value} for {entity} was retired in {month}.",
        "The previous {attr} for {entity}, {value}, is no longer valid.",
        "The {attr} for {entity} had been {value} before the security review.",
        "The {attr} for {entity} was changed from {value} after a break-in.",
        "Until {month}, staff entered {entity} with the {attr} {value}.",
    ),
    "sibling": (
        "For {sibling}, the {attr} is {value}.",
        "Staff working in {sibling} use {value} as their {attr}.",
        "The keypad at {sibling} takes the {attr} {value}.",
        "The {attr} for {sibling} is {value}.",
        "The {attr} that opens {sibling} is {value}.",
        "{Sibling} uses the {attr} {value}.",
        "{value} is the {attr} for {sibling}.",
    ),
}

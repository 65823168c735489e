"""Phrasings of the conflicting-evidence tasks: the DEVELOPMENT half (tune on these).

A ``conflict`` task (``tasks.conflict_task``) states a value about a named entity once
as plain, asserted, current fact (a ``GENUINE`` phrasing) and, elsewhere in the same
haystack, gives one or two *different* values in unreliable statements of one kind:

- ``hedged``: the writer is unsure (modal verbs, "perhaps", "seems", conditionals);
- ``unconfirmed``: a claim attributed to someone or something, or one nobody
  confirmed ("An old note claimed ...", "according to one account ...");
- ``superseded``: a value that held once and was replaced ("formerly X", "X until
  March; it has since been replaced"); the genuine sentence states the current value;
- ``sibling``: the same fact about a neighbouring entity (the east wing when the
  question asks about the west wing), stated plainly.

Every phrasing kind was written in varied wording (no single word marks a kind) and
split ONCE into two halves per kind by :func:`split_phrasings` (seed ``SPLIT_SEED``): this
module holds the development half, ``conflicts_heldout`` the held-out half, which only
the evaluation reads (``phrasings("heldout")``). Code that decides conflicts may be
tuned on this module's sentences; its reported figure comes from the held-out half.

Placeholders: ``{attr}`` (e.g. "access code"), ``{entity}``/``{Entity}`` (the asked
entity, lower/upper-case first letter), ``{sibling}``/``{Sibling}`` (a neighbouring
one), ``{value}``, ``{month}`` and ``{season}``.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

ConflictKind = Literal["hedged", "unconfirmed", "superseded", "sibling"]
CONFLICT_KINDS: tuple[ConflictKind, ...] = ("hedged", "unconfirmed", "superseded", "sibling")
ConflictSplit = Literal["dev", "heldout"]
CONFLICT_SPLITS: tuple[ConflictSplit, ...] = ("dev", "heldout")
SPLIT_SEED = 16

GENUINE: tuple[str, ...] = (
    "The current {attr} for {entity} is {value}.",
    "The keypad at {entity} accepts the {attr} {value}.",
    "The {attr} for {entity} is {value}.",
    "The {attr} that opens {entity} is {value}.",
    "{Entity} has the {attr} {value}.",
    "{value} is the {attr} for {entity}.",
)
UNRELIABLE: dict[ConflictKind, tuple[str, ...]] = {
    "hedged": (
        "Conceivably, {entity} has the {attr} {value}.",
        "If the usual pattern holds, the {attr} for {entity} should be {value}.",
        "It is possible that {entity} uses the {attr} {value}.",
        "Maybe {entity} opens with the {attr} {value}.",
        "Perhaps the {attr} for {entity} is {value}.",
        "The {attr} for {entity} is likely {value}, though that is a guess.",
        "The {attr} for {entity} is probably {value}, if memory serves.",
        "The {attr} for {entity} seems to be {value}.",
    ),
    "unconfirmed": (
        "A caller to the help desk claimed, without evidence, that the {attr} for {entity} "
        "is {value}.",
        "A visitor insisted the {attr} for {entity} was {value}, but this was never confirmed.",
        "According to one account, the {attr} for {entity} is {value}.",
        "An unsigned memo asserted that {entity} used the {attr} {value}.",
        "It has been said that the {attr} for {entity} is {value}.",
        "Local gossip puts the {attr} for {entity} at {value}.",
        "The {attr} for {entity} was once reported as {value}, a claim no one verified.",
        "The {attr} for {entity} was once thought to be {value}.",
    ),
    "superseded": (
        "In earlier years the {attr} for {entity} was {value}, before it was reset.",
        "Last {season} the {attr} for {entity} was {value}; a new one has since been issued.",
        "The expired {attr} for {entity} was {value}.",
        "The outdated {attr} {value} for {entity} was withdrawn.",
        "The {attr} for {entity} used to be {value}, but it was changed last {season}.",
        "The {attr} for {entity} was {value} until {month}; it has since been replaced.",
        "{Entity} no longer uses the {attr} {value}.",
        "{value} was the {attr} for {entity} until the locks were replaced.",
    ),
    "sibling": (
        "Across the courtyard, the {attr} for {sibling} is {value}.",
        "Anyone entering {sibling} types the {attr} {value}.",
        "Next door, {sibling} has the {attr} {value}.",
        "The {attr} for {sibling}, not to be confused with {entity}, is {value}.",
        "Unlike {entity}, {sibling} opens with the {attr} {value}.",
        "Visitors to {sibling} enter the {attr} {value}.",
        "{Sibling} has its own {attr}, {value}.",
    ),
}


class Phrasings(BaseModel):
    """One half of the phrasings: genuine statements and unreliable ones by kind."""

    split: ConflictSplit
    genuine: tuple[str, ...]
    unreliable: dict[ConflictKind, tuple[str, ...]]


def phrasings(split: ConflictSplit) -> Phrasings:
    """The phrasings of ``split`` ("dev": this module; "heldout": ``conflicts_heldout``)."""
    if split not in CONFLICT_SPLITS:
        raise ValueError(f"unknown split {split!r} (choose from {list(CONFLICT_SPLITS)})")
    module = importlib.import_module(__name__ if split == "dev"
                                     else f"{__package__}.conflicts_heldout")
    return Phrasings(split=split, genuine=module.GENUINE, unreliable=module.UNRELIABLE)


def split_phrasings(items: Sequence[str], kind: str) -> tuple[list[str], list[str]]:
    """How the halves were made (once): ``items`` sorted, shuffled with a seed of
    ``SPLIT_SEED`` and ``kind``; the first (larger) half is development. Both sorted."""
    ordered = sorted(items)
    random.Random(f"{SPLIT_SEED}:{kind}").shuffle(ordered)
    half = (len(ordered) + 1) // 2
    return sorted(ordered[:half]), sorted(ordered[half:])

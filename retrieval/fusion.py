"""Fusing rankings: reciprocal rank fusion, z-score fusion, and RRF that keeps each list's
first place (a decisive hit of one retriever survives a list that ranks it low).

Why not plain RRF: with its usual constant (60) two middling places (say 8th in both
lists, 2/68) outweigh one first place (1/61), so a chunk that BM25 ranks first by a wide
margin (the question's rarest words occur there only) drops out of the fused top ten when
the dense list ranks it low (issue 22: a 1M-token needle).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar, get_args

import numpy as np

from longdoc.pipeline.settings import FusionMethod

__all__ = ["FUSION_METHODS", "FusionMethod", "Item", "Scored", "fuse", "keep_leaders",
           "reciprocal_rank_fusion", "zscore_fusion"]

FUSION_METHODS: tuple[FusionMethod, ...] = get_args(FusionMethod)

Item = TypeVar("Item", bound=Hashable)  # a ranked thing: a chunk position, a chunk id
Scored = Sequence[tuple[Item, float]]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Item]], k: int = 60
) -> list[tuple[Item, float]]:
    """Items of all ``rankings`` (best first, ranks from 1) by fused score, best first.
    Ties keep the order in which items were first seen, scanning the lists rank by rank."""
    scores: dict[Item, float] = {}
    first_seen: dict[Item, tuple[int, int]] = {}
    for list_index, ranking in enumerate(rankings):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            first_seen.setdefault(item, (rank, list_index))
    return sorted(scores.items(), key=lambda kv: (-kv[1], first_seen[kv[0]]))


def keep_leaders(
    fused: list[tuple[Item, float]], rankings: Sequence[Sequence[Item]], leaders: int = 1
) -> list[tuple[Item, float]]:
    """``fused`` with each ranking's first ``leaders`` items moved to the front (in their
    fused order): whatever one retriever ranks first is in every top-k with
    ``k >= leaders * len(rankings)``."""
    front = {item for ranking in rankings for item in ranking[:leaders]}
    return [kv for kv in fused if kv[0] in front] + [kv for kv in fused if kv[0] not in front]


def zscore_fusion(lists: Sequence[Scored[Item]]) -> list[tuple[Item, float]]:
    """Items by the sum over lists of their score's z-score within that list (an item
    absent from a list gets that list's lowest z-score): a score far above a list's
    usual scores counts for much, a near-tie for little. Ties: first seen."""
    totals: dict[Item, float] = {}
    floors: list[float] = []
    normalised: list[dict[Item, float]] = []
    for scored in lists:
        if not scored:
            continue
        values = np.asarray([s for _, s in scored], dtype=np.float64)
        spread = float(values.std()) or 1.0
        z = {item: (score - float(values.mean())) / spread for item, score in scored}
        normalised.append(z)
        floors.append(min(z.values()))
    order: dict[Item, int] = {}
    for z in normalised:
        for item in z:
            order.setdefault(item, len(order))
    for item in order:
        totals[item] = sum(z.get(item, floor) for z, floor in zip(normalised, floors, strict=True))
    return sorted(totals.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def fuse(lists: Sequence[Scored[Item]], method: FusionMethod = "leaders",
         rrf_k: int = 60) -> list[tuple[Item, float]]:
    """Fuse scored rankings (each best first) by ``method``: ``rrf``, ``zscore``, or
    ``leaders`` (RRF with each list's first place kept at the front)."""
    if method == "zscore":
        return zscore_fusion(lists)
    rankings = [[item for item, _ in scored] for scored in lists]
    fused = reciprocal_rank_fusion(rankings, k=rrf_k)
    if method == "leaders":
        return keep_leaders(fused, rankings)
    if method == "rrf":
        return fused
    raise ValueError(f"unknown fusion method {method!r} (use {', '.join(FUSION_METHODS)})")

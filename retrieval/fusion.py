"""Reciprocal rank fusion: combine rankings by ``sum(1 / (k + rank))`` over the lists."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hashable]], k: int = 60
) -> list[tuple[Hashable, float]]:
    """Items of all ``rankings`` (best first, ranks from 1) by fused score, best first.
    Ties keep the order in which items were first seen, scanning the lists rank by rank."""
    scores: dict[Hashable, float] = {}
    first_seen: dict[Hashable, tuple[int, int]] = {}
    for list_index, ranking in enumerate(rankings):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            first_seen.setdefault(item, (rank, list_index))
    return sorted(scores.items(), key=lambda kv: (-kv[1], first_seen[kv[0]]))

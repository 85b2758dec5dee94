"""Preference pairs from K scored candidates per condition (method.md stage 4).

Winner = the candidate with the highest OKS, loser = the lowest; the pair is kept when
the gap is >= `min_gap` and the winner's OKS >= `min_winner_oks`. A candidate with no
genuine person (no detection, or one whose keypoints lie outside the image) scores 0.
Ties: among equal best scores the lowest candidate index wins, among equal worst scores
the highest index loses, so the choice is deterministic and the two always differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pd_assets import thresholds as T


@dataclass(frozen=True)
class PairRule:
    min_gap: float = T.DPO_MIN_OKS_GAP
    min_winner_oks: float = T.DPO_MIN_WINNER_OKS


def candidate_score(oks: float | None, genuine: bool) -> float:
    """The OKS a candidate competes with: 0 without a genuine person or a finite OKS."""
    if not genuine or oks is None or not math.isfinite(oks):
        return 0.0
    return float(oks)


def select_pair(scores: list[float], rule: PairRule = PairRule()) -> tuple[int, int] | str:
    """(winner index, loser index), or the reason the condition gives no pair."""
    if len(scores) < 2:
        return "fewer than 2 candidates"
    winner = max(range(len(scores)), key=lambda i: (scores[i], -i))
    loser = min(range(len(scores)), key=lambda i: (scores[i], -i))
    if scores[winner] < rule.min_winner_oks:
        return f"best OKS {scores[winner]:.3f} < {rule.min_winner_oks}"
    gap = scores[winner] - scores[loser]
    if gap < rule.min_gap:
        return f"OKS gap {gap:.3f} < {rule.min_gap}"
    return winner, loser

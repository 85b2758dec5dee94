"""Which candidates the next round gets: a curriculum over predicted difficulty.

Per mined round the schedule gives the *hardest fraction*: the band of the candidate pool
with the lowest predicted OKS that the hard picks come from (e.g. 30% for r0, then 10%:
each round is drawn from a harder band). A `diversity_share` of the selection is drawn
uniformly from the candidates not yet picked (anywhere in the pool), so the next round still sees easy bodies and views.
Within the band, picks are in a seeded random order (the band is usually several times
larger than the selection), and a candidate whose pose lies within `duplicate_distance_deg`
of an already selected one is skipped (the pose distance: the mean geodesic angle over the
pelvis orientation relative to the camera and the 21 body joints). When the band runs out,
the next-hardest candidates outside it follow, hardest first.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from pd_assets import thresholds as T
from pd_assets.poses.pose_sampler import rotvec_to_matrix


@dataclass
class Selection:
    indices: np.ndarray        # into the candidate pool, in pick order
    roles: list[str]           # "hard" | "diversity" per pick
    band_size: int             # candidates in the hardest fraction
    duplicates_skipped: int
    hardest_fraction: float


def hardest_fraction_for(schedule: list[float] | tuple[float, ...], round_index: int) -> float:
    """The schedule's entry for a round; rounds past its end keep the last entry."""
    if not schedule or any(not (0 < f <= 1) for f in schedule):
        raise ValueError(f"hardest_fraction_schedule={list(schedule)!r}: need fractions in (0, 1], at least one")
    return float(schedule[min(round_index, len(schedule) - 1)])


def pose_rotations(global_orient: np.ndarray, body_pose: np.ndarray, R_cam: np.ndarray) -> np.ndarray:
    """(N, 22, 9): pelvis rotation relative to the camera, then the 21 joints, flattened."""
    go = rotvec_to_matrix(np.asarray(global_orient, np.float64).reshape(-1, 3))
    cam = np.asarray(R_cam, np.float64).reshape(-1, 3, 3) @ go
    body = rotvec_to_matrix(np.asarray(body_pose, np.float64).reshape(len(go), -1, 3))
    return np.concatenate([cam[:, None], body], axis=1).reshape(len(go), -1, 9)


def pose_distance_deg(a: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Mean geodesic angle (degrees) between rotations `a` (J, 9) and each of `others` (M, J, 9)."""
    trace = np.einsum("jk,mjk->mj", a, others)  # trace(A^T B) per joint
    angle = np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0))
    return np.degrees(angle.mean(axis=1))


def select_candidates(predicted_oks: np.ndarray, rotations: np.ndarray, count: int, hardest_fraction: float,
                      diversity_share: float, duplicate_distance_deg: float,
                      rng: np.random.Generator) -> Selection:
    """`count` candidate indices: hard picks from the band, then diversity picks (see module doc)."""
    pred = np.asarray(predicted_oks, np.float64)
    n = len(pred)
    if not 0 <= diversity_share < 1:
        raise ValueError(f"diversity_share={diversity_share}: need 0 <= share < 1")
    if count < 1 or count > n:
        raise ValueError(f"cannot select {count} of {n} candidates: raise mining.pool_multiple "
                         "or lower mining.num_selected")
    n_div = int(round(count * diversity_share))
    n_hard = count - n_div
    order = np.argsort(pred, kind="stable")  # hardest (lowest predicted OKS) first
    band_size = min(n, max(1, int(math.ceil(hardest_fraction * n))))
    band, rest = order[:band_size], order[band_size:]
    hard_order = np.concatenate([rng.permutation(band), rest])  # the band, then next-hardest
    chosen: list[int] = []
    roles: list[str] = []
    taken = np.zeros(n, bool)
    skipped = 0
    picked_rot = np.empty((count, *rotations.shape[1:]))

    def try_take(i: int, role: str) -> bool:
        nonlocal skipped
        if taken[i]:
            return False
        if chosen and duplicate_distance_deg > 0:
            if pose_distance_deg(rotations[i], picked_rot[:len(chosen)]).min() < duplicate_distance_deg:
                taken[i] = True  # a near-duplicate stays out of every later pass too
                skipped += 1
                return False
        picked_rot[len(chosen)] = rotations[i]
        chosen.append(int(i))
        roles.append(role)
        taken[i] = True
        return True

    for i in hard_order:
        if len(chosen) == n_hard:
            break
        try_take(i, "hard")
    for i in rng.permutation(n):
        if len(chosen) == count:
            break
        try_take(i, "diversity")
    if len(chosen) < count:
        raise ValueError(
            f"only {len(chosen)} of {count} candidates remain after removing poses within "
            f"{duplicate_distance_deg} deg of each other: lower mining.duplicate_distance_deg or raise "
            "mining.pool_multiple")
    return Selection(indices=np.asarray(chosen), roles=roles, band_size=band_size,
                     duplicates_skipped=skipped, hardest_fraction=hardest_fraction)


def difficulty_bin_counts(oks: np.ndarray) -> dict[str, int]:
    """Counts per difficulty bin of thresholds.DIFFICULTY_BINS (every bin listed, maybe 0)."""
    counts: Counter[str] = Counter()
    for value in np.asarray(oks, np.float64):
        counts[next(name for lower, name in T.DIFFICULTY_BINS if value >= lower)] += 1
    return {name: int(counts.get(name, 0)) for _, name in T.DIFFICULTY_BINS}

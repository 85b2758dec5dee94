"""Selection obeys the curriculum schedule, the diversity share and the duplicate distance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pd_assets.mining.curriculum import (
    difficulty_bin_counts, hardest_fraction_for, pose_distance_deg, pose_rotations, select_candidates,
)


def _random_rotations(n: int, seed: int = 0) -> np.ndarray:
    """(n, 22, 9) independent random rotations: far from each other."""
    mats = Rotation.random(n * 22, random_state=seed).as_matrix()
    return mats.reshape(n, 22, 9)


def test_schedule_per_round_keeps_the_last_entry():
    assert [hardest_fraction_for([0.3, 0.1], r) for r in range(4)] == [0.3, 0.1, 0.1, 0.1]
    for bad in ([], [0.0], [1.5]):
        with pytest.raises(ValueError, match="hardest_fraction_schedule"):
            hardest_fraction_for(bad, 0)


@pytest.mark.parametrize("fraction", [0.3, 0.1])
def test_hard_picks_come_from_the_hardest_fraction_and_diversity_is_its_share(fraction):
    n = 1000
    pred = np.random.default_rng(1).permutation(n) / n  # candidate i's rank of difficulty is random
    sel = select_candidates(pred, _random_rotations(n), 100, fraction, 0.2, 3.0, np.random.default_rng(2))
    roles = np.array(sel.roles)
    assert len(sel.indices) == len(set(sel.indices.tolist())) == 100
    assert (roles == "hard").sum() == 80 and (roles == "diversity").sum() == 20
    band = set(np.argsort(pred)[:int(fraction * n)].tolist())
    assert sel.band_size == len(band) and set(sel.indices[roles == "hard"].tolist()) <= band
    # the diversity share is drawn from the whole pool: mostly outside the band
    outside = [i for i in sel.indices[roles == "diversity"].tolist() if i not in band]
    assert len(outside) >= 10
    assert pred[sel.indices].mean() < pred.mean()


def test_no_diversity_share_takes_only_the_band_and_a_small_band_spills_to_the_next_hardest():
    n = 200
    pred = np.arange(n) / n
    only_hard = select_candidates(pred, _random_rotations(n), 40, 0.5, 0.0, 0.0, np.random.default_rng(0))
    assert set(only_hard.roles) == {"hard"} and only_hard.indices.max() < 100
    spill = select_candidates(pred, _random_rotations(n), 40, 0.1, 0.0, 0.0, np.random.default_rng(0))
    assert sorted(spill.indices.tolist()) == list(range(40))  # the 20 of the band, then 20 next-hardest


def test_pose_distance_is_the_mean_joint_angle():
    a = np.tile(np.eye(3).ravel(), (22, 1))
    b = a.copy()
    b[5] = Rotation.from_euler("z", 22, degrees=True).as_matrix().ravel()  # one joint of 22 by 22 deg
    assert pose_distance_deg(a, b[None]) == pytest.approx([1.0])
    go, bp = np.zeros((1, 3)), np.zeros((1, 21, 3))
    rot = pose_rotations(go, bp, np.eye(3)[None])
    assert rot.shape == (1, 22, 9) and np.allclose(rot, a)


def test_near_duplicates_are_skipped():
    n = 400
    base = _random_rotations(n // 2, seed=3)
    twin = base.copy()
    nudge = Rotation.from_euler("x", 10, degrees=True).as_matrix()  # one joint by 10 deg: 0.45 deg mean
    twin[:, 7] = (nudge @ base[:, 7].reshape(-1, 3, 3)).reshape(-1, 9)
    rot = np.empty((n, 22, 9))
    rot[0::2], rot[1::2] = base, twin
    pred = np.random.default_rng(4).uniform(size=n)
    sel = select_candidates(pred, rot, 150, 0.5, 0.2, 3.0, np.random.default_rng(5))
    pairs = sel.indices // 2
    assert len(set(pairs.tolist())) == 150  # never both of a pair
    assert sel.duplicates_skipped > 0
    off = select_candidates(pred, rot, 150, 0.5, 0.2, 0.0, np.random.default_rng(5))
    assert len(set((off.indices // 2).tolist())) < 150  # without the distance, twins do get in
    with pytest.raises(ValueError, match="duplicate_distance_deg"):
        select_candidates(pred, rot, 250, 0.5, 0.2, 3.0, np.random.default_rng(5))


def test_selection_is_reproducible_and_validates_its_inputs():
    pred = np.linspace(0, 1, 100)
    rot = _random_rotations(100)
    a = select_candidates(pred, rot, 20, 0.3, 0.2, 3.0, np.random.default_rng(9))
    b = select_candidates(pred, rot, 20, 0.3, 0.2, 3.0, np.random.default_rng(9))
    assert np.array_equal(a.indices, b.indices) and a.roles == b.roles
    with pytest.raises(ValueError, match="pool_multiple"):
        select_candidates(pred, rot, 101, 0.3, 0.2, 3.0, np.random.default_rng(9))
    with pytest.raises(ValueError, match="diversity_share"):
        select_candidates(pred, rot, 10, 0.3, 1.0, 3.0, np.random.default_rng(9))


def test_difficulty_bins_follow_the_method():
    assert difficulty_bin_counts(np.array([0.95, 0.8, 0.79, 0.6, 0.5, 0.4, 0.39, 0.0])) == {
        "low": 2, "medium": 2, "high": 2, "very_high": 2}
    assert difficulty_bin_counts(np.array([])) == {"low": 0, "medium": 0, "high": 0, "very_high": 0}

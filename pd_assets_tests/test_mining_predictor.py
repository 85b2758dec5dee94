"""The OKS predictor learns a planted difficulty; its split, model file and importances."""

from __future__ import annotations

import numpy as np
import pytest

from pd_assets.mining.features import FEATURE_GROUPS, FEATURE_NAMES
from pd_assets.mining.predictor import (
    PredictorSettings, grouped_importance, importance_image, load_model, save_model, spearman, split_indices,
    train_predictor,
)

ELEVATION = FEATURE_NAMES.index("cam_elevation_deg")


def _planted(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random features; OKS falls with camera elevation (0.95 at -10 deg, 0.15 at 30 deg) plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURE_NAMES)))
    X[:, ELEVATION] = rng.uniform(-10, 30, size=n)
    y = np.clip(0.95 - 0.02 * (X[:, ELEVATION] + 10) + rng.normal(0, 0.05, size=n), 0, 1)
    return X, y


@pytest.fixture(scope="module")
def trained():
    X, y = _planted()
    return X, y, train_predictor(X, y, FEATURE_NAMES, PredictorSettings(), 7, "test", "r0")


def test_learns_that_oks_falls_with_elevation(trained):
    X, y, model = trained
    assert model.spearman is not None and model.spearman > 0.85
    assert model.mae < 0.1
    groups = grouped_importance(model.importance_gain, dict(zip(FEATURE_NAMES, FEATURE_GROUPS)))
    assert next(iter(groups)) == "camera elevation" and groups["camera elevation"] > 0.5
    # higher camera, lower predicted OKS, on fresh rows
    fresh, _ = _planted(50, seed=1)
    low, high = fresh.copy(), fresh.copy()
    low[:, ELEVATION], high[:, ELEVATION] = -5.0, 25.0
    assert (model.predict(high) < model.predict(low)).mean() > 0.95
    assert model.predict(fresh).min() >= 0 and model.predict(fresh).max() <= 1


def test_early_stopping_uses_validation_and_stops_before_the_cap(trained):
    _, _, model = trained
    assert model.split_sizes == {"train": 280, "validation": 40, "test": 80}
    assert 1 <= model.best_iteration < 1000


def test_split_is_seeded_disjoint_and_whole():
    a = split_indices(101, (0.7, 0.1, 0.2), 7, "r0")
    b = split_indices(101, (0.7, 0.1, 0.2), 7, "r0")
    c = split_indices(101, (0.7, 0.1, 0.2), 7, "r1")
    assert all(np.array_equal(x, y) for x, y in ((a.train, b.train), (a.val, b.val), (a.test, b.test)))
    assert not np.array_equal(a.test, c.test)
    assert (len(a.train), len(a.val), len(a.test)) == (71, 10, 20)
    assert sorted(np.concatenate([a.train, a.val, a.test]).tolist()) == list(range(101))
    with pytest.raises(ValueError, match="at least 10"):
        split_indices(9, (0.7, 0.1, 0.2), 7)
    with pytest.raises(ValueError, match="summing to 1"):
        split_indices(100, (0.7, 0.2, 0.2), 7)


def test_model_file_is_text_and_reloads_to_the_same_predictions(trained, tmp_path):
    X, _, model = trained
    path = tmp_path / "predictor.txt"
    save_model(model, path)
    assert path.read_text().startswith("tree")
    booster = load_model(path)
    np.testing.assert_allclose(np.clip(booster.predict(X), 0, 1), model.predict(X), atol=1e-12)
    with pytest.raises(FileNotFoundError, match="materialise mined_hard_set"):
        load_model(tmp_path / "absent.txt")


def test_spearman_is_undefined_for_constant_predictions():
    assert spearman(np.ones(5), np.arange(5)) is None
    assert spearman(np.arange(5), np.arange(5)) == pytest.approx(1.0)


def test_importance_image_draws_one_bar_per_group():
    img = importance_image({"camera elevation": 0.7, "shape": 0.2, "pose: left_knee": 0.1}, "test")
    assert img.size[1] == 10 * 3 + 22 * 4
    pixels = np.asarray(img)
    bar_rows = (pixels == (70, 110, 190)).all(axis=2).any(axis=1)
    assert bar_rows.sum() >= 3 * 10

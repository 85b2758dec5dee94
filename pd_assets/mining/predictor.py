"""A gradient-boosted regressor of OKS from difficulty features (LightGBM).

Defaults are the method's (method.md stage 5): 31 leaves, learning rate 0.05, max depth
8, up to 1000 trees, early stopping after 50 rounds without improvement, and a
70/10/20 train/validation/test split drawn from a fixed seed. The validation split only
decides when to stop; the test split only measures the held-out Spearman rank
correlation and mean absolute error that the asset reports. The model is saved as
LightGBM's text format (`Booster.save_model`), which loads without running code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pd_assets.seeding import rng_for


@dataclass(frozen=True)
class PredictorSettings:
    num_leaves: int = 31
    learning_rate: float = 0.05
    max_depth: int = 8
    num_boost_round: int = 1000
    early_stopping_rounds: int = 50
    min_data_in_leaf: int = 20
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train, validation, test
    num_threads: int = 1  # 2 threads on a shared 2-core machine spin-wait: ~30x slower than 1

    def lightgbm_params(self, seed: int) -> dict:
        return {
            "objective": "regression", "metric": "l2", "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate, "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_data_in_leaf, "num_threads": self.num_threads,
            "seed": int(seed) % (2 ** 31), "deterministic": True, "force_row_wise": True,
            "verbosity": -1,
        }


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclass
class TrainedPredictor:
    booster: object  # lightgbm.Booster
    feature_names: list[str]
    spearman: float | None  # held-out (test split); None when undefined (constant predictions)
    mae: float
    best_iteration: int
    split_sizes: dict[str, int]
    importance_gain: dict[str, float] = field(default_factory=dict)
    validation_spearman: float | None = None  # on the early-stopping split: what tuning may look at

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted OKS, clipped to [0, 1] (the range of OKS)."""
        return np.clip(self.booster.predict(np.asarray(X, np.float64), num_iteration=self.best_iteration), 0.0, 1.0)


def split_indices(n: int, split: tuple[float, float, float], project_seed: int, *namespace: object) -> Split:
    """A seeded permutation of range(n) cut into train / validation / test (each non-empty)."""
    fractions = np.asarray(split, np.float64)
    if fractions.shape != (3,) or np.any(fractions <= 0) or not math.isclose(fractions.sum(), 1.0, abs_tol=1e-6):
        raise ValueError(f"split={split!r}: need three positive fractions (train, validation, test) summing to 1")
    if n < 10:
        raise ValueError(f"only {n} scored samples: the predictor needs at least 10 "
                         "(materialise more shards or samples per shard for this round)")
    order = rng_for(project_seed, *namespace, "mining-split").permutation(n)
    n_test = max(1, int(round(fractions[2] * n)))
    n_val = max(1, int(round(fractions[1] * n)))
    n_train = n - n_test - n_val
    return Split(train=order[:n_train], val=order[n_train:n_train + n_val], test=order[n_train + n_val:])


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    value = float(spearmanr(a, b).statistic)
    return value if math.isfinite(value) else None


def train_predictor(X: np.ndarray, y: np.ndarray, feature_names: list[str], settings: PredictorSettings,
                    project_seed: int, *namespace: object) -> TrainedPredictor:
    """Fit on the train split, stop early on validation, measure on test."""
    import lightgbm as lgb

    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    if len(X) != len(y) or X.ndim != 2 or X.shape[1] != len(feature_names):
        raise ValueError(f"features {X.shape} and target {y.shape} do not match {len(feature_names)} names")
    split = split_indices(len(y), settings.split, project_seed, *namespace)
    params = settings.lightgbm_params(rng_for(project_seed, *namespace, "mining-model").integers(2 ** 31))
    train = lgb.Dataset(X[split.train], y[split.train], feature_name=list(feature_names), free_raw_data=False)
    val = lgb.Dataset(X[split.val], y[split.val], reference=train)
    booster = lgb.train(params, train, num_boost_round=settings.num_boost_round, valid_sets=[val],
                        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)])
    best = int(booster.best_iteration or booster.current_iteration())
    model = TrainedPredictor(booster=booster, feature_names=list(feature_names), spearman=None, mae=0.0,
                             best_iteration=best, split_sizes={"train": len(split.train), "validation": len(split.val),
                                                               "test": len(split.test)})
    model.validation_spearman = spearman(model.predict(X[split.val]), y[split.val])
    pred = model.predict(X[split.test])
    model.spearman = spearman(pred, y[split.test])
    model.mae = float(np.mean(np.abs(pred - y[split.test])))
    gains = booster.feature_importance(importance_type="gain", iteration=best)
    model.importance_gain = {name: float(g) for name, g in zip(feature_names, gains)}
    return model


def save_model(model: TrainedPredictor, path: Path) -> None:
    """LightGBM's text model (best iteration only); the caller stages the directory."""
    Path(path).write_text(model.booster.model_to_string(num_iteration=model.best_iteration))


def load_model(path: Path):
    """A `lightgbm.Booster` from a text model written by `save_model`."""
    import lightgbm as lgb

    if not Path(path).is_file():
        raise FileNotFoundError(f"no predictor at {path}: materialise mined_hard_set for that round")
    return lgb.Booster(model_file=str(path))


def grouped_importance(gains: dict[str, float], groups: dict[str, str]) -> dict[str, float]:
    """Gain summed per feature group, as fractions of the total, largest first."""
    total: dict[str, float] = {}
    for name, gain in gains.items():
        total[groups.get(name, name)] = total.get(groups.get(name, name), 0.0) + gain
    norm = sum(total.values()) or 1.0
    return dict(sorted(((k, v / norm) for k, v in total.items()), key=lambda kv: -kv[1]))


def importance_image(importance: dict[str, float], title: str, top: int = 20) -> Image.Image:
    """A horizontal bar chart of the largest `top` importances (fractions of the total gain)."""
    items = list(importance.items())[:top]
    row, label_w, bar_w, pad = 22, 200, 360, 10
    img = Image.new("RGB", (label_w + bar_w + 80, pad * 3 + row * (len(items) + 1)), "white")
    draw = ImageDraw.Draw(img)
    draw.text((pad, pad), title, fill="black")
    peak = max((v for _, v in items), default=1.0) or 1.0
    for i, (name, value) in enumerate(items):
        y = pad * 2 + row * (i + 1)
        draw.text((pad, y + 4), name[:32], fill="black")
        draw.rectangle([label_w, y + 3, label_w + int(bar_w * value / peak), y + row - 3], fill=(70, 110, 190))
        draw.text((label_w + int(bar_w * value / peak) + 6, y + 4), f"{value:.1%}", fill="black")
    return img

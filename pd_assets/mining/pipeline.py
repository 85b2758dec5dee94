"""One round of mining as a pure function, and what it writes.

`mine_round`: learn OKS from the round's scored samples, draw and score a candidate pool,
select by the curriculum. `write_mined_set`: the files of `mined_set.py`'s layout into a
directory the caller has staged.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from pd_assets.mining import mined_set as layout
from pd_assets.mining.candidates import draw_candidates
from pd_assets.mining.curriculum import (
    Selection, difficulty_bin_counts, hardest_fraction_for, pose_rotations, select_candidates,
)
from pd_assets.mining.features import FEATURE_GROUPS, FEATURE_NAMES, feature_matrix
from pd_assets.mining.predictor import (
    PredictorSettings, TrainedPredictor, grouped_importance, importance_image, save_model, train_predictor,
)
from pd_assets.mining.training_data import RoundTable
from pd_assets.poses.body_models import BodyModel
from pd_assets.poses.pool import PosePoolSettings
from pd_assets.seeding import rng_for
from pd_assets.storage import COMPLETE_MARKER, atomic_write_json, file_sha256


@dataclass(frozen=True)
class SelectionSettings:
    count: int
    pool_multiple: float = 20.0
    hardest_fraction_schedule: tuple[float, ...] = (0.3, 0.1)
    diversity_share: float = 0.2
    duplicate_distance_deg: float = 3.0

    @property
    def pool_size(self) -> int:
        return int(round(self.count * self.pool_multiple))


@dataclass
class MiningResult:
    round_name: str
    predictor: TrainedPredictor
    candidates: pl.DataFrame  # every candidate + predicted_oks, selected, role
    selected: pl.DataFrame    # the selected rows (mined_set.SELECTED_COLUMNS and more)
    selection: Selection
    training: dict            # what the predictor learnt from
    seconds: dict[str, float] = field(default_factory=dict)

    def report(self) -> dict:
        pred_all = self.candidates["predicted_oks"].to_numpy()
        pred_sel = self.selected["predicted_oks"].to_numpy()
        hard = self.selected.filter(pl.col("role") == "hard")["predicted_oks"].to_numpy()
        p = self.predictor
        return {
            "round": self.round_name,
            "num_selected": int(self.selected.height), "num_candidates": int(self.candidates.height),
            "num_hard": int(len(hard)), "num_diversity": int(self.selected.height - len(hard)),
            "hardest_fraction": self.selection.hardest_fraction, "band_size": self.selection.band_size,
            "duplicates_skipped": self.selection.duplicates_skipped,
            "predictor_spearman": p.spearman, "predictor_mae": p.mae, "best_iteration": p.best_iteration,
            "predictor_validation_spearman": p.validation_spearman,
            "split_sizes": p.split_sizes,
            "mean_predicted_oks_selected": float(pred_sel.mean()),
            "mean_predicted_oks_hard": float(hard.mean()) if len(hard) else None,
            "mean_predicted_oks_pool": float(pred_all.mean()),
            "bins_pool": difficulty_bin_counts(pred_all), "bins_selected": difficulty_bin_counts(pred_sel),
            "training": self.training,
            "importance_by_group": grouped_importance(p.importance_gain, dict(zip(FEATURE_NAMES, FEATURE_GROUPS))),
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


def mine_round(table: RoundTable, round_name: str, round_index: int, model: BodyModel,
               pool_settings: PosePoolSettings, predictor_settings: PredictorSettings,
               selection_settings: SelectionSettings, project_seed: int, batch_size: int = 64,
               log: Callable[[str], None] | None = None) -> MiningResult:
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    X = feature_matrix(table.frame)
    y = table.frame["oks_target"].to_numpy().astype(np.float64)
    predictor = train_predictor(X, y, FEATURE_NAMES, predictor_settings, project_seed, "mining", round_name)
    seconds["train"] = time.perf_counter() - t
    if log:
        log(f"predictor on {len(y)} samples: held-out Spearman {predictor.spearman}, MAE {predictor.mae:.3f}, "
            f"{predictor.best_iteration} trees")
    t = time.perf_counter()
    pool_settings = replace(pool_settings, mined=None)  # candidates: the pose source
    candidates = draw_candidates(pool_settings, model, project_seed, round_name, selection_settings.pool_size,
                                 batch_size=batch_size, log=log)
    seconds["candidates"] = time.perf_counter() - t
    t = time.perf_counter()
    pred = predictor.predict(feature_matrix(candidates))
    rot = pose_rotations(np.asarray(candidates["global_orient"].to_list()),
                         np.asarray(candidates["body_pose"].to_list()),
                         np.asarray(candidates["R"].to_list()))
    selection = select_candidates(
        pred, rot, selection_settings.count,
        hardest_fraction_for(selection_settings.hardest_fraction_schedule, round_index),
        selection_settings.diversity_share, selection_settings.duplicate_distance_deg,
        rng_for(project_seed, "mining", round_name, "selection"))
    seconds["select"] = time.perf_counter() - t
    role = np.full(len(pred), None, dtype=object)
    role[selection.indices] = selection.roles
    rank = np.full(len(pred), -1)
    rank[selection.indices] = np.arange(len(selection.indices))
    candidates = candidates.with_columns(
        pl.Series("predicted_oks", pred), pl.Series("role", role.tolist(), dtype=pl.String),
        pl.Series("selected", rank >= 0), pl.Series("selection_rank", rank))
    selected = candidates.filter(pl.col("selected")).sort("selection_rank")
    training = {"num_scored": table.num_scored, "num_used": table.frame.height,
                "num_no_person_as_oks_0": table.num_no_person, "num_excluded_no_oks": table.num_excluded,
                "mean_oks_target": float(y.mean()), "bins_measured": difficulty_bin_counts(y)}
    return MiningResult(round_name, predictor, candidates, selected, selection, training, seconds)


def write_mined_set(result: MiningResult, out_dir: Path, extra: dict | None = None) -> dict:
    """selected.parquet, candidates.parquet, predictor.txt, report.json/.md, the importance
    image and _COMPLETE.json into `out_dir` (staged by the caller). Returns the report."""
    out_dir = Path(out_dir)
    result.selected.drop("selected").write_parquet(out_dir / layout.SELECTED_NAME)
    result.candidates.select(
        "candidate_id", "pose_source", "pose_family", "framing", "elevation_deg", "azimuth_deg", "distance_m",
        "predicted_oks", "selected", "role", "selection_rank",
    ).write_parquet(out_dir / layout.CANDIDATES_NAME)
    save_model(result.predictor, out_dir / layout.MODEL_NAME)
    report = {**result.report(), **(extra or {})}
    report["selected_sha256"] = file_sha256(out_dir / layout.SELECTED_NAME)
    image = importance_image(report["importance_by_group"],
                             f"mined_hard_set[{result.round_name}]: feature importance (gain share)")
    image.save(out_dir / layout.IMPORTANCE_NAME)
    (out_dir / layout.REPORT_NAME).write_text(json.dumps(report, indent=2))  # importances stay ordered
    (out_dir / layout.REPORT_MD_NAME).write_text(report_markdown(report))
    atomic_write_json(out_dir / COMPLETE_MARKER, {
        "selected_sha256": report["selected_sha256"], "num_selected": report["num_selected"],
        "predictor_spearman": report["predictor_spearman"], "round": result.round_name,
    })
    return report


def report_markdown(report: dict) -> str:
    sp = report["predictor_spearman"]
    lines = [
        f"# mined_hard_set[{report['round']}]",
        "",
        f"- predictor: held-out Spearman {'undefined' if sp is None else f'{sp:.3f}'}, "
        f"MAE {report['predictor_mae']:.3f}, {report['best_iteration']} trees, split {report['split_sizes']}",
        f"- learnt from {report['training']['num_used']} of {report['training']['num_scored']} scored samples "
        f"({report['training']['num_no_person_as_oks_0']} with no person counted as OKS 0, "
        f"{report['training']['num_excluded_no_oks']} without OKS left out)",
        f"- selected {report['num_selected']} of {report['num_candidates']} candidates: {report['num_hard']} "
        f"from the hardest {report['hardest_fraction']:.0%} ({report['band_size']} candidates), "
        f"{report['num_diversity']} for diversity; {report['duplicates_skipped']} near-duplicates skipped",
        f"- mean predicted OKS: selected {report['mean_predicted_oks_selected']:.3f}, "
        f"pool {report['mean_predicted_oks_pool']:.3f}",
        "",
        "| bin | pool (predicted) | selected (predicted) | round (measured) |",
        "|---|---|---|---|",
    ]
    for name in report["bins_pool"]:
        lines.append(f"| {name} | {report['bins_pool'][name]} | {report['bins_selected'][name]} | "
                     f"{report['training']['bins_measured'][name]} |")
    return "\n".join(lines) + "\n"

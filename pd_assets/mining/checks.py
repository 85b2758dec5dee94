"""Asset checks of `mined_hard_set`: observed value and threshold in every result.

Blocking: the selection's mean predicted OKS is below the pool's (the set is harder than
what random sampling gives); the selected set is whole (unique ids, finite parameters,
the recorded sha256). Warning: the predictor's held-out Spearman is at or above
`mining.spearman_min` (a weak predictor still selects, only less well).
"""

import json
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from pd_assets.mining import mined_set as layout
from pd_assets.partitions import round_partitions
from pd_assets.storage import COMPLETE_MARKER, file_sha256
from resources.dataset_store import DatasetStoreResource
from resources.mining import MiningResource

_NUMERIC = ("global_orient", "body_pose", "shape", "K", "R", "t")


def _report(context, store: DatasetStoreResource) -> tuple[Path, dict]:
    directory = layout.mined_dir(store.root_path(), context.partition_key)
    return directory, json.loads((directory / layout.REPORT_NAME).read_text())


def evaluate_spearman(report: dict, floor: float) -> dg.AssetCheckResult:
    value = report.get("predictor_spearman")
    return dg.AssetCheckResult(
        passed=value is not None and value >= floor,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"predictor_spearman": "undefined (constant predictions)" if value is None else float(value),
                  "floor": floor, "test_samples": report["split_sizes"]["test"]})


def evaluate_harder_than_pool(report: dict) -> dg.AssetCheckResult:
    sel, pool = report["mean_predicted_oks_selected"], report["mean_predicted_oks_pool"]
    return dg.AssetCheckResult(
        passed=sel < pool,
        metadata={"mean_predicted_oks_selected": sel, "mean_predicted_oks_pool": pool,
                  "margin": pool - sel})


def evaluate_selected_set(selected: pl.DataFrame, report: dict, sha256: str, recorded: str | None) -> dg.AssetCheckResult:
    problems = []
    if selected.height != report["num_selected"]:
        problems.append(f"{selected.height} rows, report says {report['num_selected']}")
    dupes = selected.height - selected["candidate_id"].n_unique()
    if dupes:
        problems.append(f"{dupes} duplicate candidate ids")
    for column in _NUMERIC:
        values = selected[column].to_list()
        if any(v is None or not np.isfinite(np.asarray(v, np.float64)).all() for v in values):
            problems.append(f"non-finite or missing {column}")
    if any(len(v) != 63 for v in selected["body_pose"].to_list()):
        problems.append("body_pose is not 21 x 3")
    if recorded != sha256:
        problems.append(f"sha256 {sha256[:16]}... differs from the recorded {str(recorded)[:16]}...")
    return dg.AssetCheckResult(passed=not problems,
                               metadata={"num_selected": selected.height, "problems": "; ".join(problems) or "none"})


@dg.asset_check(asset="mined_hard_set", partitions_def=round_partitions, blocking=False,
                description="The predictor's held-out Spearman (predicted vs measured OKS) reaches the floor.")
def predictor_spearman_above_floor(context: dg.AssetCheckExecutionContext, dataset_store: DatasetStoreResource,
                                   mining: MiningResource) -> dg.AssetCheckResult:
    return evaluate_spearman(_report(context, dataset_store)[1], mining.spearman_min)


@dg.asset_check(asset="mined_hard_set", partitions_def=round_partitions, blocking=True,
                description="The selection's mean predicted OKS is below the candidate pool's.")
def selection_harder_than_pool(context: dg.AssetCheckExecutionContext,
                               dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    return evaluate_harder_than_pool(_report(context, dataset_store)[1])


@dg.asset_check(asset="mined_hard_set", partitions_def=round_partitions, blocking=True,
                description="selected.parquet: the reported count, unique ids, finite parameters, recorded sha256.")
def selected_set_is_whole(context: dg.AssetCheckExecutionContext,
                          dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    directory, report = _report(context, dataset_store)
    path = directory / layout.SELECTED_NAME
    recorded = json.loads((directory / COMPLETE_MARKER).read_text()).get("selected_sha256")
    return evaluate_selected_set(pl.read_parquet(path), report, file_sha256(path), recorded)


MINING_CHECKS = [predictor_spearman_above_floor, selection_harder_than_pool, selected_set_is_whole]

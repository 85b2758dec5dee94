"""Blocking data-quality checks on each `pose_pool` partition (great-expectations suites)."""


import math
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import polars as pl

from pd_assets import thresholds
from pd_assets.expectations import expectations_module, run_suite
from pd_assets.partitions import round_shard_partitions, split_key
from pd_assets.poses.labels import LIST_COLUMNS, array_column, read_labels
from pd_assets.safe_io import SAMPLE_ID_PATTERN
from resources.dataset_store import DatasetStoreResource
from resources.pose_sampling import PoseSamplingResource


def focal_range_px(sampling: PoseSamplingResource) -> tuple[float, float]:
    """The configured focal range in pixels (from focal_range_px, else from the fov range)."""
    if sampling.focal_range_px:
        lo, hi = sampling.focal_range_px
        return float(lo), float(hi)
    fov_lo, fov_hi = sampling.fov_range_deg  # a wider field of view is a shorter focal length
    half = sampling.width / 2.0
    return half / math.tan(math.radians(fov_hi) / 2), half / math.tan(math.radians(fov_lo) / 2)


def check_frame(labels: pl.DataFrame) -> pd.DataFrame:
    """One row per sample with the derived quantities the expectations look at."""
    numeric = [c for c in LIST_COLUMNS if c in labels.columns]
    finite = np.ones(len(labels), bool)
    for c in numeric:
        finite &= np.array([np.isfinite(np.asarray(v, np.float64)).all() for v in labels[c].to_list()])
    for c in ("focal_px", "distance_m"):
        finite &= np.isfinite(labels[c].to_numpy())
    kp = array_column(labels, "keypoints2d", (17, 2))
    vis = np.asarray(labels["keypoints_visible"].to_list(), bool)
    w = labels["width"].to_numpy()[:, None]
    h = labels["height"].to_numpy()[:, None]
    # pixel centres run 0..W-1, so the image covers [-0.5, W - 0.5)
    inside = (kp[..., 0] >= -0.5) & (kp[..., 0] < w - 0.5) & (kp[..., 1] >= -0.5) & (kp[..., 1] < h - 0.5)
    box = array_column(labels, "bbox_xyxy", (4,))
    return pd.DataFrame({
        "sample_id": labels["sample_id"].to_list(),
        "all_finite": finite,
        "visible_outside_image": (vis & ~inside).sum(axis=1),
        "bbox_area": (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]),
        "focal_px": labels["focal_px"].to_numpy(),
        "distance_m": labels["distance_m"].to_numpy(),
    })


def _labels_for(context, dataset_store: DatasetStoreResource) -> tuple[pl.DataFrame, Path]:
    round_name, shard = split_key(context)
    part = dataset_store.partition_dir("pose_pool", round_name, shard)
    return read_labels(part / "labels.parquet"), part


def _suite_result(name: str, frame: pd.DataFrame, expectations: list, **metadata) -> dg.AssetCheckResult:
    result = run_suite(name, frame, expectations)
    return dg.AssetCheckResult(
        passed=result.success,
        metadata={"expectations": result.evaluated, "failures": "\n".join(result.failures) or "none",
                  "num_samples": len(frame), **metadata},
    )


# ---- pure evaluations (tests call these on tampered tables) ---------------------------

def evaluate_finite_and_unique(labels: pl.DataFrame) -> dg.AssetCheckResult:
    gxe = expectations_module()
    return _suite_result("pose_pool_finite_unique", check_frame(labels), [
        gxe.ExpectColumnValuesToNotBeNull(column="sample_id"),
        gxe.ExpectColumnValuesToBeUnique(column="sample_id"),
        # ids name files and tar members downstream: only the documented form (no path parts)
        gxe.ExpectColumnValuesToMatchRegex(column="sample_id", regex=f"^{SAMPLE_ID_PATTERN.pattern}$"),
        gxe.ExpectColumnValuesToBeInSet(column="all_finite", value_set=[True]),
    ])


def evaluate_visible_inside(labels: pl.DataFrame) -> dg.AssetCheckResult:
    frame = check_frame(labels)
    gxe = expectations_module()
    return _suite_result("pose_pool_visible_inside", frame, [
        gxe.ExpectColumnValuesToBeBetween(column="visible_outside_image", min_value=0, max_value=0),
    ], visible_outside_total=int(frame["visible_outside_image"].sum()))


def evaluate_bbox_area(labels: pl.DataFrame) -> dg.AssetCheckResult:
    frame = check_frame(labels)
    gxe = expectations_module()
    return _suite_result("pose_pool_bbox_area", frame, [
        gxe.ExpectColumnValuesToBeBetween(column="bbox_area", min_value=thresholds.MIN_BBOX_AREA_PX),
    ], threshold=thresholds.MIN_BBOX_AREA_PX, min_observed=float(frame["bbox_area"].min()))


def evaluate_camera_ranges(labels: pl.DataFrame, sampling: PoseSamplingResource) -> dg.AssetCheckResult:
    frame = check_frame(labels)
    f_lo, f_hi = focal_range_px(sampling)
    d_lo, d_hi = sampling.distance_range_m
    slack = thresholds.RANGE_SLACK
    gxe = expectations_module()
    return _suite_result("pose_pool_camera_ranges", frame, [
        gxe.ExpectColumnValuesToBeBetween(column="focal_px", min_value=f_lo * (1 - slack), max_value=f_hi * (1 + slack)),
        gxe.ExpectColumnValuesToBeBetween(column="distance_m", min_value=d_lo - slack, max_value=d_hi + slack),
    ], focal_range_px=[f_lo, f_hi], distance_range_m=[d_lo, d_hi],
        focal_observed=[float(frame["focal_px"].min()), float(frame["focal_px"].max())],
        distance_observed=[float(frame["distance_m"].min()), float(frame["distance_m"].max())])


def evaluate_controls(labels: pl.DataFrame, partition_dir: Path) -> dg.AssetCheckResult:
    ids = set(labels["sample_id"].to_list())
    controls = [c.removeprefix("control_") for c in labels.columns if c.startswith("control_")]
    problems = {}
    for control in controls:
        present = {p.stem for p in (partition_dir / "controls" / control).glob("*.png")}
        missing, extra = ids - present, present - ids
        if missing or extra:
            problems[control] = {"missing": sorted(missing)[:5], "extra": sorted(extra)[:5],
                                 "num_missing": len(missing), "num_extra": len(extra)}
    return dg.AssetCheckResult(
        passed=not problems and bool(controls),
        metadata={"controls": controls, "num_samples": len(ids), "problems": problems or "none"},
    )


# ---- Dagster wiring -------------------------------------------------------------------

_CHECK = dict(asset="pose_pool", blocking=True, partitions_def=round_shard_partitions)


@dg.asset_check(**_CHECK, description="No NaN/inf in any label; sample ids present, unique, of the form r0-s0000-000000.")
def labels_finite_and_unique(context: dg.AssetCheckExecutionContext,
                             dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    return evaluate_finite_and_unique(_labels_for(context, dataset_store)[0])


@dg.asset_check(**_CHECK, description="Keypoints labelled visible project inside the image.")
def visible_keypoints_inside_image(context: dg.AssetCheckExecutionContext,
                                   dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    return evaluate_visible_inside(_labels_for(context, dataset_store)[0])


@dg.asset_check(**_CHECK, description=f"Person bbox area >= {thresholds.MIN_BBOX_AREA_PX} px^2.")
def bbox_area_above_minimum(context: dg.AssetCheckExecutionContext,
                            dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    return evaluate_bbox_area(_labels_for(context, dataset_store)[0])


@dg.asset_check(**_CHECK, description="Focal length and camera distance within the configured ranges.")
def camera_within_ranges(context: dg.AssetCheckExecutionContext, dataset_store: DatasetStoreResource,
                         pose_sampling: PoseSamplingResource) -> dg.AssetCheckResult:
    return evaluate_camera_ranges(_labels_for(context, dataset_store)[0], pose_sampling)


@dg.asset_check(**_CHECK, description="Exactly one control image per sample and control type, nothing extra.")
def one_control_per_sample(context: dg.AssetCheckExecutionContext,
                           dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    return evaluate_controls(*_labels_for(context, dataset_store))


POSES_CHECKS = [labels_finite_and_unique, visible_keypoints_inside_image, bbox_area_above_minimum,
                camera_within_ranges, one_control_per_sample]

"""Asset checks of `filtered_shards`: observed value and threshold in every result.

Blocking (downstream mining waits on them): every kept sample meets the OKS threshold
the partition was filtered with; the median kept OKS meets `MEDIAN_KEPT_OKS_MIN`; the
ids in the tar, the index and the pose pool agree; the index passes its
great-expectations suite. Warning: the pass rate lies outside `PASS_RATE_BAND`.
"""

import json
from pathlib import Path

import dagster as dg
import polars as pl

from pd_assets import thresholds as T
from pd_assets.curation.assets import INDEX_NAME, THRESHOLDS_NAME, shard_name
from pd_assets.curation.filters import STAGES
from pd_assets.curation.shards import shard_keys
from pd_assets.expectations import expectations_module, run_suite
from pd_assets.partitions import round_shard_partitions, split_key
from pd_assets.safe_io import read_parquet_frame
from resources.dataset_store import DatasetStoreResource

ASSET = "filtered_shards"


def _partition(context, store: DatasetStoreResource) -> tuple[Path, pl.DataFrame, dict]:
    round_name, shard = split_key(context)
    part = store.partition_dir(ASSET, round_name, shard)
    index = pl.read_parquet(part / INDEX_NAME)
    th_path = part / THRESHOLDS_NAME
    used = json.loads(th_path.read_text()) if th_path.is_file() else {}
    return part, index, used


def _ids(values, limit: int = 10) -> str:
    values = sorted(values)
    return ", ".join(values[:limit]) + (f" (+{len(values) - limit} more)" if len(values) > limit else "")


def kept_oks_result(index: pl.DataFrame, oks_min: float) -> dg.AssetCheckResult:
    kept = index.filter(pl.col("kept"))
    bad = kept.filter(pl.col("oks").is_null() | (pl.col("oks") < oks_min))
    min_kept = kept["oks"].min() if kept.height else None
    return dg.AssetCheckResult(
        passed=bad.height == 0,
        metadata={"num_kept": kept.height, "min_kept_oks": min_kept if min_kept is None else float(min_kept),
                  "threshold": oks_min, "violations": bad.height,
                  "violating_ids": _ids(bad["sample_id"].to_list())},
    )


def median_kept_oks_result(index: pl.DataFrame, threshold: float) -> dg.AssetCheckResult:
    kept = index.filter(pl.col("kept"))
    if kept.height == 0:
        return dg.AssetCheckResult(passed=True, metadata={
            "num_kept": 0, "threshold": threshold, "note": "no kept samples: nothing to check"})
    median = float(kept["oks"].median())
    return dg.AssetCheckResult(passed=median >= threshold,
                               metadata={"num_kept": kept.height, "median_kept_oks": median, "threshold": threshold})


def ids_result(index: pl.DataFrame, tar_keys: list[str], label_ids: list[str]) -> dg.AssetCheckResult:
    ids = index["sample_id"].to_list()
    kept = set(index.filter(pl.col("kept"))["sample_id"].to_list())
    problems = {
        "duplicate_index_ids": sorted({i for i in ids if ids.count(i) > 1}),
        "duplicate_tar_keys": sorted({k for k in tar_keys if tar_keys.count(k) > 1}),
        "kept_not_in_tar": sorted(kept - set(tar_keys)),
        "tar_not_kept": sorted(set(tar_keys) - kept),
        "pool_not_in_index": sorted(set(label_ids) - set(ids)),
        "index_not_in_pool": sorted(set(ids) - set(label_ids)),
    }
    return dg.AssetCheckResult(
        passed=not any(problems.values()),
        metadata={"index_rows": len(ids), "tar_samples": len(tar_keys), "pool_samples": len(label_ids),
                  **{k: len(v) for k, v in problems.items()},
                  "examples": "; ".join(f"{k}: {_ids(v, 5)}" for k, v in problems.items() if v) or "none"},
    )


def pass_rate_result(index: pl.DataFrame, band: tuple[float, float]) -> dg.AssetCheckResult:
    rate = index["kept"].mean() if index.height else 0.0
    return dg.AssetCheckResult(
        passed=band[0] <= rate <= band[1], severity=dg.AssetCheckSeverity.WARN,
        metadata={"pass_rate": float(rate), "band_low": band[0], "band_high": band[1], "num_samples": index.height},
    )


def index_expectations(index: pl.DataFrame):
    """great-expectations suite of index.parquet: ranges, nulls, uniqueness, consistency."""
    gxe = expectations_module()
    unit = ["presence", "oks", "oks_uncalibrated", "mask_iou", "pck", "clipped_dark", "clipped_bright"]
    suite = [
        gxe.ExpectColumnValuesToNotBeNull(column="sample_id"),
        gxe.ExpectColumnValuesToBeUnique(column="sample_id"),
        gxe.ExpectColumnValuesToMatchRegex(column="sample_id", regex=r"^r\d+-s\d{4}-\d{6}$"),
        gxe.ExpectColumnValuesToNotBeNull(column="kept"),
        gxe.ExpectColumnValuesToBeInSet(column="reject_stage", value_set=list(STAGES)),
        gxe.ExpectColumnValuesToBeNull(column="reject_stage", row_condition="kept==True", condition_parser="pandas"),
        gxe.ExpectColumnValuesToNotBeNull(column="reject_reason", row_condition="kept==False",
                                          condition_parser="pandas"),
        gxe.ExpectColumnValuesToNotBeNull(column="oks", row_condition="kept==True", condition_parser="pandas"),
        gxe.ExpectColumnValuesToBeBetween(column="person_count", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="sharpness", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="num_visible_keypoints", min_value=0, max_value=17),
        gxe.ExpectColumnValuesToBeInSet(column="difficulty_bin", value_set=[n for _, n in T.DIFFICULTY_BINS]),
        *[gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0.0, max_value=1.0) for c in unit],
    ]
    frame = index.select(pl.exclude(pl.List(pl.Float64), pl.List(pl.String))).to_pandas()
    return run_suite("filtered_shards_index", frame, suite)


@dg.asset_check(asset=ASSET, blocking=True, partitions_def=round_shard_partitions,
                description="Every kept sample has OKS >= the threshold it was filtered with.")
def kept_samples_meet_oks(context: dg.AssetCheckExecutionContext,
                          dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    _, index, used = _partition(context, dataset_store)
    return kept_oks_result(index, float(used.get("oks_min", T.OKS_MIN)))


@dg.asset_check(asset=ASSET, blocking=True, partitions_def=round_shard_partitions,
                description=f"Median OKS of kept samples >= {T.MEDIAN_KEPT_OKS_MIN}.")
def median_kept_oks(context: dg.AssetCheckExecutionContext,
                    dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    _, index, _ = _partition(context, dataset_store)
    return median_kept_oks_result(index, T.MEDIAN_KEPT_OKS_MIN)


@dg.asset_check(asset=ASSET, blocking=True, partitions_def=round_shard_partitions,
                description="Sample ids in the tar = kept ids in the index; index ids = pose_pool ids.")
def shard_ids_consistent(context: dg.AssetCheckExecutionContext,
                         dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    part, index, _ = _partition(context, dataset_store)
    round_name, shard = split_key(context)
    labels = dataset_store.partition_dir("pose_pool", round_name, shard) / "labels.parquet"
    label_ids = read_parquet_frame(labels, "pose_pool labels", "re-materialise pose_pool for this partition",
                                   columns=["sample_id"])["sample_id"].to_list()
    return ids_result(index, shard_keys(part / shard_name(round_name, shard)), label_ids)


@dg.asset_check(asset=ASSET, blocking=False, partitions_def=round_shard_partitions,
                description=f"Pass rate within {T.PASS_RATE_BAND} (warning only).")
def pass_rate_in_band(context: dg.AssetCheckExecutionContext,
                      dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    _, index, _ = _partition(context, dataset_store)
    return pass_rate_result(index, T.PASS_RATE_BAND)


@dg.asset_check(asset=ASSET, blocking=True, partitions_def=round_shard_partitions,
                description="great-expectations suite over index.parquet (ranges, nulls, uniqueness).")
def index_contract(context: dg.AssetCheckExecutionContext,
                   dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    _, index, _ = _partition(context, dataset_store)
    result = index_expectations(index)
    return dg.AssetCheckResult(passed=result.success, metadata={
        "expectations": result.evaluated, "failures": len(result.failures),
        "details": "\n".join(result.failures) or "none"})


CURATION_CHECKS = [kept_samples_meet_oks, median_kept_oks, shard_ids_consistent, pass_rate_in_band,
                   index_contract]

"""Dagster wiring of the curation stage: the `filtered_shards` asset."""

import dagster as dg
import polars as pl
from pydantic import Field

from pd_assets import thresholds as T
from pd_assets.curation.catalog import refresh_catalog
from pd_assets.curation.filters import STAGES, FilterThresholds
from pd_assets.curation.inputs import InputError, check_generation_complete, read_parquet_rows
from pd_assets.safe_io import read_label_rows
from pd_assets.curation.pipeline import curate_partition, index_frame
from pd_assets.curation.previews import kept_and_rejected_sheet, oks_histogram
from pd_assets.metadata import tidy
from pd_assets.partitions import round_shard_partitions, split_key
from pd_assets.previews import markdown_image, png_bytes
from pd_assets.storage import (
    COMPLETE_MARKER, atomic_directory, atomic_write_bytes, atomic_write_json, clean_partition_leftovers,
    partition_lock,
)
from resources.compute import ComputeResource
from resources.dataset_store import DatasetStoreResource
from resources.keypoint_detector import KeypointDetectorResource

INDEX_NAME = "index.parquet"
THRESHOLDS_NAME = "thresholds.json"


def shard_name(round_name: str, shard: str) -> str:
    return f"{round_name}-{shard}.tar"


class FilteredShardsConfig(dg.Config):
    """Filter thresholds (defaults: pd_assets/thresholds.py, the method's values) and output options."""

    oks_min: float = Field(default=T.OKS_MIN, ge=0.0, le=1.0)
    mask_iou_min: float = Field(default=T.MASK_IOU_MIN, ge=0.0, le=1.0)
    keypoint_similarity_min: float = Field(default=T.KEYPOINT_SIMILARITY_MIN, ge=0.0, le=1.0)
    min_keypoints_inside: int = Field(default=T.MIN_KEYPOINTS_INSIDE, ge=0, le=17,
                                      description="keypoints inside the image for a detection to be a person")
    head_pose_max_deg: float = Field(default=T.HEAD_POSE_MAX_DEG, gt=0.0)
    max_people: int = Field(default=T.MAX_PEOPLE, ge=1)
    sharpness_min: float = Field(default=T.SHARPNESS_MIN, ge=0.0)
    exposure_clipped_max: float = Field(default=T.EXPOSURE_CLIPPED_MAX, ge=0.0, le=1.0)
    presence_min: float = Field(default=T.PRESENCE_MIN, ge=0.0, le=1.0)
    include_pncc: bool = Field(default=True, description="also write {key}.pncc.png into the shard")
    jpeg_quality: int = Field(default=95, ge=50, le=100)
    preview_samples: int = Field(default=6, ge=0, le=48, description="kept / rejected tiles on the sheet")

    def thresholds(self) -> FilterThresholds:
        return FilterThresholds(
            max_people=self.max_people, oks_min=self.oks_min, mask_iou_min=self.mask_iou_min,
            keypoint_similarity_min=self.keypoint_similarity_min, min_keypoints_inside=self.min_keypoints_inside,
            head_pose_max_deg=self.head_pose_max_deg, sharpness_min=self.sharpness_min,
            exposure_clipped_max=self.exposure_clipped_max, presence_min=self.presence_min,
        )


def reject_table(index: pl.DataFrame) -> pl.DataFrame:
    """Rejected samples per stage and first failing check, in stage order."""
    rejected = index.filter(~pl.col("kept"))
    if rejected.height == 0:
        return pl.DataFrame({"reject_stage": [], "check": [], "samples": [], "example": []},
                            schema={"reject_stage": pl.String, "check": pl.String,
                                    "samples": pl.UInt32, "example": pl.String})
    table = (rejected.with_columns(pl.col("failed_checks").list.first().alias("check"))
             .group_by("reject_stage", "check")
             .agg(pl.len().alias("samples"), pl.col("reject_reason").first().alias("example")))
    order = {s: i for i, s in enumerate(STAGES)}
    return table.with_columns(pl.col("reject_stage").replace_strict(order, default=99).alias("_o")) \
        .sort("_o", "check").drop("_o")


def _float_or_null(value) -> dg.MetadataValue:
    return dg.MetadataValue.null() if value is None else dg.MetadataValue.float(float(value))


def _markdown_table(df: pl.DataFrame) -> str:
    if df.height == 0:
        return "no rejected samples"
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v).replace("|", "/") for v in row) + " |" for row in df.iter_rows()]
    return "\n".join(lines)


@dg.asset(
    key="filtered_shards",
    group_name="curation",
    partitions_def=round_shard_partitions,
    deps=["pose_pool", "raw_generations"],
    kinds={"python", "parquet", "duckdb"},
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
    pool="cpu",
)
def filtered_shards(
    context: dg.AssetExecutionContext,
    config: FilteredShardsConfig,
    keypoint_detector: KeypointDetectorResource,
    dataset_store: DatasetStoreResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    """Kept samples as a WebDataset shard, every sample's scores in a parquet index.

    A 2D keypoint detector scores each generated image against its label; the method's
    filter (crowding, OKS + silhouette IoU, head pose, image quality) keeps or rejects
    it with a reason. Kept samples go to `{round}-{shard}.tar` (`{key}.jpg`,
    `{key}.json` with the full label, provenance and scores, `{key}.pncc.png`);
    `index.parquet` holds every sample; `catalog.duckdb` at the dataset root gets views
    over all shards of all rounds.

    Refuses a raw_generations partition whose run is unfinished (its `journal/` exists);
    an image whose sha256 is not the one in its provenance row is rejected, never shipped
    with another run's provenance. A run without a keypoint calibration says why in its
    metadata and index (`calibration: none (...)`).
    """
    round_name, shard = split_key(context)
    pool_dir = dataset_store.partition_dir("pose_pool", round_name, shard)
    gen_dir = dataset_store.partition_dir("raw_generations", round_name, shard)
    final_dir = dataset_store.partition_dir("filtered_shards", round_name, shard)
    labels = read_label_rows(pool_dir, f"materialise pose_pool for partition {context.partition_key}")
    if config.include_pncc and labels and not any("control_pncc" in r for r in labels):
        raise InputError(f"pose_pool labels at {pool_dir} have no control_pncc column, but every kept sample "
                         "ships {id}.pncc.png: add pncc to pose_sampling.controls and re-materialise pose_pool, "
                         "or set filtered_shards config include_pncc: false")
    check_generation_complete(gen_dir, context.partition_key)
    provenance = {str(r["sample_id"]): r for r in read_parquet_rows(
        gen_dir / "provenance.parquet", "raw_generations provenance",
        f"materialise raw_generations for partition {context.partition_key}")}
    missing = sorted({str(r["sample_id"]) for r in labels} - provenance.keys())
    if missing:
        context.log.warning(f"{len(missing)} samples have no provenance row (first: {missing[0]}); "
                            "they are rejected: re-materialise raw_generations for this partition")
    detector = keypoint_detector.build()
    calibration, calibration_status = keypoint_detector.resolve_calibration()
    body_models = sorted({str(r.get("body_model")) for r in labels})
    if calibration is not None and calibration.body_model and body_models != [calibration.body_model]:
        why = f"{calibration_status} was fitted on {calibration.body_model} labels, these are {body_models}"
        calibration, calibration_status = None, f"none ({why})"
    if calibration is None and keypoint_detector.calibration.strip().lower() != "none":
        context.log.warning(f"scoring uncalibrated: {calibration_status} "
                            "(fit one with `python -m pd_assets.curation.calibrate`)")
    thresholds = config.thresholds()
    with partition_lock(dataset_store.root_path(), "filtered_shards", round_name, shard):
        for leftover in clean_partition_leftovers(final_dir):
            context.log.warning(f"removed leftover of an interrupted run: {leftover}")

        with atomic_directory(final_dir) as staging:
            result = curate_partition(
                labels, provenance, pool_dir, gen_dir, detector, calibration, thresholds,
                staging / shard_name(round_name, shard), batch_size=compute.batch_size,
                include_pncc=config.include_pncc, jpeg_quality=config.jpeg_quality,
                preview_samples=config.preview_samples, log=context.log.info,
                calibration_status=calibration_status,
            )
            if not result.records:
                raise InputError(f"pose_pool labels at {pool_dir} hold no samples: re-materialise pose_pool")
            index = index_frame(result.records)
            index.write_parquet(staging / INDEX_NAME)
            kept_oks = index.filter(pl.col("kept"))["oks"].to_list()
            hist = oks_histogram(kept_oks, index.filter(~pl.col("kept"))["oks"].to_list(), thresholds.oks_min)
            sheet = kept_and_rejected_sheet(result.kept_tiles, result.rejected_tiles)
            atomic_write_bytes(staging / "oks_histogram.png", png_bytes(hist))
            atomic_write_bytes(staging / "preview.png", png_bytes(sheet))
            atomic_write_json(staging / THRESHOLDS_NAME, thresholds.as_dict())
            atomic_write_json(staging / COMPLETE_MARKER, {
                "num_samples": index.height, "num_kept": result.num_kept,
                "detector": detector.provenance(),
                "calibration": calibration_status,
            })
    catalog = refresh_catalog(dataset_store.root_path())

    num = index.height
    kept_series = index.filter(pl.col("kept"))["oks"]
    median_kept = float(kept_series.median()) if result.num_kept else None
    rejects = reject_table(index)
    return dg.MaterializeResult(metadata=tidy({
        "num_samples": num,
        "num_kept": result.num_kept,
        "pass_rate": dg.MetadataValue.float(result.num_kept / num),
        "median_oks_kept": _float_or_null(median_kept),
        "median_oks_all": _float_or_null(index["oks"].median()),
        "oks_histogram": dg.MetadataValue.md(markdown_image(hist, "OKS histogram")),
        "reject_reasons": dg.MetadataValue.md(_markdown_table(rejects)),
        "contact_sheet": dg.MetadataValue.md(markdown_image(sheet, "kept (top) and rejected samples")),
        "thresholds": thresholds.as_dict(),
        "detector": detector.provenance(),
        "calibration": calibration_status,
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "images_per_second": dg.MetadataValue.float(num / max(result.wall_seconds, 1e-9)),
        "shard_path": dg.MetadataValue.path(str(final_dir / shard_name(round_name, shard))),
        "index_path": dg.MetadataValue.path(str(final_dir / INDEX_NAME)),
        "catalog_path": dg.MetadataValue.path(str(catalog)),
    }))


CURATION_ASSETS = [filtered_shards]

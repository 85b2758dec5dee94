"""Blocking checks on raw_generations: curation must not start on a partition with a
missing, extra or broken image, a wrong size, or incomplete provenance."""


from pathlib import Path

import dagster as dg
import polars as pl
from PIL import Image

from pd_assets.generation.store import (
    FAILED_REQUIRED_COLUMNS,
    JOURNAL_DIR,
    REQUIRED_PROVENANCE_COLUMNS,
    PosePoolMissingError,
    PoseSample,
    read_pose_samples,
    recorded_failures,
)
from pd_assets.partitions import round_shard_partitions, split_key
from pd_assets.storage import file_sha256
from resources.dataset_store import DatasetStoreResource
from resources.generator import GeneratorResource

_SHOW = 10  # how many offending ids a check lists in its metadata


def _partitions(context: dg.AssetCheckExecutionContext, store: DatasetStoreResource):
    """(partition key, pose samples, raw_generations dir) per partition of the run; a check
    on a partition whose pose_pool is gone fails (see `_missing`) instead of erroring."""
    for key in context.partition_keys:
        round_name, shard = split_key(key)
        pose_dir = store.partition_dir("pose_pool", round_name, shard)
        out_dir = store.partition_dir("raw_generations", round_name, shard)
        try:
            samples = read_pose_samples(pose_dir)
        except PosePoolMissingError:
            samples = None
        yield key, samples, out_dir


def _missing(key: str) -> str:
    return f"{key}: pose_pool partition missing, nothing to compare with (materialise pose_pool first)"


def one_image_per_sample(samples: list[PoseSample], out_dir: Path) -> dict:
    """Missing, extra, undecodable images and leftover temp files of one partition. A sample
    whose provenance row records why it got no image (`error`) is `failed`, not missing:
    curation rejects it with that reason."""
    images = Path(out_dir) / "images"
    present = {p.stem: p for p in images.glob("*.png")} if images.is_dir() else {}
    failed = recorded_failures(out_dir)
    wanted = {s.sample_id for s in samples} - failed.keys()
    undecodable = []
    for sid in sorted(wanted & present.keys()):
        try:
            with Image.open(present[sid]) as img:
                img.load()
        except (OSError, SyntaxError):
            undecodable.append(sid)
    temp = [p.name for p in images.iterdir() if p.name.startswith(".")] if images.is_dir() else []
    return {
        "num_samples": len(samples), "num_images": len(present),
        "missing": sorted(wanted - present.keys()), "extra": sorted(present.keys() - wanted),
        "undecodable": undecodable, "temp_files": temp,
        "failed": [f"{sid} ({err})" for sid, err in sorted(failed.items())],
    }


def wrong_sizes(samples: list[PoseSample], out_dir: Path, generator: GeneratorResource) -> list[str]:
    bad = []
    failed = recorded_failures(out_dir)
    for s in samples:
        if s.sample_id in failed:
            continue
        path = Path(out_dir) / "images" / f"{s.sample_id}.png"
        if not path.is_file():
            bad.append(f"{s.sample_id}: missing")
            continue
        try:
            with Image.open(path) as img:
                size = img.size
        except (OSError, SyntaxError):
            bad.append(f"{s.sample_id}: unreadable")
            continue
        want = generator.image_size(s.label_width, s.label_height)
        if size != want:
            bad.append(f"{s.sample_id}: {size[0]}x{size[1]} != {want[0]}x{want[1]}")
    return bad


def provenance_problems(samples: list[PoseSample], out_dir: Path) -> list[str]:
    path = Path(out_dir) / "provenance.parquet"
    if not path.is_file():
        return [f"{path} does not exist"]
    df = pl.read_parquet(path)
    problems = []
    if (Path(out_dir) / JOURNAL_DIR).exists():
        problems.append(f"{Path(out_dir) / JOURNAL_DIR} exists: a run is under way or was killed, so the "
                        "partition is incomplete; re-materialise it")
    absent = [c for c in REQUIRED_PROVENANCE_COLUMNS if c not in df.columns]
    if absent:
        problems.append(f"columns missing: {absent}")
    made = df.filter(pl.col("error").is_null()) if "error" in df.columns else df
    failed = df.filter(pl.col("error").is_not_null()) if "error" in df.columns else df.clear()
    for col in (c for c in REQUIRED_PROVENANCE_COLUMNS if c in df.columns):
        nulls = made[col].null_count()
        if nulls:
            problems.append(f"{col}: {nulls} null(s)")
    for col in (c for c in FAILED_REQUIRED_COLUMNS if c in df.columns):
        nulls = failed[col].null_count()
        if nulls:
            problems.append(f"{col}: {nulls} null(s) in rows of failed samples")
    ids = df["sample_id"].to_list() if "sample_id" in df.columns else []
    if sorted(ids) != sorted(s.sample_id for s in samples):
        problems.append(f"{len(ids)} rows for {len(samples)} samples (or other sample ids)")
    if "image_sha256" in df.columns and not absent:
        for sid, digest in zip(made["sample_id"].to_list(), made["image_sha256"].to_list(), strict=True):
            img = Path(out_dir) / "images" / f"{sid}.png"
            if img.is_file() and file_sha256(img) != digest:
                problems.append(f"{sid}: image bytes differ from the recorded sha256")
        for sid in failed["sample_id"].to_list():
            if (Path(out_dir) / "images" / f"{sid}.png").exists():
                problems.append(f"{sid}: recorded as failed but an image exists")
    return problems


@dg.asset_check(asset="raw_generations", blocking=True, partitions_def=round_shard_partitions,
                description="exactly one decodable image per pose_pool sample, no extras, no temp files")
def raw_generations_one_image_per_sample(
    context: dg.AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> dg.AssetCheckResult:
    totals = {"num_samples": 0, "num_images": 0}
    issues: dict[str, list] = {"missing": [], "extra": [], "undecodable": [], "temp_files": []}
    failed: list[str] = []
    for key, samples, out_dir in _partitions(context, dataset_store):
        if samples is None:
            issues["missing"].append(_missing(key))
            continue
        found = one_image_per_sample(samples, out_dir)
        for k in totals:
            totals[k] += found[k]
        for k in issues:
            issues[k] += [f"{key}:{v}" for v in found[k]]
        failed += [f"{key}:{v}" for v in found["failed"]]
    passed = not any(issues.values())
    return dg.AssetCheckResult(passed=passed, metadata={
        **totals, **{f"num_{k}": len(v) for k, v in issues.items()},
        **{k: ", ".join(v[:_SHOW]) for k, v in issues.items() if v},
        # samples that got no image, with the reason raw_generations recorded (curation rejects them)
        "num_failed": len(failed), **({"failed": "; ".join(failed[:_SHOW])} if failed else {}),
    })


@dg.asset_check(asset="raw_generations", blocking=True, partitions_def=round_shard_partitions,
                description="every image has the configured size (generator.width/height or the pose_pool size)")
def raw_generations_sizes(
    context: dg.AssetCheckExecutionContext, dataset_store: DatasetStoreResource, generator: GeneratorResource
) -> dg.AssetCheckResult:
    bad = []
    for key, samples, out_dir in _partitions(context, dataset_store):
        if samples is None:
            bad.append(_missing(key))
            continue
        bad += [f"{key}:{b}" for b in wrong_sizes(samples, out_dir, generator)]
    return dg.AssetCheckResult(passed=not bad, metadata={
        "num_wrong_size": len(bad), "configured": f"{generator.width or 'pose_pool'}x{generator.height or 'pose_pool'}",
        **({"examples": ", ".join(bad[:_SHOW])} if bad else {}),
    })


@dg.asset_check(asset="raw_generations", blocking=True, partitions_def=round_shard_partitions,
                description="provenance.parquet: one row per sample, no nulls in required columns, hashes match")
def raw_generations_provenance_complete(
    context: dg.AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> dg.AssetCheckResult:
    problems = []
    for key, samples, out_dir in _partitions(context, dataset_store):
        if samples is None:
            problems.append(_missing(key))
            continue
        problems += [f"{key}: {p}" for p in provenance_problems(samples, out_dir)]
    return dg.AssetCheckResult(passed=not problems, metadata={
        "num_problems": len(problems), "required_columns": len(REQUIRED_PROVENANCE_COLUMNS),
        **({"problems": "; ".join(problems[:_SHOW])} if problems else {}),
    })


GENERATION_CHECKS = [
    raw_generations_one_image_per_sample,
    raw_generations_sizes,
    raw_generations_provenance_complete,
]

"""Dagster wiring of stage 1: the `pose_pool` asset."""


from dataclasses import replace

import dagster as dg

from pd_assets.disk_space import pose_pool_bytes, require_free_space
from pd_assets.metadata import tidy
from pd_assets.mining.mined_set import load_mined_set, previous_round
from pd_assets.partitions import round_shard_partitions, split_key
from pd_assets.poses.cameras import CameraConfig
from pd_assets.poses.pool import PosePoolSettings, build_pose_pool
from pd_assets.previews import markdown_image
from pd_assets.storage import (
    COMPLETE_MARKER, atomic_directory, atomic_write_json, clean_partition_leftovers, partition_lock,
)
from resources.body_model import BodyModelResource
from resources.compute import ComputeResource
from resources.dataset_store import DatasetStoreResource
from resources.pose_sampling import PoseSamplingResource


def settings_from(resource: PoseSamplingResource) -> PosePoolSettings:
    camera = CameraConfig(
        width=resource.width, height=resource.height,
        focal_range_px=tuple(resource.focal_range_px) if resource.focal_range_px else None,
        fov_range_deg=tuple(resource.fov_range_deg), distance_range_m=tuple(resource.distance_range_m),
        elevation_range_deg=tuple(resource.elevation_range_deg),
        azimuth_range_deg=tuple(resource.azimuth_range_deg), roll_range_deg=tuple(resource.roll_range_deg),
        framing_weights=dict(resource.framing_weights),
    )
    return PosePoolSettings(
        samples_per_shard=resource.samples_per_shard, camera=camera,
        controls=resource.validated_controls(), family_weights=resource.family_weights,
        pose_source=resource.pose_source, pose_source_paths=tuple(resource.pose_source_paths),
        frames_per_sequence=resource.frames_per_sequence, prompt_bank_path=resource.prompt_bank_path,
        prompt_view=resource.prompt_view, hair=resource.hair,
    )


@dg.asset(
    key="pose_pool",
    group_name="poses",
    partitions_def=round_shard_partitions,
    kinds={"python", "parquet", "opengl"},
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
    pool="cpu",
)
def pose_pool(
    context: dg.AssetExecutionContext,
    compute: ComputeResource,
    body_model: BodyModelResource,
    pose_sampling: PoseSamplingResource,
    dataset_store: DatasetStoreResource,
) -> dg.MaterializeResult:
    """Sampled 3D bodies with exact labels and their control maps, one shard of a round.

    Body parameters, camera K/R/t, 3D joints, COCO-17 2D keypoints with visibility, bbox,
    person mask and prompt per sample (labels.parquet), plus PNCC, depth, normals,
    part-segmentation, skeleton, shaded and mask images. Re-materialising a partition
    gives the same labels (every draw is seeded by project seed, round, shard, index).

    Rounds r1+ draw bodies and cameras from `mined_hard_set[r-1]` in the dataset store
    (unless `pose_sampling.draw_from_mined` is false) and record that set's round and
    sha256 in every label; the run fails, naming what to materialise, when it is missing.
    """
    round_name, shard = split_key(context)
    settings = settings_from(pose_sampling)
    source = previous_round(round_name) if pose_sampling.draw_from_mined else None
    mined = load_mined_set(dataset_store.root_path(), source, round_name) if source else None
    settings = replace(settings, mined=mined)
    final_dir = dataset_store.partition_dir("pose_pool", round_name, shard)
    # before anything is loaded or rendered: the partition is staged whole beside the old one
    require_free_space(final_dir, pose_pool_bytes(settings.samples_per_shard, settings.camera.width,
                                                  settings.camera.height, settings.controls),
                       what=f"pose_pool {round_name}|{shard} ({settings.samples_per_shard} samples)")
    model = body_model.load(device=compute.torch_device())
    with partition_lock(dataset_store.root_path(), "pose_pool", round_name, shard):
        for leftover in clean_partition_leftovers(final_dir):
            context.log.warning(f"removed leftover of an interrupted run: {leftover}")
        with atomic_directory(final_dir) as staging:
            summary = build_pose_pool(
                settings, model, staging, compute.seed, round_name, shard,
                batch_size=compute.batch_size, log=context.log.info,
            )
            atomic_write_json(staging / COMPLETE_MARKER, {
                "num_samples": summary.num_samples, "body_model": model.name,
                "body_model_hash": model.content_hash, "project_seed": compute.seed,
                "controls": list(settings.controls),
                "mined_from_round": mined.round_name if mined else None,
                "mined_set_hash": mined.content_hash if mined else None,
            })
    return dg.MaterializeResult(metadata=tidy({
        "num_samples": summary.num_samples,
        "samples_per_second": dg.MetadataValue.float(summary.samples_per_second),
        "seconds": dg.MetadataValue.float(summary.seconds),
        "stage_seconds": dict(summary.stage_seconds),
        "body_model": model.name,
        "pose_families": summary.families,
        "framings": summary.framings,
        "pose_rejections": summary.pose_rejections,
        "pose_origin": (f"mined_hard_set[{mined.round_name}] sha256 {mined.content_hash}" if mined
                        else f"{settings.pose_source} (random)"),
        "mined_from_round": mined.round_name if mined else dg.MetadataValue.null(),
        "mined_set_hash": mined.content_hash if mined else dg.MetadataValue.null(),
        "labels_path": dg.MetadataValue.path(str(final_dir / "labels.parquet")),
        "controls_dir": dg.MetadataValue.path(str(final_dir / "controls")),
        "preview_path": dg.MetadataValue.path(str(final_dir / "preview.png")),
        "preview": dg.MetadataValue.md(markdown_image(summary.preview, "pose_pool preview")),
    }))


POSES_ASSETS = [pose_pool]

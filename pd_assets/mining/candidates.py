"""Candidate bodies and cameras for mining, drawn like pose_pool samples but never generated.

A candidate is what a pose_pool sample would be before its images: pose (the round's
pose source: the procedural sampler, or AMASS / fit records), shape and camera from the
same settings, with their own seed namespace (`mining-{round}`, `candidates`, index), so a
candidate pool never repeats a sample of any round. Each candidate is posed by the body
model and rendered once (depth only matters) for the label quantities the difficulty
features read: 2D keypoints, their visibility (self-occlusion), bbox and mask area.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import polars as pl

from pd_assets.poses import control_maps
from pd_assets.poses.body_models import BodyModel
from pd_assets.poses.cameras import project_points, sample_camera
from pd_assets.poses.labels import LIST_COLUMNS, bbox_from_mask, flat, to_camera
from pd_assets.poses.pool import FRAMING_STRIDE, PosePoolSettings, draw_bodies, renderer_for
from pd_assets.poses.pose_sources import load_pose_records
from pd_assets.seeding import derive_seed, rng_for

CANDIDATE_SHARD = "candidates"


def candidate_namespace(round_name: str) -> str:
    return f"mining-{round_name}"


def candidate_id(round_name: str, index: int) -> str:
    return f"{round_name}-c{index:06d}"


def draw_candidates(settings: PosePoolSettings, model: BodyModel, project_seed: int, round_name: str,
                    count: int, batch_size: int = 64, log: Callable[[str], None] | None = None) -> pl.DataFrame:
    """`count` candidates as a label-like table (labels.parquet columns without prompt and
    controls, plus `candidate_id` and the camera's `azimuth_deg`, `elevation_deg`, `roll_deg`)."""
    if count < 1:
        raise ValueError(f"candidate pool size must be >= 1, got {count}")
    ns = candidate_namespace(round_name)
    cam_cfg = settings.camera
    width, height = cam_cfg.width, cam_cfg.height
    records = load_pose_records(settings.pose_source, settings.pose_source_paths,
                                rng_for(project_seed, ns, "pose-source"), settings.frames_per_sequence)
    renderer = renderer_for(model, width, height)
    rows: list[dict] = []
    t0 = time.perf_counter()
    for start in range(0, count, batch_size):
        indices = range(start, min(start + batch_size, count))
        params, sources, families, _ = draw_bodies(settings, model, project_seed, ns, CANDIDATE_SHARD,
                                                   indices, records)
        meshes = model.forward(params)
        for b, i in enumerate(indices):
            cam = sample_camera(rng_for(project_seed, ns, CANDIDATE_SHARD, i, "camera"), cam_cfg,
                                meshes.vertices[b][::FRAMING_STRIDE], joints=meshes.joints[b])
            render = renderer.render(to_camera(meshes.vertices[b], cam.R, cam.t), cam.K)
            kp2d, _ = project_points(meshes.coco17[b], cam.K, cam.R, cam.t)
            kp_cam = to_camera(meshes.coco17[b], cam.R, cam.t)
            visible = control_maps.keypoint_visibility(kp_cam, cam.K, render.depth, width, height)
            rows.append({
                "candidate_id": candidate_id(round_name, i), "index": i,
                "seed": derive_seed(project_seed, ns, CANDIDATE_SHARD, i, "pose"),
                "body_model": model.name, "body_model_hash": model.content_hash,
                "pose_source": sources[b], "pose_family": families[b],
                "shape": flat(params.shape[b]), "global_orient": flat(params.global_orient[b]),
                "body_pose": flat(params.body_pose[b]), "transl": flat(params.transl[b]),
                "width": width, "height": height, "K": flat(cam.K), "R": flat(cam.R), "t": flat(cam.t),
                "focal_px": float(cam.focal_px), "distance_m": float(cam.distance_m), "framing": cam.framing,
                "azimuth_deg": cam.azimuth_deg, "elevation_deg": cam.elevation_deg, "roll_deg": cam.roll_deg,
                "keypoints3d_cam": flat(kp_cam), "keypoints2d": flat(kp2d),
                "keypoints_visible": [bool(v) for v in visible],
                "bbox_xyxy": list(bbox_from_mask(render.mask)), "mask_area": int(render.mask.sum()),
            })
        if log:
            log(f"mining {round_name}: {len(rows)}/{count} candidates ({time.perf_counter() - t0:.0f} s)")
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        [pl.col(c).cast(pl.List(pl.Float32)) for c in LIST_COLUMNS if c in frame.columns]
        + [pl.col("seed").cast(pl.Int64), pl.col("index").cast(pl.Int64)]
    )


def body_arrays(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(global_orient (N, 3), body_pose (N, 21, 3)) of a label-like table."""
    go = np.asarray(frame["global_orient"].to_list(), np.float64).reshape(len(frame), 3)
    bp = np.asarray(frame["body_pose"].to_list(), np.float64).reshape(len(frame), -1, 3)
    return go, bp

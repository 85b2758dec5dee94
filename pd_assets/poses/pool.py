"""Stage 1 as one pure function: a shard of labelled samples with their control maps.

`build_pose_pool` samples poses, shapes, cameras and prompts (every draw seeded by
(project seed, round, shard, index, purpose)), poses the bodies in batches, renders
all control maps in one pass per sample, derives 2D keypoints with visibility, and
writes the label table and the control PNGs into a directory the caller has staged.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from pd_assets.generation.prompts import load_prompt_bank, sample_prompt
from pd_assets.mining.mined_set import MinedSet
from pd_assets.poses import control_maps
from pd_assets.poses.body_models import BodyModel, BodyParams
from pd_assets.poses.cameras import CameraConfig, project_points, sample_camera
from pd_assets.poses.labels import bbox_from_mask, flat, to_camera, write_labels
from pd_assets.poses.pose_sampler import sample_pose
from pd_assets.poses.pose_sources import PoseRecord, load_pose_records
from pd_assets.poses.render import Renderer, RenderOutput, hair_vertices, pncc_colors, sample_shading
from pd_assets.poses.view import body_view
from pd_assets.previews import contact_sheet, draw_keypoints, to_rgb_image
from pd_assets.seeding import derive_seed, rng_for
from pd_assets.skeleton import NUM_BODY_POSE_JOINTS, joint_index


@dataclass(frozen=True)
class PosePoolSettings:
    samples_per_shard: int
    camera: CameraConfig
    controls: tuple[str, ...]
    family_weights: dict[str, float] | None = None
    pose_source: str = "procedural"
    pose_source_paths: tuple[str, ...] = ()
    frames_per_sequence: int = 15
    prompt_bank_path: str | None = None
    # prompts state the body's view (front/side/back) from the label, for text encoders that know the words
    prompt_view: bool = False
    # the shaded map draws hair on the back of the head and the crown (False: a bald head,
    # the shaded maps of runs before hair existed, byte for byte)
    hair: bool = True
    # rounds r >= 1: the mined set (of the previous round) that poses, shapes and cameras
    # are drawn from instead of the pose source (pd_assets/mining/mined_set.py)
    mined: MinedSet | None = None


@dataclass
class PoolSummary:
    num_samples: int
    seconds: float
    stage_seconds: dict[str, float]
    families: dict[str, int]
    framings: dict[str, int]
    pose_rejections: int
    preview: Image.Image
    label_path: Path
    control_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def samples_per_second(self) -> float:
        return self.num_samples / max(self.seconds, 1e-9)


def canonical_a_pose() -> np.ndarray:
    """(21, 3) body_pose of the PNCC canonical mesh: A-pose, legs slightly apart.

    SMPL axes: the left arm points along +x, so -45 deg about z lowers it; the right
    arm (-x) lowers with +45 deg. The left leg moves outward (+x) with +z rotation.
    """
    pose = np.zeros((NUM_BODY_POSE_JOINTS, 3))
    for name, angle in (("left_shoulder", -np.pi / 4), ("right_shoulder", np.pi / 4),
                        ("left_hip", np.deg2rad(8)), ("right_hip", -np.deg2rad(8))):
        pose[joint_index(name) - 1, 2] = angle
    return pose


# Framing needs the body's extent, not every vertex: a quarter of them keeps the
# extent to within about a centimetre and the camera solve 4x cheaper.
FRAMING_STRIDE = 4

_RENDERERS: dict[tuple, tuple[Renderer, np.ndarray]] = {}


def renderer_for(model: BodyModel, width: int, height: int, hair: bool = True) -> Renderer:
    """One renderer per (body model, size, hair) per process: the GL context and buffers are reused."""
    key = (model.name, model.content_hash, width, height, hair)
    if key not in _RENDERERS:
        canonical = model.forward(BodyParams(
            global_orient=np.zeros((1, 3)), body_pose=canonical_a_pose()[None],
            shape=model.neutral_shape()[None], transl=np.zeros((1, 3)),
        )).vertices[0]
        renderer = Renderer(width, height, model.faces, pncc_colors(canonical), model.vertex_parts,
                            vertex_hair=hair_vertices(canonical, model.vertex_parts) if hair else None)
        _RENDERERS[key] = (renderer, canonical)
    return _RENDERERS[key][0]


def sample_id(round_name: str, shard: str, index: int) -> str:
    return f"{round_name}-{shard}-{index:06d}"


def draw_bodies(settings: PosePoolSettings, model: BodyModel, seed: int, round_name: str,
                shard: str, indices: range, records: list[PoseRecord] | None):
    """Pose, shape and provenance of each sample; all draws depend only on its own seeds."""
    poses, orients, shapes, sources, families, rejections = [], [], [], [], [], 0
    for i in indices:
        rng = rng_for(seed, round_name, shard, i, "pose")
        if settings.mined is not None:
            pick = settings.mined.pick(seed, round_name, shard, i, settings.samples_per_shard)
            poses.append(pick.body_pose)
            orients.append(pick.global_orient)
            shapes.append(pick.shape)
            sources.append(pick.source)
            families.append(pick.family)
            continue
        if records:
            rec = records[int(rng.integers(len(records)))]
            poses.append(rec.body_pose)
            orients.append(rec.global_orient)
            sources.append(rec.source)
            families.append(settings.pose_source)
        else:
            pose = sample_pose(rng, settings.family_weights)
            poses.append(pose.body_pose)
            orients.append(pose.global_orient)
            sources.append("procedural")
            families.append(pose.family)
            rejections += pose.rejections
        shapes.append(model.sample_shape(rng_for(seed, round_name, shard, i, "shape"), 1)[0])
    params = BodyParams(
        global_orient=np.asarray(orients, np.float64), body_pose=np.asarray(poses, np.float64),
        shape=np.asarray(shapes, np.float64), transl=np.zeros((len(indices), 3)),
    )
    return params, sources, families, rejections


def _encode_controls(render: RenderOutput, skeleton: np.ndarray | None,
                     controls: tuple[str, ...]) -> dict[str, bytes]:
    encoders: dict[str, Callable[[], bytes]] = {
        "pncc": lambda: control_maps.encode_png_rgb(render.pncc),
        "depth": lambda: control_maps.encode_png_gray16(render.depth),
        "normals": lambda: control_maps.encode_png_rgb(render.normals),
        "parts": lambda: control_maps.encode_png_gray8(render.parts),
        "skeleton": lambda: control_maps.encode_png_rgb(skeleton),
        "shaded": lambda: control_maps.encode_png_rgba(render.shaded),
        "mask": lambda: control_maps.encode_png_gray8(render.mask),
    }
    return {name: encoders[name]() for name in controls}


def _write_files(paths_and_bytes: list[tuple[Path, bytes]]) -> None:
    for path, data in paths_and_bytes:
        path.write_bytes(data)  # the whole partition directory is staged, then renamed


def build_pose_pool(settings: PosePoolSettings, model: BodyModel, out_dir: Path, project_seed: int,
                    round_name: str, shard: str, batch_size: int = 16,
                    log: Callable[[str], None] | None = None) -> PoolSummary:
    """Write labels.parquet, controls/{control}/{sample_id}.png and preview.png into `out_dir`."""
    t_start = time.perf_counter()
    timings: Counter[str] = Counter()
    cam_cfg = settings.camera
    width, height = cam_cfg.width, cam_cfg.height
    control_dirs = {c: out_dir / "controls" / c for c in settings.controls}
    for d in control_dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    records = load_pose_records(
        settings.pose_source, settings.pose_source_paths,
        rng_for(project_seed, round_name, "pose-source"), settings.frames_per_sequence,
    )
    if settings.mined is not None:
        settings.mined.check_compatible(model.name, model.content_hash, width, height)
    bank = load_prompt_bank(settings.prompt_bank_path)
    renderer = renderer_for(model, width, height, hair=settings.hair)
    rows, preview_rows, families, framings, rejections = [], [], Counter(), Counter(), 0
    pending = []
    with ThreadPoolExecutor(max_workers=2) as writer:
        for start in range(0, settings.samples_per_shard, batch_size):
            indices = range(start, min(start + batch_size, settings.samples_per_shard))
            t = time.perf_counter()
            params, sources, fams, rej = draw_bodies(settings, model, project_seed, round_name, shard, indices, records)
            rejections += rej
            timings["sample_poses"] += time.perf_counter() - t
            t = time.perf_counter()
            meshes = model.forward(params)
            timings["body_model"] += time.perf_counter() - t
            for b, i in enumerate(indices):
                sid = sample_id(round_name, shard, i)
                t = time.perf_counter()
                mined = (settings.mined.pick(project_seed, round_name, shard, i, settings.samples_per_shard)
                         if settings.mined is not None else None)
                cam = mined.camera if mined is not None else sample_camera(
                    rng_for(project_seed, round_name, shard, i, "camera"), cam_cfg,
                    meshes.vertices[b][::FRAMING_STRIDE], joints=meshes.joints[b])
                verts_cam = to_camera(meshes.vertices[b], cam.R, cam.t)
                render = renderer.render(verts_cam, cam.K, shading=sample_shading(
                    rng_for(project_seed, round_name, shard, i, "shading")) if "shaded" in settings.controls else None)
                timings["render"] += time.perf_counter() - t
                t = time.perf_counter()
                kp2d, _ = project_points(meshes.coco17[b], cam.K, cam.R, cam.t)
                kp_cam = to_camera(meshes.coco17[b], cam.R, cam.t)
                visible = control_maps.keypoint_visibility(kp_cam, cam.K, render.depth, width, height)
                skeleton = (control_maps.draw_skeleton(kp2d, visible, width, height)
                            if "skeleton" in settings.controls else None)
                attrs = model.person_attributes(params.shape[b])
                prompt = sample_prompt(rng_for(project_seed, round_name, shard, i, "prompt"), bank,
                                       age_years=attrs["age_years"], gender=attrs["gender"],
                                       view=body_view(kp_cam) if settings.prompt_view else None)
                timings["labels"] += time.perf_counter() - t
                pending.append(writer.submit(_encode_and_write, render, skeleton, settings, control_dirs, sid))
                rows.append({
                    "sample_id": sid, "round": round_name, "shard": shard, "index": i,
                    "seed": derive_seed(project_seed, round_name, shard, i, "pose"),
                    "body_model": model.name, "body_model_hash": model.content_hash,
                    "pose_source": sources[b], "pose_family": fams[b],
                    "shape": flat(params.shape[b]), "global_orient": flat(params.global_orient[b]),
                    "body_pose": flat(params.body_pose[b]), "transl": flat(params.transl[b]),
                    "width": width, "height": height, "K": flat(cam.K), "R": flat(cam.R), "t": flat(cam.t),
                    "focal_px": float(cam.focal_px), "distance_m": float(cam.distance_m), "framing": cam.framing,
                    "joints3d_cam": flat(to_camera(meshes.joints[b], cam.R, cam.t)),
                    "keypoints3d_cam": flat(kp_cam), "keypoints2d": flat(kp2d),
                    "keypoints_visible": [bool(v) for v in visible],
                    "bbox_xyxy": list(bbox_from_mask(render.mask)), "mask_area": int(render.mask.sum()),
                    "prompt": prompt.text, "negative_prompt": prompt.negative,
                    "prompt_scene_group": prompt.scene_group,
                    **{f"control_{c}": f"controls/{c}/{sid}.png" for c in settings.controls},
                    **(settings.mined.label_columns(mined) if mined is not None else {}),
                })
                families[fams[b]] += 1
                framings[cam.framing] += 1
                if len(preview_rows) < 8:
                    preview_rows.append(_preview_row(render, skeleton, kp2d, visible))
            if log:
                log(f"pose_pool {round_name}|{shard}: {len(rows)}/{settings.samples_per_shard} samples")
        t = time.perf_counter()
        for f in pending:
            f.result()  # re-raises encode/write errors (disk full, ...)
        timings["write_wait"] += time.perf_counter() - t
    label_path = out_dir / "labels.parquet"
    write_labels(rows, label_path)
    preview = contact_sheet([[pic for _, pic in row] for row in preview_rows],
                            header=[title for title, _ in preview_rows[0]] if preview_rows else None,
                            caption="keypoints (green): the label's visible COCO-17 points")
    preview.save(out_dir / "preview.png")
    return PoolSummary(
        num_samples=len(rows), seconds=time.perf_counter() - t_start, stage_seconds=dict(timings),
        families=dict(families), framings=dict(framings), pose_rejections=rejections,
        preview=preview, label_path=label_path, control_dirs=control_dirs,
    )


def _encode_and_write(render: RenderOutput, skeleton, settings: PosePoolSettings,
                      control_dirs: dict[str, Path], sid: str) -> None:
    encoded = _encode_controls(render, skeleton, settings.controls)
    _write_files([(control_dirs[c] / f"{sid}.png", data) for c, data in encoded.items()])


def _preview_row(render: RenderOutput, skeleton, kp2d: np.ndarray,
                 visible: np.ndarray) -> list[tuple[str, Image.Image]]:
    """(column title, picture) pairs: the PNCC map with the label keypoints, then the controls."""
    row = [("pncc + keypoints", draw_keypoints(to_rgb_image(render.pncc), kp2d, visible))]
    for name, array in (("depth", render.depth), ("normals", render.normals), ("parts", render.parts * 17),
                        ("skeleton", skeleton), ("shaded", render.shaded)):
        if array is not None:
            row.append((name, to_rgb_image(array)))
    return row

"""Inputs for curation tests: pose_pool + raw_generations partitions in the CONTRACTS layout.

Two sources of "generated" images:

* `write_synthetic_partition`: no body model or renderer needed. A 3D COCO-17 skeleton
  is posed and projected with a pinhole camera (exact labels, like pose_pool's), and the
  image is a drawn person (limbs as thick capsules, a head) on a textured background,
  with the drawn silhouette as the label mask. Labels and image agree by construction.
* `write_render_generations`: for a real pose_pool partition (anny + the renderer), the
  shaded control composited on a textured background: what the render backend makes.

Either can mark samples as corrupt (garbage bytes or a truncated PNG). Provenance rows
carry the sha256 of the bytes written, as raw_generations records it.
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path

import cv2
import numpy as np
import polars as pl
from PIL import Image

from pd_assets.skeleton import COCO17_LIMBS

# A standing person in the body frame (SMPL: y up, faces +z, x = the body's left), metres.
BODY_COCO17 = np.array([
    [0.00, 0.62, 0.10], [0.03, 0.66, 0.08], [-0.03, 0.66, 0.08], [0.075, 0.64, 0.0], [-0.075, 0.64, 0.0],
    [0.19, 0.45, 0.0], [-0.19, 0.45, 0.0], [0.26, 0.18, 0.0], [-0.26, 0.18, 0.0],
    [0.30, -0.07, 0.03], [-0.30, -0.07, 0.03], [0.10, -0.02, 0.0], [-0.10, -0.02, 0.0],
    [0.11, -0.45, 0.02], [-0.11, -0.45, 0.02], [0.11, -0.87, -0.02], [-0.11, -0.87, -0.02],
])
_LIMB_RADIUS_M = 0.055


def _yaw(deg: float) -> np.ndarray:
    return cv2.Rodrigues(np.array([0.0, math.radians(deg), 0.0]))[0]


def synthetic_label(sample_id: str, size: int = 256, yaw_deg: float = 0.0, focal: float | None = None,
                    distance: float = 3.0) -> tuple[dict, np.ndarray]:
    """A labels.parquet row (contract columns) and the drawn silhouette mask (H, W) bool."""
    focal = focal or 0.55 * size * distance / 1.7
    K = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1.0]])
    R = np.diag([1.0, -1.0, -1.0]) @ _yaw(yaw_deg)  # body faces the camera when yaw = 0
    t = np.array([0.0, 0.0, distance])
    X = BODY_COCO17 @ R.T + t
    uv = X @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    mask = draw_silhouette(uv, size, radius_px=_LIMB_RADIUS_M * focal / distance)
    ys, xs = np.nonzero(mask)
    rnd, shard, index = sample_id.split("-")
    row = {
        "sample_id": sample_id, "round": rnd, "shard": shard, "index": int(index), "seed": 1234 + int(index),
        "body_model": "synthetic", "body_model_hash": "0" * 16, "pose_source": "procedural",
        "pose_family": "standing", "shape": [0.5] * 6, "global_orient": [0.0, math.radians(yaw_deg), 0.0],
        "body_pose": [0.0] * 63, "transl": [0.0] * 3, "width": size, "height": size,
        "K": K.ravel().tolist(), "R": R.ravel().tolist(), "t": t.tolist(), "focal_px": focal,
        "distance_m": distance, "framing": "full", "joints3d_cam": [0.0] * 66,
        "keypoints3d_cam": X.ravel().tolist(), "keypoints2d": uv.ravel().tolist(),
        "keypoints_visible": [True] * 17,
        "bbox_xyxy": [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())],
        "mask_area": int(mask.sum()), "prompt": "a photo of a person standing in a park",
        "negative_prompt": "blurry", "prompt_scene_group": "nature",
        "control_mask": f"controls/mask/{sample_id}.png", "control_pncc": f"controls/pncc/{sample_id}.png",
    }
    return row, mask


def draw_silhouette(uv: np.ndarray, size: int, radius_px: float) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    r = max(2, int(round(radius_px)))
    for a, b in COCO17_LIMBS:
        if a >= 5 and b >= 5:
            cv2.line(mask, _pt(uv[a]), _pt(uv[b]), 255, 2 * r, cv2.LINE_AA)
    torso = np.array([uv[5], uv[6], uv[12], uv[11]])
    cv2.fillConvexPoly(mask, np.round(torso).astype(np.int32), 255)
    head_c = uv[[0, 3, 4]].mean(0)
    cv2.circle(mask, _pt(head_c), int(round(np.linalg.norm(uv[3] - uv[4]) * 0.75)), 255, -1)
    cv2.line(mask, _pt(head_c), _pt(0.5 * (uv[5] + uv[6])), 255, int(1.4 * r))
    return mask > 127


def _pt(p) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


def textured_background(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.uniform(60, 200, size=(6, 6, 3)).astype(np.float32)
    bg = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    bg += rng.normal(0, 6, size=bg.shape).astype(np.float32)
    return np.clip(bg, 0, 255).astype(np.uint8)


def person_image(mask: np.ndarray, seed: int, skin=(225, 180, 150)) -> np.ndarray:
    """The silhouette, shaded a little, over a textured background."""
    size = mask.shape[0]
    img = textured_background(size, seed).astype(np.float32)
    shade = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 2.0)[..., None]
    person = np.array(skin, np.float32) * (0.75 + 0.25 * shade)
    img = np.where(mask[..., None], person, img)
    return np.clip(img, 0, 255).astype(np.uint8)


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def corrupt_png(data: bytes, how: str) -> bytes:
    """`garbage`: not an image at all; `truncated`: a PNG cut in half."""
    return b"this is not a png" * 10 if how == "garbage" else data[: len(data) // 2]


def write_synthetic_partition(root: Path, round_name: str, shard: str, n: int = 6, size: int = 256,
                              yaws: list[float] | None = None, corrupt: dict[int, str] | None = None) -> list[str]:
    """pose_pool + raw_generations for `n` synthetic samples; returns the sample ids."""
    pool = root / "pose_pool" / round_name / shard
    gen = root / "raw_generations" / round_name / shard
    for d in (pool / "controls" / "mask", pool / "controls" / "pncc", gen / "images"):
        d.mkdir(parents=True, exist_ok=True)
    rows, prov = [], []
    corrupt = corrupt or {}
    for i in range(n):
        sid = f"{round_name}-{shard}-{i:06d}"
        row, mask = synthetic_label(sid, size, yaw_deg=(yaws or [0.0] * n)[i])
        (pool / row["control_mask"]).write_bytes(png(mask.astype(np.uint8) * 255))
        pncc = np.zeros((size, size, 3), np.uint8)
        pncc[mask] = (128, 64, 200)
        (pool / row["control_pncc"]).write_bytes(png(pncc))
        data = png(person_image(mask, seed=i))
        if i in corrupt:
            data = corrupt_png(data, corrupt[i])
        (gen / "images" / f"{sid}.png").write_bytes(data)
        rows.append(row)
        prov.append(_provenance(sid, row, data))
    pl.DataFrame(rows).write_parquet(pool / "labels.parquet")
    pl.DataFrame(prov).write_parquet(gen / "provenance.parquet")
    return [r["sample_id"] for r in rows]


def _provenance(sid: str, row: dict, data: bytes) -> dict:
    return {"sample_id": sid, "image_path": f"images/{sid}.png", "image_sha256": hashlib.sha256(data).hexdigest(),
            "backend": "test", "model_id": "synthetic-drawing", "seed": row["seed"],
            "prompt": row["prompt"], "width": row["width"], "height": row["height"], "seconds": 0.0}


def write_render_generations(root: Path, round_name: str, shard: str,
                             corrupt: dict[int, str] | None = None) -> list[str]:
    """raw_generations for an existing pose_pool partition: shaded render over a background."""
    pool = root / "pose_pool" / round_name / shard
    gen = root / "raw_generations" / round_name / shard
    (gen / "images").mkdir(parents=True, exist_ok=True)
    labels = pl.read_parquet(pool / "labels.parquet").to_dicts()
    corrupt = corrupt or {}
    prov = []
    for i, row in enumerate(labels):
        rgba = np.asarray(Image.open(pool / row["control_shaded"]).convert("RGBA")).astype(np.float32)
        alpha = rgba[..., 3:4] / 255.0
        bg = textured_background(rgba.shape[0], seed=i).astype(np.float32)
        img = np.clip(rgba[..., :3] * alpha + bg * (1 - alpha), 0, 255).astype(np.uint8)
        data = png(img)
        if i in corrupt:
            data = corrupt_png(data, corrupt[i])
        (gen / "images" / f"{row['sample_id']}.png").write_bytes(data)
        prov.append(_provenance(row["sample_id"], row, data))
    pl.DataFrame(prov).write_parquet(gen / "provenance.parquet")
    return [r["sample_id"] for r in labels]

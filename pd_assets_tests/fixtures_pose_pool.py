"""A stand-in pose_pool partition in the CONTRACTS.md layout, for generation tests.

A simple synthetic figure (head, torso, limbs drawn as shapes) placed per sample from a
seeded rng, with every control map the real pose_pool writes (pncc, depth, normals,
parts, skeleton, shaded, mask) and a labels.parquet with the contract's columns, so the
generation stage can be tested without the body models and renderer.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageDraw

from pd_assets.generation.prompts import load_prompt_bank, sample_prompt
from pd_assets.seeding import derive_seed, rng_for
from pd_assets.storage import COMPLETE_MARKER, atomic_directory, atomic_write_json

CONTROLS = ("pncc", "depth", "normals", "parts", "skeleton", "shaded", "mask")
PROJECT_SEED = 20260328


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _figure(rng: np.random.Generator, size: int):
    """Mask, part ids and 17 keypoints of a stick-and-blob figure."""
    s = size
    cx = s * rng.uniform(0.4, 0.6)
    top = s * rng.uniform(0.08, 0.15)
    h = s * rng.uniform(0.7, 0.8)
    kp = np.zeros((17, 2), np.float32)
    head = np.array([cx, top + 0.08 * h])
    kp[0] = head
    kp[1:5] = head + np.array([[-0.02, -0.01], [0.02, -0.01], [-0.04, 0], [0.04, 0]]) * h
    sh_y, hip_y = top + 0.2 * h, top + 0.55 * h
    kp[5], kp[6] = [cx + 0.1 * h, sh_y], [cx - 0.1 * h, sh_y]
    for j, (side, base) in enumerate([(1, kp[5]), (-1, kp[6])]):
        a = rng.uniform(-1.2, 1.2)
        elbow = base + 0.16 * h * np.array([side * np.cos(a), np.sin(a) + 0.6])
        kp[7 + j] = elbow
        kp[9 + j] = elbow + 0.15 * h * np.array([side * np.cos(a + 0.5), np.sin(a + 0.5) + 0.4])
    kp[11], kp[12] = [cx + 0.06 * h, hip_y], [cx - 0.06 * h, hip_y]
    for j, side in enumerate((1, -1)):
        spread = rng.uniform(0, 0.12)
        kp[13 + j] = kp[11 + j] + h * np.array([side * spread, 0.22])
        kp[15 + j] = kp[13 + j] + h * np.array([side * spread * 0.5, 0.22])
    parts = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(parts)
    w = max(2, int(0.06 * h))
    limbs = [(5, 7, 3), (6, 8, 4), (7, 9, 5), (8, 10, 6), (11, 13, 9), (12, 14, 10), (13, 15, 11), (14, 16, 12)]
    for a, b, part in limbs:
        d.line([tuple(kp[a]), tuple(kp[b])], fill=part, width=w)
    d.polygon([tuple(kp[5]), tuple(kp[6]), tuple(kp[12]), tuple(kp[11])], fill=2)
    r = 0.07 * h
    d.ellipse([head[0] - r, head[1] - r, head[0] + r, head[1] + r], fill=1)
    part_ids = np.asarray(parts)
    return part_ids > 0, part_ids, kp


def _controls(rng: np.random.Generator, size: int):
    mask, part_ids, kp = _figure(rng, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    m = mask[..., None]
    pncc = (np.stack([xx, yy, 0.3 + 0.4 * xx * yy], -1) * 255 * m).astype(np.uint8)
    depth = np.where(mask, 3000 + (200 * xx).astype(np.int64), 0).astype(np.uint16)
    normals = (np.stack([0.5 + 0.3 * (xx - 0.5), 0.5 + 0.3 * (yy - 0.5), np.full_like(xx, 0.9)], -1) * 255 * m)
    shade = (60 + 160 * (1 - yy) * (0.6 + 0.4 * xx))
    shaded = np.zeros((size, size, 4), np.uint8)
    shaded[..., :3] = (np.stack([shade * 1.0, shade * 0.85, shade * 0.75], -1) * m).clip(0, 255).astype(np.uint8)
    shaded[..., 3] = mask.astype(np.uint8) * 255
    sk = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(sk)
    for i, (a, b) in enumerate([(5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12)]):
        d.line([tuple(kp[a]), tuple(kp[b])], fill=(40 + 20 * i, 255 - 20 * i, 128), width=max(1, size // 64))
    maps = {
        "pncc": pncc, "depth": depth, "normals": normals.astype(np.uint8), "parts": part_ids.astype(np.uint8),
        "skeleton": np.asarray(sk), "shaded": shaded, "mask": mask.astype(np.uint8) * 255,
    }
    return maps, kp, mask


def write_fake_pose_pool_partition(root: str | Path, round_name: str = "r0", shard: str = "s0000",
                                   n: int = 4, size: int = 64, project_seed: int = PROJECT_SEED) -> Path:
    """Write pose_pool/{round}/{shard}/ under `root` (labels.parquet + control PNGs); return the dir."""
    final = Path(root) / "pose_pool" / round_name / shard
    bank = load_prompt_bank()
    rows = []
    with atomic_directory(final) as staging:
        for index in range(n):
            sid = f"{round_name}-{shard}-{index:06d}"
            rng = rng_for(project_seed, round_name, shard, index, "pose")
            maps, kp, mask = _controls(rng, size)
            row = {}
            for name in CONTROLS:
                rel = f"controls/{name}/{sid}.png"
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                (staging / rel).write_bytes(_png(maps[name]))
                row[f"control_{name}"] = rel
            gender = float(rng.uniform(0, 1))
            age = float(rng.uniform(5, 80))
            prompt = sample_prompt(rng_for(project_seed, round_name, shard, index, "prompt"), bank,
                                   age_years=age, gender=gender)
            ys, xs = np.nonzero(mask)
            f = 1.2 * size
            rows.append({
                "sample_id": sid, "round": round_name, "shard": shard, "index": index,
                "seed": derive_seed(project_seed, round_name, shard, index, "pose"),
                "body_model": "fake", "body_model_hash": "fake", "pose_source": "synthetic",
                "pose_family": "fake", "shape": [gender, age / 100, 0.5, 0.5, 0.5, 0.5],
                "global_orient": [0.0] * 3, "body_pose": [0.0] * 63, "transl": [0.0, 0.0, 3.0],
                "width": size, "height": size,
                "K": [f, 0, (size - 1) / 2, 0, f, (size - 1) / 2, 0, 0, 1],
                "R": [1.0, 0, 0, 0, 1, 0, 0, 0, 1], "t": [0.0, 0.0, 3.0], "focal_px": f,
                "distance_m": 3.0, "framing": "full",
                "joints3d_cam": [0.0] * 66, "keypoints3d_cam": [0.0] * 51,
                "keypoints2d": kp.reshape(-1).astype(float).tolist(), "keypoints_visible": [True] * 17,
                "bbox_xyxy": [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())],
                "mask_area": int(mask.sum()), "prompt": prompt.text, "negative_prompt": prompt.negative,
                "prompt_scene_group": prompt.scene_group, **row,
            })
        pl.DataFrame(rows).write_parquet(staging / "labels.parquet")
        atomic_write_json(staging / COMPLETE_MARKER, {"num_samples": n, "fake": True})
    return final

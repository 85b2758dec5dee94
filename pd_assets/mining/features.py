"""Difficulty features of a labelled sample, the same for every body model.

One row per sample, computed from label columns (labels.parquet, or a candidate drawn the
same way): the 21 body-joint rotations as 6D (the first two columns of each rotation
matrix, column after column: Zhou et al. 2019), the pelvis orientation relative to the
camera (R_cam @ R_global_orient, 6D), the shape padded or cut to `SHAPE_FEATURES` values
(anny's 6 phenotypes, SMPL-X betas; missing ones are NaN, which LightGBM routes on its
own), the camera's elevation, azimuth and roll (recovered from R, see `camera_angles`),
distance, focal length and field of view, the framing, how much of the image the person
covers, the visible-keypoint count, the self-occlusion ratio, and the pose family (or the
pose source, `amass` / `fits`) one-hot.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from pd_assets.poses.cameras import FRAMINGS, look_at
from pd_assets.poses.pose_sampler import POSE_FAMILIES, rotvec_to_matrix
from pd_assets.skeleton import COCO17_KEYPOINTS, NUM_BODY_POSE_JOINTS, SMPL_JOINTS

SHAPE_FEATURES = 10
FAMILY_VALUES: tuple[str, ...] = (*POSE_FAMILIES, "amass", "fits")
# label columns the features read (candidates carry the same ones)
FEATURE_COLUMNS = ("shape", "global_orient", "body_pose", "R", "width", "height", "focal_px",
                   "distance_m", "framing", "keypoints2d", "keypoints3d_cam", "keypoints_visible",
                   "mask_area", "bbox_xyxy", "pose_family")
_NUM_KP = len(COCO17_KEYPOINTS)


def _names_and_groups() -> tuple[list[str], list[str]]:
    names, groups = [], []
    for joint in SMPL_JOINTS[1:]:
        names += [f"pose6d_{joint}_{k}" for k in range(6)]
        groups += [f"pose: {joint}"] * 6
    names += [f"orient_cam6d_{k}" for k in range(6)]
    groups += ["orientation vs camera"] * 6
    names += [f"shape_{k}" for k in range(SHAPE_FEATURES)]
    groups += ["shape"] * SHAPE_FEATURES
    scalar = {
        "cam_elevation_deg": "camera elevation", "cam_azimuth_deg": "camera azimuth",
        "cam_roll_deg": "camera roll", "distance_m": "distance", "focal_px": "focal / fov",
        "fov_deg": "focal / fov", "bbox_fraction": "framing", "mask_fraction": "framing",
        "visible_keypoints": "visible keypoints", "in_image_keypoints": "framing",
        "self_occlusion_ratio": "self-occlusion",
    }
    names += list(scalar)
    groups += list(scalar.values())
    names += [f"framing_{f}" for f in FRAMINGS]
    groups += ["framing"] * len(FRAMINGS)
    names += [f"family_{f}" for f in FAMILY_VALUES]
    groups += ["pose family / source"] * len(FAMILY_VALUES)
    return names, groups


FEATURE_NAMES, FEATURE_GROUPS = _names_and_groups()


def rotation_6d(matrices: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 6): column 0 then column 1."""
    m = np.asarray(matrices, dtype=np.float64)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def camera_angles(R: np.ndarray) -> tuple[float, float, float]:
    """(azimuth, elevation, roll) in degrees of a camera placed by `cameras.sample_camera`.

    The optical axis (R's third row) points from the camera to the body, so the viewing
    direction from the body is d = -R[2] = (sin az cos el, sin el, cos az cos el); the roll
    is the rotation about the optical axis that turns the unrolled look-at camera into R.
    """
    R = np.asarray(R, dtype=np.float64).reshape(3, 3)
    d = -R[2]
    el = math.asin(float(np.clip(d[1], -1.0, 1.0)))
    az = math.atan2(float(d[0]), float(d[2]))
    if abs(math.cos(el)) < 1e-9:
        return math.degrees(az), math.degrees(el), 0.0
    R0, _ = look_at(d, np.zeros(3))
    roll_m = R @ R0.T
    roll = math.atan2(float(roll_m[1, 0]), float(roll_m[0, 0]))
    return math.degrees(az), math.degrees(el), math.degrees(roll)


def _array(frame: pl.DataFrame, column: str, width: int) -> np.ndarray:
    return np.asarray(frame[column].to_list(), dtype=np.float64).reshape(len(frame), width)


def _shape_block(frame: pl.DataFrame) -> np.ndarray:
    out = np.full((len(frame), SHAPE_FEATURES), np.nan)
    for i, values in enumerate(frame["shape"].to_list()):
        v = np.asarray(values if values is not None else [], dtype=np.float64)[:SHAPE_FEATURES]
        out[i, :len(v)] = v
    return out


def keypoint_counts(keypoints2d: np.ndarray, keypoints3d_cam: np.ndarray, visible: np.ndarray,
                    width: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: visible count, in-image count, self-occlusion ratio.

    In the image: in front of the camera and inside [-0.5, W - 0.5) x [-0.5, H - 0.5) (the
    label's visibility rule). Self-occluded: in the image but not visible (hidden by the
    body). Ratio = self-occluded / in-image (0 when nothing is in the image).
    """
    kp = np.asarray(keypoints2d, np.float64).reshape(-1, _NUM_KP, 2)
    z = np.asarray(keypoints3d_cam, np.float64).reshape(-1, _NUM_KP, 3)[..., 2]
    vis = np.asarray(visible, bool).reshape(-1, _NUM_KP)
    w = np.asarray(width, np.float64)[:, None]
    h = np.asarray(height, np.float64)[:, None]
    with np.errstate(invalid="ignore"):
        inside = ((z > 0) & (kp[..., 0] >= -0.5) & (kp[..., 0] < w - 0.5)
                  & (kp[..., 1] >= -0.5) & (kp[..., 1] < h - 0.5))
    n_in = inside.sum(1)
    occluded = (inside & ~vis).sum(1)
    ratio = np.where(n_in > 0, occluded / np.maximum(n_in, 1), 0.0)
    return vis.sum(1).astype(np.float64), n_in.astype(np.float64), ratio


def feature_matrix(frame: pl.DataFrame) -> np.ndarray:
    """(rows, len(FEATURE_NAMES)) float64 features of a label-like table."""
    missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"difficulty features need label columns {missing}: pass pose_pool "
                         "labels.parquet rows (or candidates drawn by mining.candidates)")
    n = len(frame)
    body = rotvec_to_matrix(_array(frame, "body_pose", NUM_BODY_POSE_JOINTS * 3).reshape(n, -1, 3))
    R = _array(frame, "R", 9).reshape(n, 3, 3)
    orient_cam = R @ rotvec_to_matrix(_array(frame, "global_orient", 3))
    angles = np.array([camera_angles(r) for r in R]).reshape(n, 3)
    width = frame["width"].to_numpy().astype(np.float64)
    height = frame["height"].to_numpy().astype(np.float64)
    focal = frame["focal_px"].to_numpy().astype(np.float64)
    box = _array(frame, "bbox_xyxy", 4)
    area = width * height
    n_vis, n_in, occl = keypoint_counts(
        _array(frame, "keypoints2d", _NUM_KP * 2), _array(frame, "keypoints3d_cam", _NUM_KP * 3),
        np.asarray(frame["keypoints_visible"].to_list(), bool), width, height)
    framing = frame["framing"].to_list()
    family = frame["pose_family"].to_list()
    blocks = [
        rotation_6d(body).reshape(n, -1),
        rotation_6d(orient_cam),
        _shape_block(frame),
        angles[:, [1, 0, 2]],  # elevation, azimuth, roll (FEATURE_NAMES order)
        frame["distance_m"].to_numpy().astype(np.float64)[:, None],
        focal[:, None],
        np.degrees(2 * np.arctan(0.5 * width / focal))[:, None],
        (((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])) / area)[:, None],
        (frame["mask_area"].to_numpy().astype(np.float64) / area)[:, None],
        n_vis[:, None], n_in[:, None], occl[:, None],
        np.array([[f == name for name in FRAMINGS] for f in framing], np.float64).reshape(n, -1),
        np.array([[f == name for name in FAMILY_VALUES] for f in family], np.float64).reshape(n, -1),
    ]
    out = np.concatenate(blocks, axis=1)
    assert out.shape[1] == len(FEATURE_NAMES), (out.shape, len(FEATURE_NAMES))
    return out

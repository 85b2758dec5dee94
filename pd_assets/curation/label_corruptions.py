"""Wrong labels for judging the judge: corrupted copies of a correct label row.

The filter's validity benchmark (`benchmarks/bench_filter_validity.py`) scores each
render-backend image against its own label (a positive: every rejection is a false
reject) and against these corruptions of it (negatives: every acceptance is a false
accept). Each returns a new label row (the `labels.parquet` contract) and the label mask
that goes with it:

* `mirror_label`:  the left/right mirror of the body: COCO-17 keypoints (2D, 3D and
  visibility) swapped left <-> right (`skeleton.COCO17_FLIP`);
* `shifted_label`: the whole label moved by a fraction of its box (2D keypoints, box and
  mask; 3D keypoints moved by the same image shift at their depth);
* `reposed_label`: the body re-posed (a head turn, a limb swung) and re-projected with
  the label's own camera: body model forward, projection, visibility against a fresh
  depth render, a fresh mask. `turn_head` / `swing_limb` make the new `body_pose`.
Another sample's label needs no function: it is that sample's row and mask.

Pure numpy apart from `reposed_label`, which takes the body model and renderer.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pd_assets.skeleton import COCO17_FLIP, joint_index

# Joints whose rotation swings a whole limb, and the limb's rest direction in that
# joint's local frame (SMPL T-pose: arms along +-x, legs down -y).
LIMB_ROOTS = {"left_arm": ("left_shoulder", (1.0, 0.0, 0.0)), "right_arm": ("right_shoulder", (-1.0, 0.0, 0.0)),
              "left_leg": ("left_hip", (0.0, -1.0, 0.0)), "right_leg": ("right_hip", (0.0, -1.0, 0.0))}


def _arr(row: dict, key: str, shape) -> np.ndarray:
    return np.asarray(row[key], dtype=np.float64).reshape(shape)


def mirror_label(row: dict, mask: np.ndarray) -> tuple[dict, np.ndarray]:
    """Keypoints swapped left <-> right (the mirror of the body, same silhouette)."""
    flip = list(COCO17_FLIP)
    out = dict(row)
    out["keypoints2d"] = _arr(row, "keypoints2d", (17, 2))[flip].ravel().tolist()
    out["keypoints3d_cam"] = _arr(row, "keypoints3d_cam", (17, 3))[flip].ravel().tolist()
    out["keypoints_visible"] = [bool(v) for v in np.asarray(row["keypoints_visible"], bool)[flip]]
    return out, mask.copy()


def shifted_label(row: dict, mask: np.ndarray, fraction: float, angle_rad: float) -> tuple[dict, np.ndarray]:
    """The label moved by `fraction` of its box (x by fraction * width * cos, y by
    fraction * height * sin): keypoints, box and mask in the image, 3D keypoints by the
    same pixel shift at each point's depth."""
    x0, y0, x1, y1 = _arr(row, "bbox_xyxy", (4,))
    dx, dy = fraction * (x1 - x0) * math.cos(angle_rad), fraction * (y1 - y0) * math.sin(angle_rad)
    K = _arr(row, "K", (3, 3))
    out = dict(row)
    out["keypoints2d"] = (_arr(row, "keypoints2d", (17, 2)) + [dx, dy]).ravel().tolist()
    X = _arr(row, "keypoints3d_cam", (17, 3)).copy()
    X[:, 0] += dx * X[:, 2] / K[0, 0]
    X[:, 1] += dy * X[:, 2] / K[1, 1]
    out["keypoints3d_cam"] = X.ravel().tolist()
    out["bbox_xyxy"] = [x0 + dx, y0 + dy, x1 + dx, y1 + dy]
    M = np.float32([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(mask.astype(np.uint8), M, (mask.shape[1], mask.shape[0]), flags=cv2.INTER_NEAREST) > 0
    out["mask_area"] = int(moved.sum())
    if out["mask_area"] == 0:  # moved out of the image entirely: keep the scale of the original
        out["mask_area"] = int(row["mask_area"])
    return out, moved


def rotate_local(body_pose: np.ndarray, joint: str, axis, angle_rad: float) -> np.ndarray:
    """body_pose (21, 3) with `joint`'s rotation followed (in its local, child-side frame)
    by `angle_rad` about `axis`: the joint's subtree turns by exactly that angle."""
    pose = np.asarray(body_pose, dtype=np.float64).reshape(21, 3).copy()
    j = joint_index(joint) - 1
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    R_old, _ = cv2.Rodrigues(pose[j])
    R_delta, _ = cv2.Rodrigues(axis * angle_rad)
    pose[j] = cv2.Rodrigues(R_old @ R_delta)[0].ravel()
    return pose


def turn_head(body_pose: np.ndarray, angle_rad: float) -> np.ndarray:
    """The head turned about its own vertical axis (local y) by `angle_rad`."""
    return rotate_local(body_pose, "head", (0.0, 1.0, 0.0), angle_rad)


def swing_limb(body_pose: np.ndarray, limb: str, angle_rad: float, axis_angle_rad: float) -> np.ndarray:
    """The limb (`LIMB_ROOTS` key) swung by `angle_rad` at its root joint about an axis
    perpendicular to the limb's rest direction (`axis_angle_rad` picks which one), so
    the limb's end moves (a twist about the bone would move nothing)."""
    joint, bone = LIMB_ROOTS[limb]
    bone = np.asarray(bone, dtype=np.float64)
    a = np.cross(bone, (0.0, 0.0, 1.0)) if abs(bone[2]) < 0.9 else np.cross(bone, (1.0, 0.0, 0.0))
    a /= np.linalg.norm(a)
    b = np.cross(bone, a)
    axis = math.cos(axis_angle_rad) * a + math.sin(axis_angle_rad) * b
    return rotate_local(body_pose, joint, axis, angle_rad)


def reposed_labels(rows: list[dict], body_poses: list[np.ndarray], model, renderer) -> list[tuple[dict, np.ndarray]]:
    """Each row with its body re-posed to `body_poses[i]` (21, 3) and re-projected with
    the row's own camera: new 2D/3D keypoints, visibility (depth test), box, mask."""
    from pd_assets.poses.body_models import BodyParams
    from pd_assets.poses.cameras import project_points
    from pd_assets.poses.control_maps import keypoint_visibility
    from pd_assets.poses.labels import bbox_from_mask, to_camera

    if not rows:
        return []
    params = BodyParams(
        global_orient=np.array([_arr(r, "global_orient", (3,)) for r in rows]),
        body_pose=np.array([np.asarray(p, np.float64).reshape(21, 3) for p in body_poses]),
        shape=np.array([np.asarray(r["shape"], np.float64) for r in rows]),
        transl=np.array([_arr(r, "transl", (3,)) for r in rows]),
    )
    meshes = model.forward(params)
    out = []
    for b, row in enumerate(rows):
        K, R, t = _arr(row, "K", (3, 3)), _arr(row, "R", (3, 3)), _arr(row, "t", (3,))
        render = renderer.render(to_camera(meshes.vertices[b], R, t), K)
        kp2d, _ = project_points(meshes.coco17[b], K, R, t)
        kp_cam = to_camera(meshes.coco17[b], R, t)
        visible = keypoint_visibility(kp_cam, K, render.depth, int(row["width"]), int(row["height"]))
        new = dict(row)
        new.update(body_pose=np.asarray(body_poses[b], np.float64).ravel().tolist(),
                   keypoints2d=np.asarray(kp2d, np.float64).ravel().tolist(),
                   keypoints3d_cam=np.asarray(kp_cam, np.float64).ravel().tolist(),
                   keypoints_visible=[bool(v) for v in visible],
                   bbox_xyxy=list(bbox_from_mask(render.mask)), mask_area=int(render.mask.sum()))
        out.append((new, render.mask.copy()))
    return out

"""Pure scores of a generated image against its label (no Dagster, no detector).

Conventions: keypoints are (17, 2) float pixel arrays in COCO-17 order
(`pd_assets.skeleton.COCO17_KEYPOINTS`), OpenCV pixel centres. `visible` is the label's
per-keypoint visibility; only labelled-visible keypoints are scored, as in COCO.

Undefined cases return NaN rather than a made-up number, and callers decide: OKS, PCK
and mean joint error with no visible label keypoint, IoU of two empty masks, head
orientation when fewer than three face keypoints are usable.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pd_assets.skeleton import COCO17_SIGMAS

# COCO-17 indices of the face keypoints: nose, left eye, right eye, left ear, right ear.
FACE = (0, 1, 2, 3, 4)
_EPS = np.spacing(1)  # what pycocotools adds to the area


def _as_points(name: str, a, n: int = 17) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.shape != (n, 2):
        raise ValueError(f"{name} must have shape ({n}, 2), got {a.shape}")
    return a


def oks(pred, gt, visible, area: float, sigmas=COCO17_SIGMAS) -> float:
    """Object keypoint similarity exactly as pycocotools' `computeOks` defines it.

    OKS = mean over labelled-visible keypoints i of exp(-d_i^2 / (2 s^2 k_i^2)), with
    d_i the pixel distance, s^2 = `area` (the label's segmentation area in px^2) and
    k_i = 2 sigma_i. Predicted confidences play no part (as in COCO). Returns NaN when
    no keypoint is labelled visible (COCO would instead score the distance to the box,
    which only serves its crowd/ignore handling).
    """
    pred, gt = _as_points("pred", pred), _as_points("gt", gt)
    visible = np.asarray(visible, dtype=bool)
    if not visible.any():
        return float("nan")
    k2 = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((pred - gt) ** 2).sum(axis=1)
    e = d2 / k2 / (float(area) + _EPS) / 2.0
    return float(np.exp(-e[visible]).mean())


def keypoints_inside(kps, width: int, height: int) -> np.ndarray:
    """(..., 17) bool: which keypoints of (..., 17, 2) pixel arrays lie inside the image.

    The image spans [-0.5, W - 0.5] x [-0.5, H - 0.5] (OpenCV pixel centres); a
    non-finite keypoint is outside."""
    k = np.asarray(kps, dtype=np.float64)
    if k.shape[-1] != 2:
        raise ValueError(f"keypoints must have shape (..., 2), got {k.shape}")
    x, y = k[..., 0], k[..., 1]
    with np.errstate(invalid="ignore"):
        return (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)


def is_genuine_person(kps, width: int, height: int, min_inside: int | None = None) -> np.ndarray | bool:
    """Whether a detected "person" (17, 2), or each of (P, 17, 2), is a real detection:
    at least `min_inside` (default `thresholds.MIN_KEYPOINTS_INSIDE`) of its keypoints lie
    inside the image. mediapipe returns "people" on blurry images whose keypoints are
    all far outside the image (hips at y = 1700 on a 512 px image, OKS 0): such a
    detection is neither a person nor crowding. Used by curation and adapter evaluation."""
    from pd_assets.thresholds import MIN_KEYPOINTS_INSIDE

    n = MIN_KEYPOINTS_INSIDE if min_inside is None else int(min_inside)
    inside = keypoints_inside(kps, width, height).sum(axis=-1) >= n
    return bool(inside) if np.ndim(inside) == 0 else inside


def keypoint_similarity(pred, gt, area: float, sigmas=COCO17_SIGMAS) -> np.ndarray:
    """COCO's per-keypoint similarity (17,): exp(-d^2 / (2 s^2 k^2)), the terms OKS averages
    (s^2 = `area`, k = 2 sigma). 1 at the label, 0.5 at d = 1.18 s k."""
    pred, gt = _as_points("pred", pred), _as_points("gt", gt)
    k2 = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((pred - gt) ** 2).sum(axis=1)
    return np.exp(-d2 / k2 / (float(area) + _EPS) / 2.0)


def oks_per_person(preds, gt, visible, area: float, sigmas=COCO17_SIGMAS) -> np.ndarray:
    """OKS of each detected person (P, 17, 2) against one label; (P,) array."""
    preds = np.asarray(preds, dtype=np.float64).reshape(-1, 17, 2)
    return np.array([oks(p, gt, visible, area, sigmas) for p in preds], dtype=np.float64)


def joint_errors(pred, gt, visible) -> np.ndarray:
    """Per-keypoint pixel distance (17,), NaN where the label keypoint is not visible."""
    pred, gt = _as_points("pred", pred), _as_points("gt", gt)
    err = np.sqrt(((pred - gt) ** 2).sum(axis=1))
    err[~np.asarray(visible, dtype=bool)] = np.nan
    return err


def pck(pred, gt, visible, threshold_px: float, confidence=None, min_confidence: float = 0.0) -> float:
    """Fraction of labelled-visible keypoints predicted within `threshold_px` pixels.

    A keypoint whose detector `confidence` is below `min_confidence` counts as missed.
    NaN when no keypoint is labelled visible.
    """
    visible = np.asarray(visible, dtype=bool)
    if not visible.any():
        return float("nan")
    hit = joint_errors(pred, gt, visible) <= threshold_px
    if confidence is not None:
        hit &= np.asarray(confidence, dtype=np.float64) >= min_confidence
    return float(hit[visible].mean())


def mask_iou(a, b) -> float:
    """Intersection over union of two boolean masks of the same shape; NaN if both empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    if union == 0:
        return float("nan")
    return float(np.logical_and(a, b).sum() / union)


def sharpness(image) -> float:
    """Variance of the Laplacian (3x3 aperture) of the grey image, in [0, 255] units."""
    return float(cv2.Laplacian(grey(image), cv2.CV_64F, ksize=1).var())


def exposure_clipping(image, low: int = 2, high: int = 253) -> tuple[float, float]:
    """(fraction of pixels with grey <= low, fraction with grey >= high)."""
    g = grey(image)
    n = g.size
    return float(np.count_nonzero(g <= low) / n), float(np.count_nonzero(g >= high) / n)


def grey(image) -> np.ndarray:
    """Luma (ITU-R 601, what OpenCV uses) of an RGB(A) uint8 image; a 2D image as is."""
    img = np.asarray(image)
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] in (3, 4):
        return cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an (H, W) or (H, W, 3|4) image, got shape {img.shape}")


# ---- head orientation ---------------------------------------------------------------

def rotation_to_euler_deg(R: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a camera-frame rotation, R = Ry(yaw) Rx(pitch) Rz(roll).

    OpenCV camera axes: yaw turns about y (down), pitch about x (right), roll about z
    (forward, the optical axis).
    """
    R = np.asarray(R, dtype=np.float64)
    pitch = math.asin(float(np.clip(-R[1, 2], -1.0, 1.0)))
    yaw = math.atan2(R[0, 2], R[2, 2])
    roll = math.atan2(R[1, 0], R[1, 1])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def head_orientation_error(
    det_face_2d, label_face_3d_cam, K, usable, iterations: int = 30,
) -> dict[str, float]:
    """How far the detected head is turned from the label's head, in degrees.

    The label gives the five face keypoints in 3D (camera frame). We find the rotation R
    about their centroid (plus a small image-plane shift) that best reprojects them onto
    the detected 2D face keypoints, starting from the label's own orientation (so a
    head seen from the front never flips to the back). R is the disagreement: its
    angle, and its yaw / pitch / roll, are what the method's head-pose filter
    thresholds. `usable` (5,) marks keypoints labelled visible and confidently detected;
    with fewer than 3 the result is NaN.
    """
    nan = {"head_yaw_err_deg": math.nan, "head_pitch_err_deg": math.nan,
           "head_roll_err_deg": math.nan, "head_angle_err_deg": math.nan}
    usable = np.asarray(usable, dtype=bool)
    if usable.sum() < 3:
        return nan
    X = np.asarray(label_face_3d_cam, dtype=np.float64)[usable]
    uv = np.asarray(det_face_2d, dtype=np.float64)[usable]
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    if np.any(X[:, 2] <= 1e-6):
        return nan
    c = X.mean(axis=0)
    params = np.zeros(5)  # axis-angle (3), shift in x and y at the head's depth (2)

    def residual(p):
        R, _ = cv2.Rodrigues(p[:3])
        Y = (X - c) @ R.T + c + np.array([p[3], p[4], 0.0])
        proj = Y @ K.T
        return (proj[:, :2] / proj[:, 2:3] - uv).ravel()

    # Gauss-Newton with a numeric Jacobian and a trust cap: 5 unknowns, <= 10 residuals.
    for _ in range(iterations):
        r = residual(params)
        J = np.empty((r.size, 5))
        for j in range(5):
            dp = np.zeros(5)
            dp[j] = 1e-6
            J[:, j] = (residual(params + dp) - r) / 1e-6
        step, *_ = np.linalg.lstsq(J.T @ J + 1e-9 * np.eye(5), -J.T @ r, rcond=None)
        angle = np.linalg.norm(step[:3])
        if angle > 0.5:
            step *= 0.5 / angle
        params += step
        if np.abs(step).max() < 1e-9:
            break
    R, _ = cv2.Rodrigues(params[:3])
    yaw, pitch, roll = rotation_to_euler_deg(R)
    angle = math.degrees(float(np.linalg.norm(params[:3])))
    return {"head_yaw_err_deg": yaw, "head_pitch_err_deg": pitch,
            "head_roll_err_deg": roll, "head_angle_err_deg": angle}

"""Detector calibration: undo a detector's systematic keypoint convention offsets.

Keypoint conventions differ: BlazePose hips sit wider and lower than a body model's
COCO hip regressor (about 9 px on a 410 px person), ears and eyes differ too. On
renders the label is exact, so the detector-minus-label residual of joint j is its
convention offset plus noise. We model the offset in the detected body's own frame,
linear in two vectors measured on the detection itself:

    offset_j = a_j * H + b_j * T,   H = left_hip - right_hip,  T = mid_shoulder - mid_hip

so it scales with the person, turns with the body, flips sign when the person faces
away (H flips) and shrinks when they stand side-on (H shortens). (a_j, b_j) are fitted
by least squares on renders; `apply` subtracts the offset. We also record each joint's
remaining noise as a COCO-style sigma, sigma_j^2 = E[d_j^2 / s^2] (s^2 = mask area), to
compare with COCO's annotator sigmas. OKS itself always uses COCO's sigmas.

Face keypoints need more: the head-pose score fits a head rotation to the five detected
face keypoints using the label's 3D face keypoints as the model, so a convention offset
(BlazePose's ears sit in front of a body model's ear keypoints) reads as a head turn.
We fit a 3D offset per face keypoint in the label's own head frame (x: right ear -> left
ear, z: towards the nose, y = z x x), so the 3D face model moves to where this detector
puts those points.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pd_assets.curation.inputs import jsonable
from pd_assets.curation.scores import head_orientation_error, oks
from pd_assets.skeleton import COCO17_KEYPOINTS
from pd_assets.storage import atomic_write_json

PACKAGED_DIR = Path(__file__).with_name("calibrations")
_LH, _RH, _LS, _RS = 11, 12, 5, 6
FORMAT_VERSION = 1


def body_basis(keypoints: np.ndarray) -> np.ndarray:
    """(..., 2, 2): columns H (left hip - right hip) and T (mid shoulder - mid hip)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    H = kp[..., _LH, :] - kp[..., _RH, :]
    T = 0.5 * (kp[..., _LS, :] + kp[..., _RS, :]) - 0.5 * (kp[..., _LH, :] + kp[..., _RH, :])
    return np.stack([H, T], axis=-1)


@dataclass
class Calibration:
    backend: str
    coef: list[list[float]]                 # (17, 2): a_j, b_j
    sigma: list[float]                      # (17,) residual noise after calibration / s
    n_fit: int = 0
    n_eval: int = 0
    oks_before: dict = field(default_factory=dict)   # held-out {"mean", "median"} before
    oks_after: dict = field(default_factory=dict)    # ... and after calibration
    face_offsets: list[list[float]] = field(default_factory=lambda: [[0.0] * 3] * 5)  # (5, 3) metres
    head_err_before: dict = field(default_factory=dict)  # held-out head angle error (deg)
    head_err_after: dict = field(default_factory=dict)
    heldout: dict = field(default_factory=dict)          # evaluation on held-out partitions
    source: str = ""
    body_model: str = ""                    # whose keypoint convention the labels followed
    model_sha256: str = ""                  # the detector model it was fitted for
    version: int = FORMAT_VERSION

    @classmethod
    def identity(cls, backend: str = "") -> Calibration:
        return cls(backend, [[0.0, 0.0]] * 17, [float("nan")] * 17, source="identity")

    def apply(self, keypoints: np.ndarray) -> np.ndarray:
        """Corrected copy of (..., 17, 2) detected keypoints."""
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.size == 0:
            return kp.copy()
        coef = np.asarray(self.coef, dtype=np.float64)  # (17, 2)
        offset = np.einsum("...dc,jc->...jd", body_basis(kp), coef)
        return kp - offset

    def face_model(self, face3d_cam: np.ndarray) -> np.ndarray:
        """The label's 3D face keypoints (5, 3), camera frame, moved to this detector's convention."""
        face3d_cam = np.asarray(face3d_cam, dtype=np.float64)
        return face3d_cam + np.asarray(self.face_offsets, np.float64) @ head_basis(face3d_cam).T

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, jsonable(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            cal = cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(
                f"keypoint calibration at {path} is unreadable ({exc}): re-create it with "
                "`python -m pd_assets.curation.calibrate` or set keypoint_detector.calibration=none"
            ) from exc
        if np.asarray(cal.coef).shape != (17, 2):
            raise ValueError(f"keypoint calibration at {path} has coef shape "
                             f"{np.asarray(cal.coef).shape}, expected (17, 2): re-create it")
        return cal

    def table(self) -> list[dict]:
        return [{"keypoint": n, "a_hip": c[0], "b_torso": c[1], "sigma": s}
                for n, c, s in zip(COCO17_KEYPOINTS, self.coef, self.sigma)]


def packaged_calibration_path(backend: str, model_sha256: str) -> Path:
    """Where a calibration shipped with the package for this exact model file would be."""
    return PACKAGED_DIR / f"{backend}-{model_sha256[:16]}.json"


def head_basis(face3d: np.ndarray) -> np.ndarray:
    """(3, 3) columns x (right -> left ear), y, z (towards the nose) of a head's face keypoints."""
    f = np.asarray(face3d, dtype=np.float64)
    mid = 0.5 * (f[3] + f[4])
    x = f[3] - f[4]
    x /= np.linalg.norm(x) + 1e-12
    z = f[0] - mid
    z -= x * (z @ x)
    z /= np.linalg.norm(z) + 1e-12
    return np.stack([x, np.cross(z, x), z], axis=1)


def fit_face_offsets(det_face, face3d, K, usable, iterations: int = 5) -> list[list[float]]:
    """Per face keypoint, the head-frame 3D offset that best reprojects the label's face
    keypoints onto the detected ones (Gauss-Newton, then refit without the worst 10%)."""
    det_face, face3d = np.asarray(det_face, np.float64), np.asarray(face3d, np.float64)
    K, usable = np.asarray(K, np.float64).reshape(-1, 3, 3), np.asarray(usable, bool)
    bases = np.stack([head_basis(f) for f in face3d]) if len(face3d) else np.zeros((0, 3, 3))
    offsets = np.zeros((5, 3))
    for j in range(5):
        keep = usable[:, j].copy()
        for rnd in range(2):
            delta = np.zeros(3)
            for _ in range(iterations):
                r, J = _reprojection(face3d[keep, j], bases[keep], K[keep], det_face[keep, j], delta)
                if r.size < 6:
                    break
                delta += np.linalg.lstsq(J, -r, rcond=None)[0]
            offsets[j] = delta
            if rnd == 0 and keep.sum() >= 10:
                r, _ = _reprojection(face3d[:, j], bases, K, det_face[:, j], delta)
                err = np.linalg.norm(r.reshape(-1, 2), axis=1)
                keep &= err <= np.quantile(err[keep], 0.9)
    return offsets.tolist()


def _reprojection(X, B, K, uv, delta):
    """Residuals (2N,) and Jacobian (2N, 3) of projecting X + B @ delta against uv."""
    P = X + B @ delta
    proj = np.einsum("nij,nj->ni", K, P)
    r = (proj[:, :2] / proj[:, 2:3] - uv).reshape(-1)
    z = P[:, 2]
    fx, fy = K[:, 0, 0], K[:, 1, 1]
    dproj = np.zeros((len(P), 2, 3))
    dproj[:, 0, 0], dproj[:, 0, 2] = fx / z, -fx * P[:, 0] / z ** 2
    dproj[:, 1, 1], dproj[:, 1, 2] = fy / z, -fy * P[:, 1] / z ** 2
    return r, np.einsum("nij,njk->nik", dproj, B).reshape(-1, 3)


def fit_calibration(pred, gt, visible, area, backend: str = "", min_raw_oks: float = 0.5,
                    holdout_every: int = 5, source: str = "", face3d=None, K=None,
                    confidence=None, min_confidence: float = 0.3) -> Calibration:
    """Fit per-joint offsets from detections `pred` (N, 17, 2) on renders with exact
    labels `gt` (N, 17, 2), `visible` (N, 17), `area` (N,); with `face3d` (N, 5, 3) label
    face keypoints in the camera frame, `K` (N, 3, 3) and detector `confidence` (N, 17),
    also the face offsets for the head-pose score.

    Samples with raw OKS < `min_raw_oks` (detector failures, not convention offsets)
    are left out. Every `holdout_every`-th sample is held out to report OKS (and head
    angle error) before and after; the final values are refitted on all samples.
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    visible, area = np.asarray(visible, bool), np.asarray(area, np.float64)
    n = len(pred)
    if n == 0:
        raise ValueError("no detections to calibrate on: render some pose_pool samples first")
    raw = np.array([oks(pred[i], gt[i], visible[i], area[i]) for i in range(n)])
    good = np.isfinite(raw) & (raw >= min_raw_oks)
    hold = (np.arange(n) % holdout_every) == holdout_every - 1 if holdout_every > 1 else np.zeros(n, bool)
    fit_idx, eval_idx = np.flatnonzero(good & ~hold), np.flatnonzero(good & hold)
    if len(fit_idx) < 3:
        raise ValueError(f"only {len(fit_idx)} usable detections (raw OKS >= {min_raw_oks}) "
                         "to calibrate on: render more samples")
    with_face = face3d is not None and K is not None
    if with_face:
        face3d, K = np.asarray(face3d, np.float64), np.asarray(K, np.float64)
        conf = np.ones((n, 17)) if confidence is None else np.asarray(confidence, np.float64)
        usable = visible[:, :5] & (conf[:, :5] >= min_confidence)

    def fit(idx) -> Calibration:
        cal = Calibration(backend, _solve(pred[idx], gt[idx], visible[idx]), [0.0] * 17, source=source)
        if with_face:
            cal.face_offsets = fit_face_offsets(pred[idx, :5], face3d[idx], K[idx], usable[idx])
        return cal

    held = fit(fit_idx)
    before = [oks(pred[i], gt[i], visible[i], area[i]) for i in eval_idx]
    after = [oks(held.apply(pred[i]), gt[i], visible[i], area[i]) for i in eval_idx]
    all_idx = np.flatnonzero(good)
    cal = fit(all_idx)
    corrected = cal.apply(pred[all_idx])
    d2 = ((corrected - gt[all_idx]) ** 2).sum(-1) / area[all_idx, None]
    d2[~visible[all_idx]] = np.nan
    with np.errstate(invalid="ignore"):
        cal.sigma = [float(v) for v in np.sqrt(np.nanmean(d2, axis=0))]
    cal.n_fit, cal.n_eval = int(len(all_idx)), int(len(eval_idx))
    cal.oks_before, cal.oks_after = _summary(before), _summary(after)
    if with_face:
        identity = Calibration.identity(backend)
        cal.head_err_before = _head_summary(identity, pred, face3d, K, usable, eval_idx)
        cal.head_err_after = _head_summary(held, pred, face3d, K, usable, eval_idx)
    return cal


def _head_summary(cal: Calibration, pred, face3d, K, usable, idx) -> dict:
    """Held-out worst-axis head angle error (deg): median and share above the threshold."""
    from pd_assets.thresholds import HEAD_POSE_MAX_DEG

    worst = []
    for i in idx:
        err = head_orientation_error(pred[i, :5], cal.face_model(face3d[i]), K[i], usable[i])
        axes = [err[f"head_{a}_err_deg"] for a in ("yaw", "pitch", "roll")]
        if all(np.isfinite(axes)):
            worst.append(max(abs(a) for a in axes))
    if not worst:
        return {"median": None, "over_threshold": None, "n": 0}
    w = np.asarray(worst)
    return {"median": float(np.median(w)), "over_threshold": float((w > HEAD_POSE_MAX_DEG).mean()),
            "n": int(w.size)}


def _summary(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "median": None, "n": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "n": int(v.size)}


def _solve(pred, gt, visible) -> list[list[float]]:
    basis = body_basis(pred)                 # (N, 2, 2)
    resid = pred - gt                        # (N, 17, 2)
    coef = np.zeros((17, 2))
    for j in range(17):
        m = visible[:, j]
        if m.sum() < 2:
            continue
        A = basis[m].reshape(-1, 2)          # rows: x then y of each sample
        y = resid[m, j].reshape(-1)
        coef[j], *_ = np.linalg.lstsq(A, y, rcond=None)
    return coef.tolist()

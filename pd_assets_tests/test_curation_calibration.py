"""Detector calibration recovers known convention offsets and improves OKS."""

from __future__ import annotations

import numpy as np
import pytest

from pd_assets.curation.calibration import (
    Calibration, body_basis, fit_calibration, fit_face_offsets, head_basis,
)
from pd_assets.curation.inputs import LabelView
from pd_assets_tests.curation_fixtures import synthetic_label


def _labels(n=60, seed=0):
    rng = np.random.default_rng(seed)
    views = [LabelView.from_row(synthetic_label(f"r0-s0000-{i:06d}", 256, yaw_deg=float(rng.uniform(-60, 60)))[0])
             for i in range(n)]
    return views, rng


def _true_coef():
    coef = np.zeros((17, 2))
    coef[11] = (0.15, -0.05)   # left hip: further left and lower, like BlazePose
    coef[12] = (-0.15, -0.05)  # right hip: mirrored
    coef[3] = (0.05, 0.0)
    return coef


def test_identity_calibration_changes_nothing():
    kp = np.random.default_rng(0).uniform(0, 100, (3, 17, 2))
    assert np.array_equal(Calibration.identity("x").apply(kp), kp)
    assert Calibration.identity("x").apply(np.zeros((0, 17, 2))).shape == (0, 17, 2)


def test_fit_recovers_known_offsets_and_raises_oks():
    views, rng = _labels()
    gt = np.stack([v.keypoints2d for v in views])
    pred = gt.copy()
    for _ in range(30):  # the model is offset = basis(detection) @ coef: solve the fixed point
        pred = gt + np.einsum("ndc,jc->njd", body_basis(pred), _true_coef())
    pred += rng.normal(0, 0.3, gt.shape)
    cal = fit_calibration(pred, gt, np.stack([v.visible for v in views]),
                          np.array([v.area for v in views]), backend="test")
    assert np.allclose(cal.coef, _true_coef(), atol=0.02)
    assert cal.oks_after["mean"] > cal.oks_before["mean"]
    assert cal.oks_after["median"] > 0.97 and cal.n_eval == 12 and cal.n_fit == 60
    assert all(s >= 0 for s in cal.sigma)


def test_face_offsets_recover_a_known_convention_shift():
    views, _ = _labels(40, seed=1)
    delta = np.zeros((5, 3))
    delta[3] = (-0.01, 0.005, 0.03)  # left ear: inward, lower, forward
    delta[4] = (0.01, 0.005, 0.03)
    face3d = np.stack([v.keypoints3d_cam[:5] for v in views])
    K = np.stack([v.K for v in views])
    moved = np.stack([f + delta @ head_basis(f).T for f in face3d])
    uv = np.einsum("nij,nkj->nki", K, moved)
    det_face = uv[..., :2] / uv[..., 2:]
    fitted = fit_face_offsets(det_face, face3d, K, np.ones((40, 5), bool))
    assert np.allclose(fitted, delta, atol=2e-3)
    cal = Calibration.identity("test")
    cal.face_offsets = fitted
    assert np.allclose(cal.face_model(face3d[0]), moved[0], atol=2e-3)


def test_head_basis_is_a_rotation():
    views, _ = _labels(3)
    B = head_basis(views[0].keypoints3d_cam[:5])
    assert np.allclose(B.T @ B, np.eye(3), atol=1e-9) and np.linalg.det(B) == pytest.approx(1.0)


def test_save_and_load_round_trip(tmp_path):
    cal = Calibration.identity("mediapipe")
    cal.coef = _true_coef().tolist()
    path = cal.save(tmp_path / "cal.json")
    back = Calibration.load(path)
    assert back.coef == cal.coef and back.backend == "mediapipe"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json.*calibrate"):
        Calibration.load(tmp_path / "bad.json")


def test_too_few_good_detections_is_an_error():
    views, _ = _labels(4)
    gt = np.stack([v.keypoints2d for v in views])
    with pytest.raises(ValueError, match="usable detections"):
        fit_calibration(gt + 500, gt, np.ones((4, 17), bool), np.array([v.area for v in views]))

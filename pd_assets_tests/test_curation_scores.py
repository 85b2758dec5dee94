"""Pure scores against hand-computed values (OKS as pycocotools defines it, PCK, IoU, ...)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from pd_assets.curation import scores
from pd_assets.skeleton import COCO17_SIGMAS


def _gt():
    rng = np.random.default_rng(0)
    return rng.uniform(50, 450, size=(17, 2))


def test_oks_perfect_prediction_is_one():
    gt = _gt()
    assert scores.oks(gt, gt, np.ones(17, bool), area=10_000.0) == pytest.approx(1.0)


def test_oks_one_keypoint_off_by_hand():
    # left hip (index 11, sigma 0.107) off by d = 10 px, area s^2 = 40_000 (s = 200):
    # k = 2 sigma = 0.214; e = d^2 / (2 s^2 k^2) = 100 / (2 * 40000 * 0.045796) = 0.0272941...
    # OKS = (16 * 1 + exp(-0.0272941)) / 17
    gt = _gt()
    pred = gt.copy()
    pred[11, 0] += 6.0
    pred[11, 1] += 8.0  # d = 10
    expected = (16 + math.exp(-100 / (2 * 40_000 * 0.214 ** 2))) / 17
    assert expected == pytest.approx((16 + 0.973075) / 17, abs=1e-6)
    assert scores.oks(pred, gt, np.ones(17, bool), 40_000.0) == pytest.approx(expected, rel=1e-12)


def test_oks_matches_pycocotools_formula_on_random_case():
    # pycocotools computeOks: e = (dx^2 + dy^2) / vars / (area + eps) / 2, vars = (2 sigma)^2
    rng = np.random.default_rng(1)
    gt, pred = _gt(), _gt() + rng.normal(0, 6, size=(17, 2))
    vis = rng.random(17) > 0.3
    area = 12_345.0
    vars_ = (COCO17_SIGMAS * 2) ** 2
    e = ((pred - gt) ** 2).sum(1) / vars_ / (area + np.spacing(1)) / 2
    assert scores.oks(pred, gt, vis, area) == pytest.approx(np.exp(-e)[vis].mean(), rel=1e-12)


def test_oks_ignores_invisible_keypoints_and_is_nan_without_any():
    gt = _gt()
    pred = gt.copy()
    pred[0] += 500  # nose far away but not labelled visible
    vis = np.ones(17, bool)
    vis[0] = False
    assert scores.oks(pred, gt, vis, 10_000.0) == pytest.approx(1.0)
    assert math.isnan(scores.oks(pred, gt, np.zeros(17, bool), 10_000.0))


def test_oks_per_person_picks_up_every_person():
    gt = _gt()
    preds = np.stack([gt, gt + 1000])
    out = scores.oks_per_person(preds, gt, np.ones(17, bool), 10_000.0)
    assert out[0] == pytest.approx(1.0) and out[1] < 1e-6


def test_oks_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(17, 2\)"):
        scores.oks(np.zeros((16, 2)), np.zeros((17, 2)), np.ones(17, bool), 1.0)


def test_joint_errors_and_pck_by_hand():
    gt = np.zeros((17, 2))
    pred = np.zeros((17, 2))
    pred[:, 0] = np.arange(17)  # keypoint j is j px off
    vis = np.ones(17, bool)
    vis[16] = False
    err = scores.joint_errors(pred, gt, vis)
    assert err[:16] == pytest.approx(np.arange(16))
    assert math.isnan(err[16])
    assert scores.pck(pred, gt, vis, threshold_px=4.0) == pytest.approx(5 / 16)  # 0..4 within 4 px
    conf = np.ones(17)
    conf[0] = 0.1  # a perfect but unconfident keypoint counts as missed
    assert scores.pck(pred, gt, vis, 4.0, confidence=conf, min_confidence=0.3) == pytest.approx(4 / 16)
    assert math.isnan(scores.pck(pred, gt, np.zeros(17, bool), 4.0))


def test_mask_iou_by_hand():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :6] = True   # 60 px
    b[:, 4:] = True   # 60 px, overlap 20, union 100
    assert scores.mask_iou(a, b) == pytest.approx(0.2)
    assert scores.mask_iou(a, a) == 1.0
    assert math.isnan(scores.mask_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)))
    with pytest.raises(ValueError, match="shapes differ"):
        scores.mask_iou(a, np.zeros((5, 5), bool))


def test_sharpness_by_hand():
    assert scores.sharpness(np.full((32, 32, 3), 128, np.uint8)) == 0.0
    # 1-px checkerboard of 0 / 1: the Laplacian is 4 - 8 v everywhere (reflected border keeps
    # the pattern), i.e. +-4 with mean 0, so its variance is 16.
    yy, xx = np.mgrid[:32, :32]
    checker = ((yy + xx) % 2).astype(np.uint8)
    assert scores.sharpness(checker) == pytest.approx(16.0)
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    assert scores.sharpness(cv2.GaussianBlur(img, (9, 9), 3)) < scores.sharpness(img)


def test_exposure_clipping_by_hand():
    img = np.full((10, 10, 3), 128, np.uint8)
    img[:3] = 0      # 30% crushed
    img[3:4] = 255   # 10% blown
    dark, bright = scores.exposure_clipping(img)
    assert (dark, bright) == pytest.approx((0.3, 0.1))


def _rot(yaw=0.0, pitch=0.0, roll=0.0):
    r = lambda v: cv2.Rodrigues(np.asarray(v, float))[0]  # noqa: E731
    return r([0, math.radians(yaw), 0]) @ r([math.radians(pitch), 0, 0]) @ r([0, 0, math.radians(roll)])


def test_euler_decomposition_round_trips():
    assert scores.rotation_to_euler_deg(_rot(20, -10, 5)) == pytest.approx((20, -10, 5))


@pytest.mark.parametrize("yaw,pitch,roll", [(0, 0, 0), (30, 0, 0), (0, 20, 0), (0, 0, 15), (20, -10, 5)])
def test_head_orientation_error_recovers_a_known_turn(yaw, pitch, roll):
    # face keypoints (nose, eyes, ears) of a head 3 m in front of the camera, facing it
    face = np.array([[0, 0, -0.10], [0.03, -0.03, -0.07], [-0.03, -0.03, -0.07],
                     [0.075, -0.01, 0.0], [-0.075, -0.01, 0.0]]) + [0.1, -0.5, 3.0]
    K = np.array([[890.0, 0, 256], [0, 890, 256], [0, 0, 1]])
    c = face.mean(0)
    turned = (face - c) @ _rot(yaw, pitch, roll).T + c + [0.01, 0.02, 0.0]  # turned and shifted
    uv = turned @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    out = scores.head_orientation_error(uv, face, K, np.ones(5, bool))
    assert out["head_yaw_err_deg"] == pytest.approx(yaw, abs=0.05)
    assert out["head_pitch_err_deg"] == pytest.approx(pitch, abs=0.05)
    assert out["head_roll_err_deg"] == pytest.approx(roll, abs=0.05)


def test_head_orientation_needs_three_usable_points():
    out = scores.head_orientation_error(np.zeros((5, 2)), np.ones((5, 3)), np.eye(3),
                                        np.array([True, True, False, False, False]))
    assert all(math.isnan(v) for v in out.values())


# ---- issue 12: genuine people, per-keypoint similarity -------------------------------

def test_keypoints_inside_uses_pixel_borders_and_treats_nan_as_outside():
    kps = np.zeros((17, 2))
    kps[0] = (-0.5, -0.5)          # the image's top-left corner: inside
    kps[1] = (99.5, 49.5)          # bottom-right corner of a 100 x 50 image: inside
    kps[2] = (-0.6, 10.0)          # just left of the image
    kps[3] = (10.0, 49.6)          # just below
    kps[4] = (np.nan, 10.0)
    inside = scores.keypoints_inside(kps, 100, 50)
    assert inside.tolist() == [True, True, False, False, False] + [True] * 12
    assert scores.keypoints_inside(np.stack([kps, kps + 1000]), 100, 50).sum(axis=1).tolist() == [14, 0]


def test_a_person_needs_twelve_keypoints_inside_by_default():
    kps = np.full((17, 2), 10.0)
    kps[:5] = 5000.0                # 12 inside
    assert scores.is_genuine_person(kps, 64, 64) is True
    kps[5] = -300.0                 # 11 inside
    assert scores.is_genuine_person(kps, 64, 64) is False
    assert scores.is_genuine_person(kps, 64, 64, min_inside=11) is True
    # the measured hallucination: every keypoint far below a 512 px image
    hallucinated = np.column_stack([np.full(17, 250.0), np.linspace(900, 1700, 17)])
    people = np.stack([kps, hallucinated])
    assert scores.is_genuine_person(people, 512, 512, min_inside=11).tolist() == [True, False]


def test_keypoint_similarity_by_hand():
    gt = np.zeros((17, 2))
    area = 100.0 ** 2
    pred = gt.copy()
    k = 2 * COCO17_SIGMAS[9]             # left wrist
    d = math.sqrt(2 * math.log(2)) * 100.0 * k   # the distance at which similarity is exactly 1/2
    pred[9] = (d, 0.0)
    sim = scores.keypoint_similarity(pred, gt, area)
    assert sim[9] == pytest.approx(0.5, rel=1e-9)
    assert np.all(np.delete(sim, 9) == 1.0)
    # OKS is the mean of these over the visible keypoints
    vis = np.ones(17, bool)
    assert scores.oks(pred, gt, vis, area) == pytest.approx(sim.mean())

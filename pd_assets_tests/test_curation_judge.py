"""Issue 12: the judge's new scoring paths on hand-made cases, and the label corruptions
its validity benchmark uses (benchmarks/bench_filter_validity.py)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from pd_assets.curation import label_corruptions as lc
from pd_assets.curation.detectors import Detection
from pd_assets.curation.filters import FilterThresholds, required_inside, score_sample
from pd_assets.curation.inputs import LabelView
from pd_assets.skeleton import COCO17_FLIP, COCO17_SIGMAS
from pd_assets_tests.curation_fixtures import person_image, synthetic_label


@pytest.fixture(scope="module")
def sample():
    row, mask = synthetic_label("r0-s0000-000000", size=256)
    return row, LabelView.from_row(row), mask, person_image(mask, seed=0)


def _det(people, mask, conf=None):
    people = np.asarray(people, float).reshape(-1, 17, 2)
    n = len(people)
    conf = np.ones((n, 17)) if conf is None else np.asarray(conf, float).reshape(n, 17)
    return Detection(people, conf, np.full(n, 0.99), np.repeat(mask[None], n, axis=0), mask.shape)


def test_a_hallucinated_person_outside_the_image_is_neither_matched_nor_counted(sample):
    _, view, mask, img = sample
    ghost = view.keypoints2d + [0.0, 1500.0]      # every keypoint far below the image
    rec = score_sample(view, img, _det([ghost, view.keypoints2d], mask), mask)
    assert rec["kept"] and rec["person_count"] == 1 and rec["hallucinated_people"] == 1
    assert rec["matched_person"] == 0 and rec["oks"] == pytest.approx(1.0)
    only_ghost = score_sample(view, img, _det([ghost], mask), mask)
    assert only_ghost["failed_checks"][0] == "no_person" and only_ghost["person_count"] == 0
    # four real people and two ghosts are not a crowd (max 4)...
    crowd = [view.keypoints2d] * 4 + [ghost, ghost - [0.0, 3000.0]]
    rec = score_sample(view, img, _det(crowd, mask), mask)
    assert "crowded" not in rec["failed_checks"] and rec["person_count"] == 4
    # ...but five real ones are
    rec = score_sample(view, img, _det([view.keypoints2d] * 5, mask), mask)
    assert rec["failed_checks"][0] == "crowded"


def test_a_close_up_person_with_few_keypoints_inside_still_counts(sample):
    row, _, mask, img = sample
    close = dict(row)
    kp = np.asarray(row["keypoints2d"]).reshape(17, 2).copy()
    kp[9:] += [0.0, 400.0]                          # wrists, hips, knees, ankles below the frame
    close["keypoints2d"] = kp.ravel().tolist()
    close["keypoints_visible"] = [True] * 9 + [False] * 8
    view = LabelView.from_row(close)
    assert required_inside(view, FilterThresholds()) == math.ceil(0.6 * 9)   # 9 label keypoints inside
    rec = score_sample(view, img, _det([kp], mask), mask)
    assert rec["person_count"] == 1 and rec["hallucinated_people"] == 0 and rec["oks"] == pytest.approx(1.0)
    # the adapter-evaluation rule (12 of 17) would have dropped this person
    strict = score_sample(view, img, _det([kp], mask), mask,
                          thresholds=FilterThresholds(min_inside_fraction_of_label=1.0, min_keypoints_inside=12))
    assert strict["person_count"] == 1  # still: capped by the label's own 9 in-image keypoints
    assert score_sample(view, img, _det([kp + [0, 400]], mask), mask)["person_count"] == 0


def test_a_mirrored_label_is_rejected(sample):
    row, view, mask, img = sample
    mirrored, mmask = lc.mirror_label(row, mask)
    mview = LabelView.from_row(mirrored)
    assert np.allclose(mview.keypoints2d, view.keypoints2d[list(COCO17_FLIP)])
    rec = score_sample(mview, img, _det([view.keypoints2d], mask), mmask)  # the detector sees the true body
    assert not rec["kept"] and rec["reject_stage"] == "pose_alignment"
    assert {"oks", "keypoint"} <= set(rec["failed_checks"])


def test_another_bodys_label_is_rejected(sample):
    _, view, mask, img = sample
    other_row, other_mask = synthetic_label("r0-s0000-000001", size=256, yaw_deg=70.0)
    rec = score_sample(LabelView.from_row(other_row), img, _det([view.keypoints2d], mask), other_mask)
    assert not rec["kept"] and rec["reject_stage"] == "pose_alignment"


def test_one_swung_limb_fails_the_worst_keypoint_check_even_when_oks_passes(sample):
    _, view, mask, img = sample
    kp = view.keypoints2d.copy()
    s = math.sqrt(view.area)
    # the left wrist alone, moved to similarity 0.3: OKS stays above 0.85
    k = 2 * COCO17_SIGMAS[9]
    kp[9, 0] += s * k * math.sqrt(-2 * math.log(0.3))
    rec = score_sample(view, img, _det([kp], mask), mask)
    assert rec["oks"] >= 0.85 and rec["min_keypoint_similarity"] == pytest.approx(0.3)
    assert rec["failed_checks"] == ["keypoint"] and rec["reject_stage"] == "pose_alignment"
    assert rec["num_confident_keypoints"] == 17
    # the same keypoint, but the detector is unsure of it: not held against the sample
    conf = np.ones(17)
    conf[9] = 0.1
    unsure = score_sample(view, img, _det([kp], mask, conf), mask)
    assert unsure["kept"] and unsure["num_confident_keypoints"] == 16
    assert unsure["min_keypoint_similarity"] == pytest.approx(1.0)


def test_a_face_the_detector_cannot_see_is_not_measured_and_does_not_reject(sample):
    """Regression: fewer than three usable face keypoints gave NaN head angles, which the
    `non_finite` check (issue 11) rejected: a third of correct renders (back views)."""
    _, view, mask, img = sample
    conf = np.ones(17)
    conf[:5] = 0.0
    rec = score_sample(view, img, _det([view.keypoints2d], mask, conf), mask)
    assert rec["kept"] and rec["head_yaw_err_deg"] is None and rec["head_angle_err_deg"] is None


# ---- label corruptions -----------------------------------------------------------------

def test_shifted_label_moves_keypoints_box_and_mask_by_the_fraction_of_the_box(sample):
    row, view, mask, _ = sample
    shifted, smask = lc.shifted_label(row, mask, 0.2, 0.0)   # along +x
    x0, y0, x1, y1 = view.bbox_xyxy
    dx = 0.2 * (x1 - x0)
    sview = LabelView.from_row(shifted)
    assert np.allclose(sview.keypoints2d - view.keypoints2d, [dx, 0.0])
    assert np.allclose(sview.bbox_xyxy, view.bbox_xyxy + [dx, 0, dx, 0])
    uv = sview.keypoints3d_cam @ view.K.T
    assert np.allclose(uv[:, :2] / uv[:, 2:], sview.keypoints2d, atol=1e-6)  # 3D moved consistently
    assert abs(int(smask.sum()) - int(mask.sum())) <= mask.shape[0] * 2
    cols = np.flatnonzero(smask.any(axis=0))
    assert cols[0] - np.flatnonzero(mask.any(axis=0))[0] == round(dx)


def _angle(a, b) -> float:
    Ra, Rb = cv2.Rodrigues(np.asarray(a, float))[0], cv2.Rodrigues(np.asarray(b, float))[0]
    return math.degrees(np.linalg.norm(cv2.Rodrigues(Ra.T @ Rb)[0]))


def test_turn_head_and_swing_limb_turn_exactly_one_joint_by_the_angle():
    rng = np.random.default_rng(0)
    pose = rng.normal(0, 0.3, (21, 3))
    turned = lc.turn_head(pose, math.radians(70))
    head = 15 - 1  # body_pose row of the head joint
    assert _angle(pose[head], turned[head]) == pytest.approx(70.0, abs=1e-6)
    assert np.array_equal(np.delete(turned, head, axis=0), np.delete(pose, head, axis=0))
    swung = lc.swing_limb(pose, "left_leg", math.radians(65), 1.0)
    hip = 1 - 1
    assert _angle(pose[hip], swung[hip]) == pytest.approx(65.0, abs=1e-6)
    # the swing axis is perpendicular to the leg, so the knee direction moves by 65 deg
    R_old, R_new = (cv2.Rodrigues(p)[0] for p in (pose[hip], swung[hip]))
    bone = np.array([0.0, -1.0, 0.0])
    cos = float((R_old @ bone) @ (R_new @ bone))
    assert math.degrees(math.acos(np.clip(cos, -1, 1))) == pytest.approx(65.0, abs=1e-6)

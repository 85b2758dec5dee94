"""The multi-stage filter on hand-made detections: each stage rejects for its reason."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from pd_assets.curation.detectors import Detection
from pd_assets.curation.filters import STAGES, FilterThresholds, difficulty_bin, score_sample
from pd_assets.curation.inputs import LabelView
from pd_assets.curation.pipeline import INDEX_LABEL_COLUMNS, INDEX_RUN_COLUMNS, INDEX_SCHEMA
from pd_assets_tests.curation_fixtures import person_image, synthetic_label


@pytest.fixture(scope="module")
def sample():
    row, mask = synthetic_label("r0-s0000-000000", size=256)
    return LabelView.from_row(row), mask, person_image(mask, seed=0)


def _det(kps, mask, n_people=1, presence=0.99):
    kps = np.repeat(np.asarray(kps, float)[None], n_people, axis=0)
    masks = np.repeat(mask[None], n_people, axis=0)
    return Detection(kps, np.ones((n_people, 17)), np.full(n_people, presence), masks, mask.shape)


def test_a_perfect_detection_is_kept_with_every_score(sample):
    view, mask, img = sample
    rec = score_sample(view, img, _det(view.keypoints2d, mask), mask)
    assert rec["kept"] and rec["reject_stage"] is None and rec["reject_reason"] is None
    assert rec["failed_checks"] == []
    assert rec["oks"] == pytest.approx(1.0) and rec["mask_iou"] == pytest.approx(1.0)
    assert rec["pck"] == 1.0 and rec["mean_joint_error_px"] == pytest.approx(0.0)
    assert abs(rec["head_angle_err_deg"]) < 1e-3
    assert rec["difficulty_bin"] == "low" and rec["person_count"] == 1
    expected = set(INDEX_SCHEMA) - set(INDEX_LABEL_COLUMNS) - set(INDEX_RUN_COLUMNS)
    assert expected <= set(rec), expected - set(rec)


def test_no_person_is_rejected_at_crowding(sample):
    view, mask, img = sample
    rec = score_sample(view, img, Detection.empty(mask.shape), mask)
    assert not rec["kept"] and rec["reject_stage"] == "crowding"
    assert rec["reject_reason"] == "no person detected"
    assert rec["oks"] is None and rec["sharpness"] > 0  # image scores still recorded


def test_a_crowd_is_rejected_but_still_scored(sample):
    view, mask, img = sample
    rec = score_sample(view, img, _det(view.keypoints2d, mask, n_people=5), mask)
    assert rec["reject_stage"] == "crowding" and rec["reject_reason"] == "5 people detected (max 4)"
    assert rec["failed_checks"] == ["crowded"] and rec["oks"] == pytest.approx(1.0)


def test_misaligned_keypoints_fail_pose_alignment(sample):
    view, mask, img = sample
    rec = score_sample(view, img, _det(view.keypoints2d + [12.0, 0.0], mask), mask)
    assert rec["reject_stage"] == "pose_alignment" and rec["reject_reason"].startswith("OKS 0.")
    assert rec["oks"] < 0.85 and rec["difficulty_bin"] in ("medium", "high", "very_high")


def test_a_wrong_silhouette_fails_pose_alignment(sample):
    view, mask, img = sample
    wrong = np.roll(mask, 40, axis=1)
    rec = score_sample(view, img, _det(view.keypoints2d, wrong), mask)
    assert rec["failed_checks"] == ["mask_iou"] and rec["reject_stage"] == "pose_alignment"
    assert rec["reject_reason"].startswith("silhouette IoU")
    # without a label mask the IoU is not measured and does not reject
    assert score_sample(view, img, _det(view.keypoints2d, wrong), None)["kept"]


def test_a_turned_head_fails_head_pose(sample):
    view, mask, img = sample
    face = view.keypoints3d_cam[:5]
    c = face.mean(0)
    R = cv2.Rodrigues(np.array([0.0, math.radians(40), 0.0]))[0]
    uv = ((face - c) @ R.T + c) @ view.K.T
    kps = view.keypoints2d.copy()
    kps[:5] = uv[:, :2] / uv[:, 2:]
    th = FilterThresholds(oks_min=0.0, keypoint_similarity_min=0.0, head_pose_max_deg=25.0)
    rec = score_sample(view, img, _det(kps, mask), mask, thresholds=th)
    assert rec["reject_stage"] == "head_pose"
    assert rec["reject_reason"] == "head yaw differs by 40.0 deg (max 25)"


def test_image_quality_rejects_flat_and_clipped_images(sample):
    view, mask, _ = sample
    det = _det(view.keypoints2d, mask)
    flat = np.full((256, 256, 3), 128, np.uint8)
    rec = score_sample(view, flat, det, mask)
    assert rec["reject_stage"] == "image_quality" and rec["reject_reason"].startswith("sharpness 0.0")
    white = np.full((256, 256, 3), 255, np.uint8)
    white[::2, ::2] = 250  # sharp enough, but nearly every pixel blown out
    rec = score_sample(view, white, det, mask)
    assert rec["failed_checks"] == ["exposure"] and "clipped bright" in rec["reject_reason"]
    rec = score_sample(view, person_image(mask, 0), _det(view.keypoints2d, mask, presence=0.2), mask)
    assert rec["failed_checks"] == ["presence"]


def test_unreadable_image_is_a_rejected_row_with_its_reason(sample):
    view, mask, _ = sample
    rec = score_sample(view, None, None, mask, image_error="unreadable image: OSError: truncated")
    assert rec["reject_stage"] == "readable" and rec["reject_reason"] == "unreadable image: OSError: truncated"
    assert rec["failed_checks"] == ["unreadable"] and rec["oks"] is None


def test_the_first_failing_stage_wins_and_all_failures_are_listed(sample):
    view, mask, _ = sample
    flat = np.full((256, 256, 3), 128, np.uint8)
    rec = score_sample(view, flat, _det(view.keypoints2d + 15, mask, n_people=6), mask)
    assert rec["reject_stage"] == "crowding"
    assert rec["failed_checks"][:2] == ["crowded", "oks"] and "sharpness" in rec["failed_checks"]


def _turned_head(view, deg: float) -> np.ndarray:
    face = view.keypoints3d_cam[:5]
    c = face.mean(0)
    uv = ((face - c) @ cv2.Rodrigues(np.array([0.0, math.radians(deg), 0.0]))[0].T + c) @ view.K.T
    kps = view.keypoints2d.copy()
    kps[:5] = uv[:, :2] / uv[:, 2:]
    return kps


def test_reject_stage_follows_stage_order_as_failures_are_fixed_one_by_one(sample):
    """A sample failing every stage; fixing the first failure each time walks through STAGES."""
    view, mask, img = sample
    # the turned head must fail head_pose only
    th = FilterThresholds(oks_min=0.0, keypoint_similarity_min=0.0, head_pose_max_deg=25.0)
    flat = np.full((256, 256, 3), 128, np.uint8)
    wrong = np.roll(mask, 40, axis=1)
    steps = [
        dict(image=flat, kps=_turned_head(view, 40), det_mask=wrong, people=6, prov="image has no provenance row"),
        dict(image=flat, kps=_turned_head(view, 40), det_mask=wrong, people=6, prov=None),
        dict(image=flat, kps=_turned_head(view, 40), det_mask=wrong, people=1, prov=None),
        dict(image=flat, kps=_turned_head(view, 40), det_mask=mask, people=1, prov=None),
        dict(image=flat, kps=view.keypoints2d, det_mask=mask, people=1, prov=None),
        dict(image=img, kps=view.keypoints2d, det_mask=mask, people=1, prov=None),
    ]
    seen = []
    for st in steps:
        rec = score_sample(view, st["image"], _det(st["kps"], st["det_mask"], st["people"]), mask,
                           thresholds=th, provenance_error=st["prov"])
        seen.append(rec["reject_stage"])
        assert len(rec["failed_checks"]) == len(STAGES) + 1 - len(seen)  # one failure per stage left
    assert seen == [*STAGES, None]


# (threshold field, its check name (= the score's column), a detection/image with a mid-range score)
BOUNDARIES = [
    ("oks_min", "oks", lambda v, m, i: (_det(v.keypoints2d + [5.0, 0.0], m), i)),
    ("mask_iou_min", "mask_iou", lambda v, m, i: (_det(v.keypoints2d, np.roll(m, 6, axis=1)), i)),
    ("presence_min", "presence", lambda v, m, i: (_det(v.keypoints2d, m, presence=0.7), i)),
    ("sharpness_min", "sharpness", lambda v, m, i: (_det(v.keypoints2d, m), cv2.GaussianBlur(i, (0, 0), 2.0))),
]


@pytest.mark.parametrize("field,check,make", BOUNDARIES, ids=[b[0] for b in BOUNDARIES])
def test_a_score_equal_to_its_minimum_passes_and_just_below_fails(sample, field, check, make):
    view, mask, img = sample
    det, image = make(view, mask, img)
    value = score_sample(view, image, det, mask, thresholds=FilterThresholds(**{field: 0.0}))[check]
    assert value > 0.0 and (value < 1.0 or check == "sharpness")  # a real mid-range score
    at = score_sample(view, image, det, mask, thresholds=FilterThresholds(**{field: value}))
    assert check not in at["failed_checks"]
    just_above = FilterThresholds(**{field: float(np.nextafter(value, np.inf))})
    assert check in score_sample(view, image, det, mask, thresholds=just_above)["failed_checks"]


def test_head_pose_at_the_limit_passes_and_just_over_fails(sample):
    view, mask, img = sample
    det = _det(_turned_head(view, 20), mask)
    loose = FilterThresholds(oks_min=0.0)
    worst = abs(score_sample(view, img, det, mask, thresholds=loose)["head_yaw_err_deg"])
    assert worst == pytest.approx(20.0, abs=0.1)
    at = score_sample(view, img, det, mask, thresholds=FilterThresholds(oks_min=0.0, head_pose_max_deg=worst))
    assert "head_pose" not in at["failed_checks"]
    below = FilterThresholds(oks_min=0.0, head_pose_max_deg=float(np.nextafter(worst, 0)))
    assert score_sample(view, img, det, mask, thresholds=below)["failed_checks"] == ["head_pose"]


def test_a_provenance_mismatch_rejects_a_sample_that_is_otherwise_perfect(sample):
    view, mask, img = sample
    why = "image does not match its provenance (sha256): re-materialise raw_generations"
    rec = score_sample(view, img, _det(view.keypoints2d, mask), mask, provenance_error=why)
    assert not rec["kept"] and rec["reject_stage"] == "readable" and rec["reject_reason"] == why
    assert rec["failed_checks"] == ["provenance"]
    assert rec["oks"] == pytest.approx(1.0) and rec["mask_iou"] == pytest.approx(1.0)  # still scored


def test_an_unreadable_label_mask_rejects_instead_of_skipping_the_silhouette_test(sample):
    view, mask, img = sample
    why = "unreadable label mask: OSError: truncated; re-materialise pose_pool"
    wrong = np.roll(mask, 40, axis=1)  # would fail IoU, if it could be measured
    rec = score_sample(view, img, _det(view.keypoints2d, wrong), None, label_mask_error=why)
    assert not rec["kept"] and rec["reject_stage"] == "readable" and rec["reject_reason"] == why
    assert rec["failed_checks"] == ["label_mask"] and rec["mask_iou"] is None
    assert rec["oks"] == pytest.approx(1.0)


@pytest.mark.parametrize("value,name", [(0.95, "low"), (0.8, "low"), (0.7, "medium"), (0.6, "medium"),
                                        (0.5, "high"), (0.39, "very_high"), (None, None), (math.nan, None)])
def test_difficulty_bins_follow_the_method(value, name):
    assert difficulty_bin(value) == name


def test_a_label_with_nan_keypoints_is_rejected_not_kept(sample):
    """Issue 11 item 3: all-NaN label keypoints gave `oks = NaN`, which no comparison
    rejects: the sample was kept with oks = null. A non-finite score is a reject."""
    view, mask, img = sample
    row, _ = synthetic_label("r0-s0000-000000", size=256)
    row["keypoints2d"] = [float("nan")] * 34
    nan_view = LabelView.from_row(row)
    rec = score_sample(nan_view, img, _det(view.keypoints2d, mask), mask)
    assert not rec["kept"]
    assert rec["reject_stage"] == "pose_alignment" and "non_finite" in rec["failed_checks"]
    assert rec["reject_reason"].startswith("oks is nan (not a finite number)")
    assert rec["oks"] is None  # stored as null, and the reason says why


@pytest.mark.parametrize("score, stage", [("sharpness", "image_quality"), ("presence", "image_quality")])
def test_any_non_finite_gating_score_rejects_at_its_stage(sample, monkeypatch, score, stage):
    from pd_assets.curation import scores

    view, mask, img = sample
    presence = float("nan") if score == "presence" else 0.99
    if score == "sharpness":
        monkeypatch.setattr(scores, "sharpness", lambda grey: float("inf"))
    rec = score_sample(view, img, _det(view.keypoints2d, mask, presence=presence), mask)
    assert not rec["kept"] and rec["reject_stage"] == stage
    assert rec["failed_checks"] == ["non_finite"] and rec["reject_reason"].startswith(f"{score} is ")

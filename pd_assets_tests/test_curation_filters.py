"""The multi-stage filter on hand-made detections: each stage rejects for its reason."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from pd_assets.curation.detectors import Detection
from pd_assets.curation.filters import STAGES, FilterThresholds, difficulty_bin, score_sample
from pd_assets.curation.inputs import LabelView
from pd_assets.curation.pipeline import INDEX_LABEL_COLUMNS, INDEX_SCHEMA
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
    expected = set(INDEX_SCHEMA) - set(INDEX_LABEL_COLUMNS)
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
    rec = score_sample(view, img, _det(kps, mask), mask, thresholds=FilterThresholds(oks_min=0.0))
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


def test_stages_are_in_method_order():
    assert STAGES == ("readable", "crowding", "pose_alignment", "head_pose", "image_quality")


@pytest.mark.parametrize("value,name", [(0.95, "low"), (0.8, "low"), (0.7, "medium"), (0.6, "medium"),
                                        (0.5, "high"), (0.39, "very_high"), (None, None), (math.nan, None)])
def test_difficulty_bins_follow_the_method(value, name):
    assert difficulty_bin(value) == name

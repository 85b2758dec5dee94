"""Difficulty features on a hand-made body and camera (values computed by hand)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from pd_assets.mining.features import FEATURE_NAMES, camera_angles, feature_matrix, rotation_6d
from pd_assets.poses.cameras import _roll_matrix, look_at
from pd_assets.skeleton import SMPL_JOINTS

# camera at azimuth 90 (on the body's left, +x), elevation 0, roll 0, looking at the origin:
# forward = -x, right = forward x up = (0, 0, -1), down = forward x right = (0, -1, 0)
R_AZ90 = np.array([[0.0, 0.0, -1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])


def _row() -> dict:
    body_pose = np.zeros((21, 3))
    body_pose[SMPL_JOINTS.index("left_knee") - 1] = [math.pi / 2, 0.0, 0.0]  # 90 deg about x
    kp2d = np.zeros((17, 2))
    kp3d = np.zeros((17, 3))
    kp3d[:, 2] = 3.0
    visible = np.zeros(17, bool)
    kp2d[:10] = [50.0, 50.0]                # 10 keypoints inside the 200 x 100 image ...
    visible[:6] = True                      # ... 6 of them visible, 4 hidden by the body
    kp2d[10:15] = [250.0, 50.0]             # 5 right of the image (u >= W - 0.5)
    kp2d[15:] = [50.0, 50.0]                # 2 would project inside, but are behind the camera
    kp3d[15:, 2] = -1.0
    return {
        "shape": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "global_orient": [0.0, math.pi / 2, 0.0],
        "body_pose": body_pose.ravel().tolist(), "R": R_AZ90.ravel().tolist(),
        "width": 200, "height": 100, "focal_px": 100.0, "distance_m": 3.0, "framing": "closeup",
        "keypoints2d": kp2d.ravel().tolist(), "keypoints3d_cam": kp3d.ravel().tolist(),
        "keypoints_visible": visible.tolist(), "mask_area": 1000, "bbox_xyxy": [10.0, 20.0, 60.0, 70.0],
        "pose_family": "yoga",
    }


@pytest.fixture(scope="module")
def features() -> dict[str, float]:
    X = feature_matrix(pl.DataFrame([_row()]))
    assert X.shape == (1, len(FEATURE_NAMES))
    return dict(zip(FEATURE_NAMES, X[0]))


def test_joint_rotations_are_6d_columns(features):
    # Rx(90) = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]: first column (1, 0, 0), second (0, 0, 1)
    assert [features[f"pose6d_left_knee_{k}"] for k in range(6)] == pytest.approx([1, 0, 0, 0, 0, 1])
    assert [features[f"pose6d_right_knee_{k}"] for k in range(6)] == pytest.approx([1, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(rotation_6d(np.eye(3)), [1, 0, 0, 0, 1, 0])


def test_orientation_is_relative_to_the_camera(features):
    # the body turned 90 deg about y faces +x, where the camera is: R @ Ry(90) = diag(1, -1, -1)
    assert [features[f"orient_cam6d_{k}"] for k in range(6)] == pytest.approx([1, 0, 0, 0, -1, 0], abs=1e-12)


def test_camera_angles_focal_and_framing(features):
    assert features["cam_azimuth_deg"] == pytest.approx(90.0)
    assert features["cam_elevation_deg"] == pytest.approx(0.0, abs=1e-9)
    assert features["cam_roll_deg"] == pytest.approx(0.0, abs=1e-9)
    assert features["fov_deg"] == pytest.approx(90.0)  # 2 atan(100 / 100)
    assert features["distance_m"] == 3.0 and features["focal_px"] == 100.0
    assert features["bbox_fraction"] == pytest.approx(50 * 50 / (200 * 100))
    assert features["mask_fraction"] == pytest.approx(1000 / (200 * 100))
    assert (features["framing_closeup"], features["framing_full"], features["framing_partial"]) == (1, 0, 0)
    assert features["family_yoga"] == 1 and features["family_standing"] == 0 and features["family_amass"] == 0


def test_keypoint_counts_and_self_occlusion(features):
    assert features["visible_keypoints"] == 6
    assert features["in_image_keypoints"] == 10
    assert features["self_occlusion_ratio"] == pytest.approx(0.4)


def test_shape_is_padded_for_any_body_model(features):
    assert [features[f"shape_{k}"] for k in range(6)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert all(math.isnan(features[f"shape_{k}"]) for k in range(6, 10))
    # SMPL-X: 16 betas are cut to the first 10
    X = feature_matrix(pl.DataFrame([{**_row(), "shape": list(np.arange(16) / 10)}]))
    got = dict(zip(FEATURE_NAMES, X[0]))
    assert [got[f"shape_{k}"] for k in range(10)] == pytest.approx(list(np.arange(10) / 10))


def test_camera_angles_recover_a_sampled_placement():
    az, el, roll = 30.0, 20.0, -4.0
    a, e = math.radians(az), math.radians(el)
    direction = np.array([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)])
    R0, _ = look_at(direction + [0.1, 0.9, 0.0], [0.1, 0.9, 0.0])  # the framing target is anywhere
    R = _roll_matrix(math.radians(roll)) @ R0
    assert camera_angles(R) == pytest.approx((az, el, roll))


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="keypoints_visible"):
        feature_matrix(pl.DataFrame([_row()]).drop("keypoints_visible"))

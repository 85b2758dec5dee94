"""Cameras: hand-computed projection, look_at axes, framing rules, presets, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pd_assets.poses import pose_sampler as ps
from pd_assets.poses.cameras import Camera, CameraConfig, look_at, project_points, sample_camera
from pd_assets.skeleton import SMPL_PARENTS, joint_index

J = joint_index


def body_points(joints: np.ndarray) -> np.ndarray:
    """A dense stand-in for mesh vertices: points along every bone plus the head top."""
    t = np.linspace(0.0, 1.0, 9)[:, None]
    pts = [joints] + [joints[SMPL_PARENTS[i]] * (1 - t) + joints[i] * t for i in range(1, 22)]
    head = joints[J("head")] - joints[J("spine3")]
    pts.append((joints[J("head")] + 0.12 * head / np.linalg.norm(head))[None])
    return np.vstack(pts)


def standing_bodies(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        s = ps.sample_pose(rng, {"standing": 1.0})
        j = ps.forward_kinematics(s.body_pose, s.global_orient)
        yield body_points(j), j


def inside(uv: np.ndarray, cam: Camera) -> np.ndarray:
    return ((uv[:, 0] >= -0.5) & (uv[:, 0] <= cam.width - 0.5)
            & (uv[:, 1] >= -0.5) & (uv[:, 1] <= cam.height - 0.5))


def fill(uv: np.ndarray, cam: Camera) -> float:
    return max(np.ptp(uv[:, 0]) / cam.width, np.ptp(uv[:, 1]) / cam.height)


# ---- projection and look_at ------------------------------------------------------------

def test_project_points_hand_computed():
    K = np.array([[100.0, 0, 64.0], [0, 100.0, 48.0], [0, 0, 1]])
    uv, z = project_points(np.array([[0, 0, 5.0], [1, 0, 2.0], [0, -1, 4.0], [0, 0, -1.0]]),
                           K, np.eye(3), np.zeros(3))
    assert np.allclose(uv[0], [64, 48])          # on the optical axis: the principal point
    assert np.allclose(uv[1], [64 + 50, 48])     # x/z = 0.5 -> 50 px right
    assert np.allclose(uv[2], [64, 48 - 25])     # y up in the world is -v (OpenCV y down)
    assert np.allclose(z, [5, 2, 4, -1]) and np.all(np.isnan(uv[3]))  # behind: NaN
    # the extrinsics apply first: X_cam = R X + t
    uv, z = project_points(np.array([[1.0, 0, 0]]), K, np.eye(3), np.array([0, 0, 2.0]))
    assert np.allclose(uv, [[114, 48]]) and np.allclose(z, [2])


def test_look_at_hand_computed_front_camera():
    R, t = look_at([0, 0, 5.0], [0, 0, 0.0], [0, 1.0, 0])
    # camera in front of the body looking back at it: body left (+x) is image right,
    # body up is image up (-v), and the camera looks along -z
    assert np.allclose(R, np.diag([1.0, -1.0, -1.0])) and np.allclose(t, [0, 0, 5])


def test_look_at_centres_target_and_keeps_up_up():
    rng = np.random.default_rng(0)
    K = np.array([[500.0, 0, 255.5], [0, 500.0, 255.5], [0, 0, 1]])
    for _ in range(20):
        eye, target = rng.normal(size=3) * 3, rng.normal(size=3)
        R, t = look_at(eye, target)
        assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1)
        uv, z = project_points(np.stack([target, target + [0, 0.1, 0]]), K, R, t)
        assert np.allclose(uv[0], [255.5, 255.5])
        assert uv[1, 1] < uv[0, 1] and z[0] > 0  # a point above the target is higher in the image
    with pytest.raises(ValueError, match="parallel"):
        look_at([0, 5, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="coincide"):
        look_at([1, 1, 1], [1, 1, 1])


# ---- sampling --------------------------------------------------------------------------

def test_full_framing_keeps_every_point_inside_and_fills_the_target_fraction():
    cfg = CameraConfig(framing_weights={"full": 1.0})
    rng = np.random.default_rng(1)
    for pts, j in standing_bodies(150):
        cam = sample_camera(rng, cfg, pts, joints=j)
        uv, z = cam.project(pts)
        assert cam.framing == "full" and np.all(z > 0) and inside(uv, cam).all()
        assert 0.59 <= fill(uv, cam) <= 0.9 + 1e-6
        assert np.allclose(cam.K[:2, 2], [255.5, 255.5]) and cam.K[0, 0] == cam.K[1, 1] == cam.focal_px
        assert np.isclose(np.linalg.norm(cam.center - 0.5 * (pts.min(0) + pts.max(0))), cam.distance_m)


def test_nominal_distance_is_kept_when_the_framing_allows_it():
    # a 1.7 m body at 3 m with f = 500 px on 512 px fills ~0.55 of the height: allowed
    cfg = CameraConfig(focal_range_px=(500.0, 500.0), distance_range_m=(3.0, 3.0),
                       elevation_range_deg=(0.0, 0.0), roll_range_deg=(0.0, 0.0),
                       framing_weights={"full": 1.0}, fill_ranges={"full": (0.3, 0.9)})
    pts, j = next(standing_bodies(1))
    cam = sample_camera(np.random.default_rng(0), cfg, pts, joints=j)
    assert cam.distance_m == 3.0
    # not allowed with the default 60-90% fill: the camera moves in, inside the distance range
    wider = CameraConfig(**{**cfg.__dict__, "fill_ranges": {}, "distance_range_m": (1.0, 3.0)})
    cam = sample_camera(np.random.default_rng(0), wider, pts, joints=j)
    assert 1.0 <= cam.distance_m < 3.0 and 0.6 - 1e-3 <= fill(cam.project(pts)[0], cam) <= 0.9 + 1e-3
    # the distance range is a hard bound: a fixed 3 m stays 3 m even though the fill is off
    fixed = CameraConfig(**{**cfg.__dict__, "fill_ranges": {}})
    assert sample_camera(np.random.default_rng(0), fixed, pts, joints=j).distance_m == 3.0


def test_partial_framing_truncates_the_body():
    cfg = CameraConfig(framing_weights={"partial": 1.0})
    rng = np.random.default_rng(2)
    regions = set()
    for pts, j in standing_bodies(80, seed=3):
        cam = sample_camera(rng, cfg, pts, joints=j)
        uv, _ = cam.project(pts)
        regions.add(cam.framed_region)
        assert cam.framing == "partial" and 0.05 < inside(uv, cam).mean() < 0.95
        key = j[J("head")] if cam.framed_region == "upper" else j[J("left_knee")]
        assert inside(cam.project(key[None])[0], cam).all()  # the framed half is in view
    assert regions == {"upper", "lower"}


def test_closeup_frames_head_and_shoulders():
    cfg = CameraConfig(framing_weights={"closeup": 1.0})
    rng = np.random.default_rng(4)
    for pts, j in standing_bodies(40, seed=5):
        cam = sample_camera(rng, cfg, pts, joints=j)
        head = j[[J("head"), J("neck")]]
        assert cam.framed_region == "head_shoulders" and inside(cam.project(head)[0], cam).all()
        assert not inside(cam.project(j[[J("left_ankle"), J("right_ankle")]])[0], cam).any()


def test_partial_without_joints_uses_the_main_axis():
    pts, _ = next(standing_bodies(1))
    cfg = CameraConfig(framing_weights={"partial": 1.0})
    cam = sample_camera(np.random.default_rng(0), cfg, pts[::2])  # not 22 points: no joints
    assert cam.framed_region in ("upper", "lower") and inside(cam.project(pts)[0], cam).mean() < 0.95


def test_sampling_is_deterministic():
    pts, j = next(standing_bodies(1))
    a = sample_camera(np.random.default_rng(9), CameraConfig(), pts, joints=j)
    b = sample_camera(np.random.default_rng(9), CameraConfig(), pts, joints=j)
    c = sample_camera(np.random.default_rng(10), CameraConfig(), pts, joints=j)
    assert np.array_equal(a.R, b.R) and np.array_equal(a.t, b.t) and np.array_equal(a.K, b.K)
    assert not np.array_equal(a.t, c.t)


def test_orbit_angles():
    pts, j = next(standing_bodies(1))
    target = 0.5 * (pts.min(0) + pts.max(0))
    base = dict(framing_weights={"full": 1.0}, roll_range_deg=(0.0, 0.0))
    # elevation > 0: the camera is above the target and looks down
    cam = sample_camera(np.random.default_rng(0), CameraConfig(elevation_range_deg=(25.0, 25.0),
                                                               **base), pts, joints=j)
    assert cam.center[1] > target[1] + 0.3 and cam.R[2, 1] < 0
    assert np.isclose(math.degrees(math.asin((cam.center - target)[1] / cam.distance_m)), 25.0)
    # azimuth 0: in front of the body (+z side), body left on the image right
    cam = sample_camera(np.random.default_rng(0), CameraConfig(
        azimuth_range_deg=(0.0, 0.0), elevation_range_deg=(0.0, 0.0), **base), pts, joints=j)
    assert cam.center[2] > target[2] + 1.0 and abs(cam.center[0] - target[0]) < 1e-9
    uv, _ = cam.project(j[[J("left_wrist"), J("right_wrist")]])
    assert uv[0, 0] > uv[1, 0]
    # azimuth 90: on the body's left (+x)
    cam = sample_camera(np.random.default_rng(0), CameraConfig(
        azimuth_range_deg=(90.0, 90.0), **base), pts, joints=j)
    assert cam.center[0] > target[0] + 1.0
    # roll turns the image: the body's up direction leans by the roll angle
    cam = sample_camera(np.random.default_rng(0), CameraConfig(
        framing_weights={"full": 1.0}, roll_range_deg=(10.0, 10.0),
        elevation_range_deg=(0.0, 0.0)), pts, joints=j)
    uv, _ = cam.project(np.stack([target, target + [0, 0.5, 0]]))
    d = uv[1] - uv[0]
    assert np.isclose(abs(math.degrees(math.atan2(d[0], -d[1]))), 10.0, atol=0.5)


def test_fov_gives_the_focal_length():
    pts, j = next(standing_bodies(1))
    cam = sample_camera(np.random.default_rng(0), CameraConfig(fov_range_deg=(60.0, 60.0)), pts, joints=j)
    assert np.isclose(cam.focal_px, 256 / math.tan(math.radians(30)))


def test_method_amass_preset():
    cfg = CameraConfig.method_amass()
    pts, j = next(standing_bodies(1))
    cam = sample_camera(np.random.default_rng(0), cfg, pts, joints=j)
    assert (cam.width, cam.height, cam.focal_px, cam.distance_m) == (1024, 1024, 890.0, 3.0)
    assert np.allclose(cam.K, [[890, 0, 511.5], [0, 890, 511.5], [0, 0, 1]])
    assert inside(cam.project(pts)[0], cam).all()


def test_principal_point_jitter():
    pts, j = next(standing_bodies(1))
    cam = sample_camera(np.random.default_rng(3), CameraConfig(principal_jitter_px=4.0), pts, joints=j)
    off = cam.K[:2, 2] - 255.5
    assert np.all(np.abs(off) <= 4.0) and np.any(off != 0)


@pytest.mark.parametrize("kwargs,match", [
    ({"distance_range_m": (3.0, 2.0)}, "distance_range_m"),
    ({"focal_range_px": (0.0, 10.0)}, "focal_range_px"),
    ({"framing_weights": {"wide": 1.0}}, "framing_weights"),
    ({"elevation_range_deg": (0.0, 90.0)}, "85"),
    ({"fov_range_deg": (30.0,)}, "pair"),
])
def test_bad_config_names_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CameraConfig(**kwargs)


def test_bad_points_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        sample_camera(np.random.default_rng(0), CameraConfig(), np.array([[0, 0, np.nan]]))


def test_nan_framing_weight_is_a_clear_config_error():
    with pytest.raises(ValueError, match="framing_weights=.*finite weights"):
        CameraConfig(framing_weights={"full": float("nan")})

"""Procedural poses: sign conventions by forward kinematics, limits, capsules, families."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pd_assets.poses import pose_sampler as ps
from pd_assets.skeleton import SMPL_JOINTS, joint_index

J = joint_index
FEET = {J("left_ankle"), J("right_ankle"), J("left_foot"), J("right_foot")}
UPRIGHT = ("standing", "walking", "running", "sitting", "crouching", "reaching")


def pose_with(**rotvecs) -> np.ndarray:
    bp = np.zeros((21, 3))
    for name, rv in rotvecs.items():
        bp[J(name) - 1] = rv
    return bp


def fk(bp, go=(0.0, 0.0, 0.0)) -> np.ndarray:
    return ps.forward_kinematics(bp, np.asarray(go, float))


def samples(family: str, n: int, seed: int = 0) -> list[ps.PoseSample]:
    rng = np.random.default_rng(seed)
    return [ps.sample_pose(rng, {family: 1.0}) for _ in range(n)]


# ---- rest skeleton and rotations ---------------------------------------------------

def test_rest_skeleton_is_a_t_posed_adult_facing_plus_z():
    r = ps.REST_JOINTS
    assert r.shape == (22, 3) and np.allclose(r[0], 0)
    head_top, sole = r[J("head"), 1] + 0.12, r[J("left_foot"), 1] - 0.03
    assert 1.6 < head_top - sole < 1.8
    assert r[J("left_wrist"), 0] > 0.6 and r[J("right_wrist"), 0] < -0.6  # arms out, left = +x
    assert r[J("left_foot"), 2] > r[J("left_ankle"), 2] + 0.05  # toes point to +z
    for name in SMPL_JOINTS:
        if name.startswith("left_"):
            assert np.allclose(r[J(name)] * [-1, 1, 1], r[J("right_" + name[5:])])


def test_rodrigues_hand_case_and_scipy_agreement():
    m = ps.rotvec_to_matrix(np.array([0, 0, np.pi / 2]))
    assert np.allclose(m @ [1, 0, 0], [0, 1, 0])
    rv = np.random.default_rng(1).normal(size=(50, 3))
    assert np.allclose(ps.rotvec_to_matrix(rv), Rotation.from_rotvec(rv).as_matrix())
    assert np.allclose(ps.rotvec_to_matrix(np.zeros(3)), np.eye(3))


def test_zero_pose_gives_rest_joints():
    assert np.allclose(fk(np.zeros((21, 3))), ps.REST_JOINTS)
    assert np.allclose(fk(np.zeros(63)), ps.REST_JOINTS)  # flat (63,) accepted too


# ---- sign conventions (SMPL-X local axes) ------------------------------------------

@pytest.mark.parametrize("side", ["left", "right"])
def test_knee_flexion_is_plus_x_for_both_knees(side):
    j = fk(pose_with(**{f"{side}_knee": [np.pi / 2, 0, 0]}))
    knee, ankle = j[J(f"{side}_knee")], j[J(f"{side}_ankle")]
    # shin (0.41 m) swings behind the knee and becomes horizontal
    assert ankle[2] < knee[2] - 0.35 and abs(ankle[1] - knee[1]) < 0.06


@pytest.mark.parametrize("side", ["left", "right"])
def test_hip_flexion_is_minus_x(side):
    j = fk(pose_with(**{f"{side}_hip": [-np.pi / 2, 0, 0]}))
    assert j[J(f"{side}_knee"), 2] > j[J(f"{side}_hip"), 2] + 0.3


def test_shoulder_lowers_left_arm_with_minus_z_and_right_arm_with_plus_z():
    down = fk(pose_with(left_shoulder=[0, 0, -np.pi / 2], right_shoulder=[0, 0, np.pi / 2]))
    for s in ("left", "right"):
        shoulder, elbow = down[J(f"{s}_shoulder")], down[J(f"{s}_elbow")]
        assert elbow[1] < shoulder[1] - 0.24 and abs(elbow[0] - shoulder[0]) < 0.05
    up = fk(pose_with(left_shoulder=[0, 0, np.pi / 2]))  # +z raises the left arm
    assert up[J("left_elbow"), 1] > up[J("left_shoulder"), 1] + 0.24


@pytest.mark.parametrize("side,sign", [("left", -1.0), ("right", 1.0)])
def test_elbow_flexion_brings_forearm_forward(side, sign):
    j = fk(pose_with(**{f"{side}_elbow": [0, sign * np.pi / 2, 0]}))
    assert j[J(f"{side}_wrist"), 2] > j[J(f"{side}_elbow"), 2] + 0.2
    # the same flexion with the arm hanging down still moves the hand forward
    arm_down = [0, 0, sign * np.pi / 2]  # left -z, right +z
    j = fk(pose_with(**{f"{side}_shoulder": arm_down, f"{side}_elbow": [0, sign * np.pi / 2, 0]}))
    assert j[J(f"{side}_wrist"), 2] > j[J(f"{side}_elbow"), 2] + 0.2
    assert abs(j[J(f"{side}_wrist"), 1] - j[J(f"{side}_elbow"), 1]) < 0.05


def test_spine_forward_bend_is_plus_x_and_lying_orientation():
    j = fk(pose_with(spine1=[0.5, 0, 0]))
    assert j[J("head"), 2] > ps.REST_JOINTS[J("head"), 2] + 0.15
    # global -90 deg about x: the body lies on its back, its front (+z) now faces up (+y)
    j = fk(np.zeros((21, 3)), [-np.pi / 2, 0, 0])
    assert abs(j[J("neck"), 1] - j[0, 1]) < 0.05 and j[J("neck"), 2] < -0.45
    assert j[J("left_foot"), 1] > j[J("left_ankle"), 1] + 0.05


def test_mirror_pose_mirrors_the_skeleton():
    s = samples("dance", 1, seed=3)[0]
    go, bp = ps.mirror_pose(s.global_orient, s.body_pose)
    a, b = fk(s.body_pose, s.global_orient), fk(bp, go)
    swap = [SMPL_JOINTS.index(n.replace("left_", "@").replace("right_", "left_").replace("@", "right_"))
            for n in SMPL_JOINTS]
    assert np.allclose(b, (a * [-1, 1, 1])[swap], atol=1e-9)


# ---- limits --------------------------------------------------------------------------

def test_joint_limits_shape_order_and_one_directional_joints():
    lim = ps.JOINT_LIMITS
    assert lim.shape == (21, 3, 2) and np.all(lim[..., 0] <= lim[..., 1])
    for s in ("left", "right"):
        assert lim[J(f"{s}_knee") - 1, 0, 0] == 0 and lim[J(f"{s}_knee") - 1, 0, 1] > 2.2
        assert lim[J(f"{s}_hip") - 1, 0, 0] < -2.0  # flexion is -x
    assert lim[J("left_elbow") - 1, 1, 1] == 0 and lim[J("left_elbow") - 1, 1, 0] < -2.5
    assert lim[J("right_elbow") - 1, 1, 0] == 0 and lim[J("right_elbow") - 1, 1, 1] > 2.5
    for name in ("spine1", "spine2", "spine3"):
        assert np.all(np.abs(lim[J(name) - 1]) < np.radians(31))
    # right limits are the mirrored left ones: y, z intervals flip sign
    for name in ("hip", "shoulder", "collar", "wrist", "ankle"):
        left, right = lim[J("left_" + name) - 1], lim[J("right_" + name) - 1]
        assert np.allclose(right[0], left[0]) and np.allclose(right[1:], -left[1:, ::-1])


def test_clamp_to_limits():
    bp = np.full((21, 3), 10.0)
    assert np.allclose(ps.clamp_to_limits(bp), ps.JOINT_LIMITS[..., 1])


# ---- capsules --------------------------------------------------------------------------

def test_segment_distances_hand_cases():
    p1 = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]], float)
    q1 = np.array([[1, 0, 0], [1, 0, 0], [2, 0, 0], [1, 0, 0]], float)
    p2 = np.array([[0, 1, 0], [0.5, -1, 2], [1, -1, 0], [3, 0, 4]], float)
    q2 = np.array([[1, 1, 0], [0.5, 1, 2], [1, 1, 0], [3, 0, 5]], float)
    # parallel 1 apart; skew 2 apart; crossing; endpoint to endpoint (2, 0, 4) -> 2*sqrt(5)
    assert np.allclose(ps.segment_distances(p1, q1, p2, q2), [1.0, 2.0, 0.0, np.sqrt(4 + 16)])


def test_self_intersects_margin_and_adjacency_hand_cases():
    assert not ps.self_intersects(ps.REST_JOINTS)
    j = ps.REST_JOINTS.copy()
    j[J("left_wrist")] = j[J("head")]  # hand inside the head
    assert ps.self_intersects(j)
    # forearm hanging at lateral distance d from the torso axis: r 0.12 + 0.04 - margin 0.02
    for d, expected in ((0.15, False), (0.13, True)):
        j = ps.REST_JOINTS.copy()
        j[J("left_elbow")] = [d, 0.30, 0.0]
        j[J("left_wrist")] = [d, 0.05, 0.0]
        j[J("left_shoulder")] = [0.17, 0.45, 0.0]
        assert ps.self_intersects(j) is expected
    # adjacent capsules may overlap: at rest the thigh starts inside the torso capsule
    r = ps.REST_JOINTS
    d = ps.segment_distances(r[[0]], r[[J("neck")]], r[[J("left_hip")]], r[[J("left_knee")]])
    assert d[0] < 0.12 + 0.07 - 0.02 and not ps.self_intersects(r)
    with pytest.raises(ValueError, match="22, 3"):
        ps.self_intersects(np.zeros((24, 3)))


def test_crossed_thighs_intersect():
    crossed = pose_with(left_hip=[0, 0, -0.5], right_hip=[0, 0, 0.5])
    assert ps.self_intersects(fk(crossed))
    assert not ps.self_intersects(fk(pose_with(left_hip=[0, 0, 0.3], right_hip=[0, 0, -0.3])))


# ---- sampling ----------------------------------------------------------------------------

@pytest.mark.parametrize("family", ps.POSE_FAMILIES)
def test_every_family_gives_valid_poses(family):
    for s in samples(family, 40, seed=ps.POSE_FAMILIES.index(family)):
        assert s.family == family and s.global_orient.shape == (3,) and s.body_pose.shape == (21, 3)
        assert np.all(s.body_pose >= ps.JOINT_LIMITS[..., 0] - 1e-12)
        assert np.all(s.body_pose <= ps.JOINT_LIMITS[..., 1] + 1e-12)
        assert not ps.self_intersects(fk(s.body_pose, s.global_orient))


def test_sampling_is_deterministic_per_seed():
    a = ps.sample_pose(np.random.default_rng(7))
    b = ps.sample_pose(np.random.default_rng(7))
    c = ps.sample_pose(np.random.default_rng(8))
    assert a.family == b.family and np.array_equal(a.body_pose, b.body_pose)
    assert not np.array_equal(a.body_pose, c.body_pose)


def test_family_frequencies_follow_weights():
    rng = np.random.default_rng(0)
    n = 5000
    draws = [ps.sample_family(rng, None) for _ in range(n)]
    for fam, w in ps.DEFAULT_FAMILY_WEIGHTS.items():
        assert abs(draws.count(fam) / n - w) < 0.025
    only = {ps.sample_family(rng, {"yoga": 2.0, "lying": 0.0}) for _ in range(50)}
    assert only == {"yoga"}


@pytest.mark.parametrize("weights,match", [({"juggling": 1.0}, "juggling"),
                                           ({"yoga": 0.0}, "not all 0"),
                                           ({"yoga": -1.0}, ">= 0")])
def test_bad_family_weights_name_the_problem(weights, match):
    with pytest.raises(ValueError, match=match):
        ps.sample_family(np.random.default_rng(0), weights)


@pytest.mark.parametrize("family", UPRIGHT)
def test_upright_families_stand_on_their_feet(family):
    for s in samples(family, 60, seed=11):
        j = fk(s.body_pose, s.global_orient)
        assert int(np.argmin(j[:, 1])) in FEET, (family, SMPL_JOINTS[int(np.argmin(j[:, 1]))])
        if family in ("standing", "reaching"):
            feet_y = j[[J("left_foot"), J("right_foot")], 1]
            assert feet_y.max() - j[:, 1].min() < 0.15  # both feet on (or near) the floor
        up = j[J("neck")] - j[0]
        assert up[1] / np.linalg.norm(up) > 0.6  # trunk upright


def test_lying_bodies_are_horizontal():
    for s in samples("lying", 60, seed=5):
        j = fk(s.body_pose, s.global_orient)
        up = j[J("neck")] - j[0]
        assert abs(up[1]) / np.linalg.norm(up) < 0.45


def test_arms_leave_the_t_pose():
    lowered, total = 0, 0
    for fam in ps.POSE_FAMILIES:
        for s in samples(fam, 30, seed=2):
            j = fk(s.body_pose, s.global_orient)
            for side in ("left", "right"):
                arm = j[J(f"{side}_elbow")] - j[J(f"{side}_shoulder")]
                trunk = j[J("neck")] - j[0]
                # angle between upper arm and trunk: 90 deg in the T-pose
                cos = arm @ trunk / np.linalg.norm(arm) / np.linalg.norm(trunk)
                total += 1
                lowered += abs(np.degrees(np.arccos(cos)) - 90) > 15
    assert lowered / total > 0.8
    standing = samples("standing", 60, seed=4)
    down = [fk(s.body_pose, s.global_orient) for s in standing]
    frac = np.mean([j[J("left_elbow"), 1] < j[J("left_shoulder"), 1] - 0.15 for j in down])
    assert frac > 0.7  # arms hang down by default


def test_family_templates_have_their_shape():
    sit = np.array([s.body_pose for s in samples("sitting", 40)])
    assert np.all(sit[:, J("left_hip") - 1, 0] < -1.0)  # hips flexed > ~57 deg
    walk = np.array([s.body_pose for s in samples("walking", 200)])
    run = np.array([s.body_pose for s in samples("running", 200)])
    # legs swing in anti-phase
    assert np.corrcoef(walk[:, J("left_hip") - 1, 0], walk[:, J("right_hip") - 1, 0])[0, 1] < -0.5
    assert run[:, J("left_knee") - 1, 0].mean() > walk[:, J("left_knee") - 1, 0].mean() + 0.3


def test_rejections_are_counted_and_hopeless_families_raise():
    calls = {"n": 0}
    bad = ps.REST_JOINTS.copy()
    bad[J("left_wrist")] = bad[J("head")]

    def joints_fn(go, bp):
        calls["n"] += 1
        return bad if calls["n"] <= 3 else ps.REST_JOINTS

    s = ps.sample_pose(np.random.default_rng(0), {"standing": 1}, body_joints_fn=joints_fn)
    assert s.rejections == 3 and calls["n"] == 4
    with pytest.raises(ps.PoseSamplingError, match="'yoga'.*5 attempts"):
        ps.sample_pose(np.random.default_rng(0), {"yoga": 1}, body_joints_fn=lambda g, b: bad,
                       max_tries=5)

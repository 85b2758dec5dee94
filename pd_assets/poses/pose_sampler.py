"""Procedural body poses that need no data: parametric family templates + noise.

Poses follow CONTRACTS.md: `global_orient` (3,) and `body_pose` (21, 3) axis-angle in
SMPL-X body order and local axes (zero = T-pose; body frame y up, faces +z, x = left).
Sign conventions (checked by forward kinematics in the tests):
  hip flexion (thigh forward) = -x; knee flexion = +x; ankle dorsiflexion = -x;
  spine / neck / head forward bend = +x; left hip abduction = +z (right: -z);
  left shoulder: arm down = -z, arm forward = -y (right shoulder: +z, +y);
  left elbow flexion = -y (right: +y).
A right-side rotation is the left-side one mirrored through the x = 0 plane:
(x, y, z) -> (x, -y, -z).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from pd_assets.poses import pose_templates as tpl
from pd_assets.skeleton import NUM_BODY_POSE_JOINTS, SMPL_JOINTS, SMPL_PARENTS

_D = np.pi / 180.0
_MIRROR = np.array([1.0, -1.0, -1.0])  # axis-angle of the mirrored (right-side) rotation

# Rest joints of a ~1.70 m SMPL-like adult in the T-pose, pelvis at the origin, metres
# (rounded and left/right-symmetrised from the SMPL neutral template's joint regressor).
_LEFT_REST = {
    "left_hip": (0.070, -0.090, -0.005), "left_knee": (0.105, -0.455, -0.010),
    "left_ankle": (0.090, -0.865, -0.055), "left_foot": (0.120, -0.925, 0.065),
    "left_collar": (0.080, 0.420, -0.035), "left_shoulder": (0.170, 0.450, -0.045),
    "left_elbow": (0.430, 0.435, -0.070), "left_wrist": (0.680, 0.445, -0.070),
}
_MID_REST = {
    "pelvis": (0.0, 0.0, 0.0), "spine1": (0.0, 0.110, -0.025), "spine2": (0.0, 0.245, 0.0),
    "spine3": (0.0, 0.300, 0.0), "neck": (0.0, 0.510, -0.040), "head": (0.0, 0.575, 0.020),
}


def _rest_joints() -> np.ndarray:
    out = np.zeros((len(SMPL_JOINTS), 3))
    for i, name in enumerate(SMPL_JOINTS):
        if name in _MID_REST:
            out[i] = _MID_REST[name]
        elif name.startswith("left_"):
            out[i] = _LEFT_REST[name]
        else:
            out[i] = np.array(_LEFT_REST["left_" + name[6:]]) * [-1.0, 1.0, 1.0]
    return out


REST_JOINTS: np.ndarray = _rest_joints()
REST_JOINTS.setflags(write=False)

# Per-joint limits for the LEFT side and the midline, degrees, (x, y, z) = (lo, hi).
# Sources: AAOS / Norkin & White normal ROM tables (hip flex 120 ext 30 abd 45 add 30
# rot 45; knee flex 135-140; ankle dorsi 20 plantar 50, inversion 35 eversion 15;
# thoracolumbar flex 80 ext 25 lateral 35 rotation 45; cervical flex 45 ext 45 lateral 45
# rotation 70; shoulder flex 180 abd 180 horizontal add 135 rotation 70-90; elbow flex
# 150; wrist flex 80 ext 70, radial 20 ulnar 30), widened a little where noted.
_LIMITS_DEG = {
    # hip: flexion 130 (AAOS 120 + trained), ext 30; int/ext rotation 45; add 30, abd 60
    # (AAOS 45, widened for dance/yoga straddles).
    "left_hip": ((-130, 30), (-45, 45), (-30, 60)),
    # knee: flexion only (no hyperextension), a little tibial rotation / varus-valgus.
    "left_knee": ((0, 140), (-10, 10), (-3, 3)),
    # ankle: dorsiflexion 20 (-x), plantarflexion 50 (+x); toe in/out; inversion/eversion.
    "left_ankle": ((-20, 50), (-25, 25), (-20, 30)),
    # toes (SMPL foot joint): MTP extension 40 (-x) / flexion 30, nothing else.
    "left_foot": ((-40, 30), (-5, 5), (-5, 5)),
    # each of the three spine segments takes about a third of the thoracolumbar ROM.
    "spine1": ((-10, 30), (-15, 15), (-12, 12)),
    "spine2": ((-10, 30), (-15, 15), (-12, 12)),
    "spine3": ((-10, 25), (-15, 15), (-12, 12)),
    # neck and head share the cervical ROM (flex 50, rotation 70, lateral 40 together).
    "neck": ((-25, 30), (-35, 35), (-20, 20)),
    "head": ((-25, 25), (-35, 35), (-20, 20)),
    # collar (sternoclavicular): elevation 30 / depression 10, protraction/retraction 15.
    "left_collar": ((-10, 10), (-15, 15), (-10, 30)),
    # shoulder from the T-pose: twist about the arm (x), horizontal flexion forward is -y
    # (135) / extension +y (extra room because arm-down-and-back needs +y), down -z to
    # across the body (110), up +z past vertical (110).
    "left_shoulder": ((-80, 80), (-140, 90), (-110, 110)),
    # elbow: flexion 150 about -y, no hyperextension; forearm pronation/supination part.
    "left_elbow": ((-45, 45), (-150, 0), (-5, 5)),
    # wrist: flexion (-z) 80 / extension 70; ulnar/radial deviation about y; some twist.
    "left_wrist": ((-40, 40), (-30, 20), (-80, 70)),
}


def _joint_limits() -> np.ndarray:
    lim = np.zeros((NUM_BODY_POSE_JOINTS, 3, 2))
    for i, name in enumerate(SMPL_JOINTS[1:]):
        if name.startswith("right_"):
            left = np.array(_LIMITS_DEG["left_" + name[6:]], dtype=float)
            # mirror: y and z flip sign, so the interval flips too: [lo, hi] -> [-hi, -lo]
            left[1:] = -left[1:, ::-1]
            lim[i] = left
        else:
            lim[i] = _LIMITS_DEG[name]
    return lim * _D


JOINT_LIMITS: np.ndarray = _joint_limits()  # (21, 3, 2) radians
JOINT_LIMITS.setflags(write=False)

POSE_FAMILIES: tuple[str, ...] = (
    "standing", "walking", "running", "sitting", "crouching", "reaching", "lying",
    "dance", "sport", "yoga",
)
# Hard, dynamic poses are what the method mines for (AMASS-like); still keep everyday
# poses common so generated scenes stay natural.
DEFAULT_FAMILY_WEIGHTS: dict[str, float] = {
    "standing": 0.12, "walking": 0.12, "running": 0.08, "sitting": 0.12, "crouching": 0.08,
    "reaching": 0.10, "lying": 0.08, "dance": 0.10, "sport": 0.10, "yoga": 0.10,
}
# Per-family Gaussian noise (radians, before the per-joint scale).
_FAMILY_NOISE = {
    "standing": 0.06, "walking": 0.05, "running": 0.06, "sitting": 0.07, "crouching": 0.06,
    "reaching": 0.07, "lying": 0.10, "dance": 0.09, "sport": 0.08, "yoga": 0.06,
}
# Per-joint noise scale: the spine and collars move little, limbs a lot.
_NOISE_SCALE_BY_KIND = {"spine": 0.4, "collar": 0.3, "neck": 0.6, "head": 0.6, "knee": 0.8,
                        "ankle": 0.7, "foot": 0.4}
_JOINT_NOISE_SCALE = np.array([
    next((v for k, v in _NOISE_SCALE_BY_KIND.items() if k in name), 1.0)
    for name in SMPL_JOINTS[1:]
])[:, None]


class PoseSamplingError(RuntimeError):
    """A pose family could not produce a pose without self-intersection."""


@dataclass
class PoseSample:
    global_orient: np.ndarray  # (3,) axis-angle, body frame
    body_pose: np.ndarray      # (21, 3) axis-angle, SMPL-X local axes
    family: str
    rejections: int = 0        # self-intersecting attempts discarded before this one


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues' formula, vectorised: (..., 3) axis-angle -> (..., 3, 3)."""
    rv = np.asarray(rotvec, dtype=np.float64)
    theta = np.linalg.norm(rv, axis=-1)[..., None, None]
    k = rv / np.maximum(theta[..., 0], 1e-12)
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    skew = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], axis=-1).reshape(rv.shape + (3,))
    return np.eye(3) + np.sin(theta) * skew + (1.0 - np.cos(theta)) * (skew @ skew)


def _tree_levels() -> list[tuple[np.ndarray, np.ndarray]]:
    depth = [0] * len(SMPL_JOINTS)
    for i in range(1, len(SMPL_JOINTS)):
        depth[i] = depth[SMPL_PARENTS[i]] + 1
    return [(np.array([i for i in range(len(depth)) if depth[i] == d]),
             np.array([SMPL_PARENTS[i] for i in range(len(depth)) if depth[i] == d]))
            for d in range(1, max(depth) + 1)]


_LEVELS = _tree_levels()  # joints grouped by tree depth: one batched matmul per level


def forward_kinematics(body_pose: np.ndarray, global_orient: np.ndarray,
                       rest_joints: np.ndarray = REST_JOINTS) -> np.ndarray:
    """World joint positions (22, 3) of the posed skeleton; the pelvis stays at its rest spot."""
    pose = np.concatenate([np.asarray(global_orient, float).reshape(1, 3),
                           np.asarray(body_pose, float).reshape(NUM_BODY_POSE_JOINTS, 3)])
    local = rotvec_to_matrix(pose)
    rest = np.asarray(rest_joints, dtype=np.float64)
    glob = np.empty_like(local)
    out = np.empty((len(SMPL_JOINTS), 3))
    glob[0], out[0] = local[0], rest[0]
    for idx, par in _LEVELS:
        glob[idx] = glob[par] @ local[idx]
        out[idx] = out[par] + (glob[par] @ (rest[idx] - rest[par])[:, :, None])[:, :, 0]
    return out


# Capsule proxies: (name, start joint, end joint, radius in metres); "head_top" is a
# point _HEAD_LENGTH above the head joint along spine3 -> head.  Radii are plausible
# adult limb half-thicknesses, kept slim because a capsule of the full torso width
# would flag arms hanging against the sides.
CAPSULES: tuple[tuple[str, str, str, float], ...] = (
    ("torso", "pelvis", "neck", 0.12), ("head", "head", "head_top", 0.10),
    ("left_upper_arm", "left_shoulder", "left_elbow", 0.05),
    ("right_upper_arm", "right_shoulder", "right_elbow", 0.05),
    ("left_forearm", "left_elbow", "left_wrist", 0.04),
    ("right_forearm", "right_elbow", "right_wrist", 0.04),
    ("left_thigh", "left_hip", "left_knee", 0.07), ("right_thigh", "right_hip", "right_knee", 0.07),
    ("left_shin", "left_knee", "left_ankle", 0.05), ("right_shin", "right_knee", "right_ankle", 0.05),
)
_HEAD_LENGTH = 0.10  # head joint to the skull's top region
_POINTS = (*SMPL_JOINTS, "head_top")
_CAP_START = np.array([_POINTS.index(c[1]) for c in CAPSULES])
_CAP_END = np.array([_POINTS.index(c[2]) for c in CAPSULES])
_CAP_RADII = np.array([c[3] for c in CAPSULES])
_CAP_NAMES = [c[0] for c in CAPSULES]
# Pairs that touch at a joint (or always touch in life, like arms against the torso).
_ADJACENT = {frozenset(p) for p in (
    ("torso", "head"), ("torso", "left_upper_arm"), ("torso", "right_upper_arm"),
    ("torso", "left_thigh"), ("torso", "right_thigh"),
    ("left_upper_arm", "left_forearm"), ("right_upper_arm", "right_forearm"),
    ("left_thigh", "left_shin"), ("right_thigh", "right_shin"),
)}
_PAIRS = np.array([(i, j) for i in range(len(CAPSULES)) for j in range(i + 1, len(CAPSULES))
                   if frozenset((_CAP_NAMES[i], _CAP_NAMES[j])) not in _ADJACENT])
_HEAD, _SPINE3 = SMPL_JOINTS.index("head"), SMPL_JOINTS.index("spine3")


def segment_distances(p1, q1, p2, q2) -> np.ndarray:
    """Closest distance between segments p1-q1 and p2-q2, batched over the leading axis."""
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a = np.maximum(np.einsum("ij,ij->i", d1, d1), 1e-12)
    e = np.maximum(np.einsum("ij,ij->i", d2, d2), 1e-12)
    b, c, f = (np.einsum("ij,ij->i", d1, d2), np.einsum("ij,ij->i", d1, r),
               np.einsum("ij,ij->i", d2, r))
    denom = a * e - b * b
    # parallel segments (denom ~ 0): any s works, take 0
    ok = denom > 1e-12
    s = np.where(ok, np.clip((b * f - c * e) / np.where(ok, denom, 1.0), 0, 1), 0.0)
    t = (b * s + f) / e
    s = np.where(t < 0, np.clip(-c / a, 0, 1), np.where(t > 1, np.clip((b - c) / a, 0, 1), s))
    t = np.clip(t, 0, 1)
    return np.linalg.norm(p1 + d1 * s[:, None] - p2 - d2 * t[:, None], axis=1)


def self_intersects(joints: np.ndarray, radii: np.ndarray | None = None,
                    margin: float = 0.02) -> bool:
    """True when two non-adjacent body capsules interpenetrate by more than `margin` metres.

    `joints` are SMPL-order (22, 3) positions; `radii` overrides CAPSULES' radii, in order.
    """
    j = np.asarray(joints, dtype=np.float64)
    if j.shape != (len(SMPL_JOINTS), 3):
        raise ValueError(f"self_intersects expects (22, 3) SMPL joints, got shape {j.shape}")
    rad = _CAP_RADII if radii is None else np.asarray(radii, dtype=np.float64)
    if rad.shape != _CAP_RADII.shape:
        raise ValueError(f"radii must have one value per capsule {_CAP_NAMES}, got shape {rad.shape}")
    head_dir = j[_HEAD] - j[_SPINE3]
    head_top = j[_HEAD] + _HEAD_LENGTH * head_dir / max(np.linalg.norm(head_dir), 1e-9)
    pts = np.vstack([j, head_top])
    starts, stops = pts[_CAP_START], pts[_CAP_END]
    a, b = _PAIRS[:, 0], _PAIRS[:, 1]
    dist = segment_distances(starts[a], stops[a], starts[b], stops[b])
    return bool(np.any(dist < rad[a] + rad[b] - margin))


def sample_family(rng: np.random.Generator, weights: dict[str, float] | None) -> str:
    """Draw a family name; families missing from `weights` get weight 0."""
    weights = DEFAULT_FAMILY_WEIGHTS if weights is None else weights
    unknown = sorted(set(weights) - set(POSE_FAMILIES))
    if unknown:
        raise ValueError(f"unknown pose family {unknown} in family_weights; "
                         f"choose from {list(POSE_FAMILIES)}")
    w = np.array([float(weights.get(f, 0.0)) for f in POSE_FAMILIES])
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"family_weights must be finite, >= 0 and not all 0, got {dict(weights)}")
    return POSE_FAMILIES[int(rng.choice(len(POSE_FAMILIES), p=w / w.sum()))]


def clamp_to_limits(body_pose: np.ndarray) -> np.ndarray:
    """Clip each axis-angle component into JOINT_LIMITS."""
    return np.clip(body_pose, JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1])


def _draw(rng: np.random.Generator, family: str) -> tuple[np.ndarray, np.ndarray]:
    go, bp = tpl.TEMPLATES[family](rng)
    bp = bp + rng.normal(0.0, _FAMILY_NOISE[family], size=bp.shape) * _JOINT_NOISE_SCALE
    return go, clamp_to_limits(bp)


def sample_pose(rng: np.random.Generator, family_weights: dict[str, float] | None = None,
                body_joints_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                max_tries: int = 20) -> PoseSample:
    """One plausible pose: a family template + noise, clamped, without self-intersection.

    The family is drawn once; attempts of that family are redrawn while
    `self_intersects(body_joints_fn(global_orient, body_pose))` holds (default: forward
    kinematics of REST_JOINTS).  Raises PoseSamplingError after `max_tries` failures.
    """
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    family = sample_family(rng, family_weights)
    joints_fn = body_joints_fn or (lambda go, bp: forward_kinematics(bp, go))
    for attempt in range(max_tries):
        go, bp = _draw(rng, family)
        if not self_intersects(joints_fn(go, bp)):
            return PoseSample(global_orient=go, body_pose=bp, family=family, rejections=attempt)
    raise PoseSamplingError(
        f"pose family {family!r} self-intersected in all {max_tries} attempts; raise "
        f"max_tries or give {family!r} weight 0 in family_weights"
    )


def mirror_pose(global_orient: np.ndarray, body_pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The left/right mirror image of a pose (swaps sides and flips y/z of every rotation)."""
    names = SMPL_JOINTS[1:]
    swap = [names.index(n.replace("left_", "@").replace("right_", "left_").replace("@", "right_"))
            for n in names]
    return np.asarray(global_orient) * _MIRROR, np.asarray(body_pose)[swap] * _MIRROR


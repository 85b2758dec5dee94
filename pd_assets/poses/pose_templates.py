"""Parametric templates of the procedural pose families (used by `pose_sampler`).

Each template draws a few interpretable parameters (degrees) and builds
`(global_orient (3,), body_pose (21, 3))`; `pose_sampler` adds noise and clamps.
Limbs are written in "left terms" and mirrored for the right side: a right-side
axis-angle is the left one with y and z negated (reflection through x = 0).
Limb directions are in the parent frame, which is close to the body frame because the
spine and collar rotations stay small.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from pd_assets.skeleton import NUM_BODY_POSE_JOINTS, SMPL_JOINTS

_D = np.pi / 180.0
_ROW = {name: i - 1 for i, name in enumerate(SMPL_JOINTS) if i > 0}  # body_pose row
SIDES = (1.0, -1.0)  # +1 = left, -1 = right
_ARM_REST = (1.0, 0.0, 0.0)   # left arm along +x in the T-pose
_LEG_REST = (0.0, -1.0, 0.0)  # legs point down
_X, _Y, _Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


# Small rotations are composed as quaternions (w, x, y, z) in plain floats: scipy's
# Rotation costs ~20 us per call, and a template makes several per pose.
def _quat(axis, angle: float) -> tuple[float, float, float, float]:
    h = 0.5 * angle
    sh = math.sin(h)
    return (math.cos(h), axis[0] * sh, axis[1] * sh, axis[2] * sh)


def _qmul(a, b) -> tuple[float, float, float, float]:
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return (aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw)


def _rotvec(q) -> np.ndarray:
    w, x, y, z = q if q[0] >= 0 else (-q[0], -q[1], -q[2], -q[3])  # angle in [0, pi]
    n = math.sqrt(x * x + y * y + z * z)
    if n < 1e-12:
        return np.zeros(3)
    k = 2.0 * math.atan2(n, w) / n
    return np.array([x * k, y * k, z * k])


def _limb_quat(rest, target):
    """Shortest-arc rotation turning unit `rest` onto `target`."""
    tn = math.sqrt(sum(t * t for t in target))
    b = [t / tn for t in target]
    axis = (rest[1] * b[2] - rest[2] * b[1], rest[2] * b[0] - rest[0] * b[2],
            rest[0] * b[1] - rest[1] * b[0])
    s, c = math.sqrt(sum(a * a for a in axis)), sum(r * t for r, t in zip(rest, b))
    if s < 1e-9:  # parallel, or opposite: turn about a perpendicular axis
        return (1.0, 0.0, 0.0, 0.0) if c > 0 else _quat((rest[2], rest[0], rest[1]), math.pi)
    return _quat([a / s for a in axis], math.atan2(s, c))


def _limb_rotvec(rest, target, twist_deg: float = 0.0) -> np.ndarray:
    """Axis-angle turning `rest` onto `target` (shortest arc), after a twist about `rest`."""
    q = _limb_quat(rest, target)
    if twist_deg:
        q = _qmul(q, _quat(rest, twist_deg * _D))
    return _rotvec(q)


def _direction(abd_deg: float, flex_deg: float) -> np.ndarray:
    """Left-limb direction: `abd` from straight down towards +x, `flex` from down towards
    the front (+z; 180 = overhead through the front). Legs and arms share it: arm (0, 0)
    hangs down and arm (90, 0) is the T-pose."""
    a, b = abd_deg * _D, flex_deg * _D
    return (math.sin(a), -math.cos(a) * math.cos(b), math.cos(a) * math.sin(b))


class PoseBuilder:
    """Accumulates a body pose from named, left-terms limb and spine parameters (degrees)."""

    def __init__(self) -> None:
        self.bp = np.zeros((NUM_BODY_POSE_JOINTS, 3))

    def _set(self, joint: str, side: float, rotvec_left: np.ndarray) -> None:
        name = ("left_" if side > 0 else "right_") + joint
        self.bp[_ROW[name]] = rotvec_left * (1.0, side, side)  # mirror y, z for the right

    def leg(self, side: float, flex: float = 0, abd: float = 0, knee: float = 0,
            twist: float = 0, ankle: float = 0) -> None:
        """Hip flexion forward, abduction outward, external twist, knee flexion, plantarflexion."""
        self._set("hip", side, _limb_rotvec(_LEG_REST, _direction(abd, flex), twist))
        self._set("knee", side, np.array([knee * _D, 0, 0]))
        self._set("ankle", side, np.array([ankle * _D, 0, 0]))

    def arm(self, side: float, abd: float, flex: float, elbow: float = 0,
            twist: float = 0) -> None:
        """Upper-arm direction (abduction/flexion from hanging down) and elbow flexion."""
        self._set("shoulder", side, _limb_rotvec(_ARM_REST, _direction(abd, flex), twist))
        self._set("elbow", side, np.array([0, -elbow * _D, 0]))

    def spine(self, flex: float = 0, twist: float = 0, bend: float = 0) -> None:
        """Whole-trunk forward flexion, twist and side bend, shared by the three segments."""
        for name, share in (("spine1", 0.35), ("spine2", 0.35), ("spine3", 0.30)):
            self.bp[_ROW[name]] = np.array([flex, twist, bend]) * share * _D

    def head(self, flex: float = 0, twist: float = 0, bend: float = 0) -> None:
        for name in ("neck", "head"):
            self.bp[_ROW[name]] = np.array([flex, twist, bend]) * 0.5 * _D


def orient(yaw: float = 0, pitch: float = 0, roll: float = 0, base=None) -> np.ndarray:
    """Global orientation R_y(yaw) R_x(pitch) R_z(roll) [base quaternion]; pitch > 0 leans forward."""
    q = _qmul(_qmul(_quat(_Y, yaw * _D), _quat(_X, pitch * _D)), _quat(_Z, roll * _D))
    return _rotvec(q if base is None else _qmul(q, base))


def _upright(u) -> np.ndarray:
    return orient(u(-25, 25), u(-4, 4), u(-4, 4))


def _relaxed_arms(p: PoseBuilder, u, sides=SIDES) -> None:
    for s in sides:
        p.arm(s, abd=u(6, 22), flex=u(-15, 25), elbow=u(5, 35), twist=u(-20, 20))


def _standing_legs(p: PoseBuilder, u, rng) -> None:
    bent = SIDES[rng.integers(2)]
    for s in SIDES:
        knee = u(0, 20) if s == bent else u(0, 5)
        p.leg(s, flex=u(-5, 5) + knee * 0.4, abd=u(0, 12), knee=knee, twist=u(-10, 15))


def standing(rng):
    u, p = rng.uniform, PoseBuilder()
    _standing_legs(p, u, rng)
    p.spine(u(-5, 10), u(-10, 10), u(-6, 6))
    p.head(u(-10, 20), u(-30, 30), u(-10, 10))
    r, raised = rng.random(), SIDES[rng.integers(2)]
    if r < 0.6:
        _relaxed_arms(p, u)
    elif r < 0.8:  # waving / phone / pointing with one arm
        p.arm(raised, abd=u(30, 100), flex=u(0, 60), elbow=u(60, 120))
        _relaxed_arms(p, u, (-raised,))
    else:  # hands in front, holding something
        for s in SIDES:
            p.arm(s, abd=u(5, 20), flex=u(20, 50), elbow=u(40, 90))
    return _upright(u), p.bp


def _gait(rng, hip_amp, hip_bias, knee_base, knee_amp, arm_amp, elbow, lean):
    u, p = rng.uniform, PoseBuilder()
    phase, ha, ka, aa = u(0, 2 * np.pi), u(*hip_amp), u(*knee_amp), u(*arm_amp)
    for s, ph in ((1.0, phase), (-1.0, phase + np.pi)):
        swing = max(0.0, np.cos(ph))  # the leg moving forward bends its knee
        p.leg(s, flex=hip_bias + ha * np.sin(ph), abd=u(0, 6), knee=knee_base + ka * swing,
              ankle=-10 * swing + 15 * max(0.0, -np.sin(ph)))
        # arms swing opposite to the leg of the same side
        p.arm(s, abd=u(6, 16), flex=5 - aa * np.sin(ph), elbow=u(*elbow))
    p.spine(u(*lean), 6 * np.sin(phase) + u(-4, 4), u(-4, 4))
    p.head(u(-5, 15), u(-20, 20), u(-5, 5))
    return orient(u(-25, 25), u(0, 5), u(-3, 3)), p.bp


def walking(rng):
    return _gait(rng, (18, 30), 5, 5, (40, 55), (12, 28), (10, 35), (0, 8))


def running(rng):
    return _gait(rng, (30, 45), 15, 20, (60, 100), (30, 50), (70, 100), (5, 15))


def sitting(rng):
    u, p = rng.uniform, PoseBuilder()
    extended = SIDES[rng.integers(2)] if rng.random() < 0.3 else 0.0
    for s in SIDES:
        p.leg(s, flex=u(75, 100), abd=u(3, 20), knee=u(20, 50) if s == extended else u(70, 105),
              twist=u(-10, 10), ankle=u(-10, 15))
    p.spine(u(-5, 20), u(-10, 10), u(-5, 5))
    p.head(u(-10, 25), u(-35, 35), u(-8, 8))
    r = rng.random()
    for s in SIDES:
        if r < 0.5:  # hands on the lap
            p.arm(s, abd=u(5, 15), flex=u(25, 50), elbow=u(40, 80))
        elif r < 0.8:  # on armrests / the seat
            p.arm(s, abd=u(10, 25), flex=u(0, 15), elbow=u(50, 90))
        else:  # typing / holding something up
            p.arm(s, abd=u(5, 25), flex=u(30, 60), elbow=u(70, 110))
    return orient(u(-25, 25), u(-15, 5), u(-4, 4)), p.bp


def crouching(rng):
    u, p = rng.uniform, PoseBuilder()
    for s in SIDES:
        hip = u(60, 110)
        # the shin leans forward from the ankle, so the knee flexes more than the hip
        p.leg(s, flex=hip, abd=u(10, 25), knee=min(140.0, hip + u(10, 40)), twist=u(0, 20),
              ankle=-u(8, 20))
    p.spine(u(10, 35), u(-10, 10), u(-5, 5))
    p.head(u(-30, 0), u(-25, 25), u(-5, 5))
    outside = rng.random() < 0.5  # hands outside the knees, or forward over them
    for s in SIDES:
        p.arm(s, abd=u(25, 45) if outside else u(5, 25), flex=u(20, 50) if outside else u(65, 100),
              elbow=u(10, 50))
    return _upright(u), p.bp


def reaching(rng):
    u, p = rng.uniform, PoseBuilder()
    kind = ("up", "forward", "side", "down")[rng.integers(4)]
    side = SIDES[rng.integers(2)]
    arms = SIDES if rng.random() < 0.35 else (side,)
    for s in arms:
        abd, flex = {"up": (u(10, 60), u(120, 175)), "forward": (u(0, 40), u(70, 110)),
                     "side": (u(70, 110), u(-10, 40)), "down": (u(0, 30), u(30, 70))}[kind]
        p.arm(s, abd=abd, flex=flex, elbow=u(0, 20))
    if len(arms) == 1:
        _relaxed_arms(p, u, (-side,))
    _standing_legs(p, u, rng)
    if kind == "up" and rng.random() < 0.5:  # on tiptoe
        for s in SIDES:
            p.bp[_ROW["left_ankle" if s > 0 else "right_ankle"], 0] = u(15, 40) * _D
    if kind == "down":  # bend both knees alike to pick something up, feet stay down
        flex, knee = u(10, 40), u(10, 40)
        for s in SIDES:
            p.leg(s, flex=flex + u(-3, 3), abd=u(0, 12), knee=knee + u(-3, 3))
    # lean towards the reach: +z bends the trunk towards the body's right (-x)
    lean = -side * u(0, 15) if len(arms) == 1 else 0.0
    p.spine(u(20, 45) if kind == "down" else u(-10, 10), -side * u(0, 25), lean)
    p.head(u(-25, 0) if kind == "up" else u(-5, 25), u(-20, 20), u(-5, 5))
    return _upright(u), p.bp


def lying(rng):
    u, p = rng.uniform, PoseBuilder()
    kind = ("supine", "prone", "side")[rng.choice(3, p=[0.45, 0.25, 0.3])]
    tip = {"supine": -90.0, "prone": 90.0, "side": -90.0}[kind]
    base = _qmul(_quat(_X, (tip + u(-5, 5)) * _D), _quat(_Y, u(-8, 8) * _D))
    if kind == "side":  # face sideways first, then tip over: lies on its left or right
        base = _qmul(_quat(_X, tip * _D), _quat(_Y, rng.choice([-0.5, 0.5]) * math.pi))
    go = orient(u(-180, 180), base=base)
    for s in SIDES:
        if kind == "side":
            p.leg(s, flex=u(20, 70), abd=u(0, 15), knee=u(30, 90))
            p.arm(s, abd=u(0, 30), flex=u(40, 100), elbow=u(20, 90))
        else:
            p.leg(s, flex=u(-5, 40), abd=u(0, 25), knee=u(0, 70), ankle=u(0, 30))
            p.arm(s, abd=u(10, 160), flex=u(-10, 40), elbow=u(0, 90))
    p.spine(u(-5, 15), u(-10, 10), u(-8, 8))
    turned = kind == "prone"  # face down means the head is turned to breathe
    p.head(u(-10, 10), (rng.choice([-1, 1]) * u(40, 70)) if turned else u(-30, 30), u(-10, 10))
    return go, p.bp


def dance(rng):
    u, p = rng.uniform, PoseBuilder()
    kind = ("arms_up", "leg_raise", "leg_side", "arabesque", "twist")[rng.integers(5)]
    s = SIDES[rng.integers(2)]
    go = _upright(u)
    if kind == "arms_up":
        for a in SIDES:
            p.arm(a, abd=u(110, 175), flex=u(-10, 40), elbow=u(0, 45))
        p.leg(s, flex=u(5, 30), abd=u(0, 10), knee=u(10, 40), ankle=u(0, 30))
        p.leg(-s, abd=u(0, 10), knee=u(0, 10), ankle=u(0, 30))
        p.spine(u(-10, 10), u(-20, 20), u(-15, 15))
    elif kind in ("leg_raise", "leg_side"):
        if kind == "leg_raise":
            p.leg(s, flex=u(45, 110), abd=u(0, 30), knee=u(0, 60), ankle=u(20, 50))
        else:
            p.leg(s, flex=u(0, 25), abd=u(30, 55), knee=u(0, 30), ankle=u(20, 50))
        p.leg(-s, abd=u(0, 8), knee=u(0, 15), ankle=u(0, 30))
        for a in SIDES:
            p.arm(a, abd=u(60, 130), flex=u(-10, 60), elbow=u(0, 40))
        p.spine(u(-10, 10), u(-15, 15), u(-10, 10))
    elif kind == "arabesque":
        pitch = u(20, 45)  # trunk leans forward; the standing hip flexes to stay vertical
        go = orient(u(-25, 25), pitch, u(-4, 4))
        p.leg(-s, flex=pitch + u(-5, 5), knee=u(0, 10), ankle=u(0, 20))
        p.leg(s, flex=-u(15, 30), abd=u(0, 15), knee=u(0, 20), ankle=u(20, 50))
        p.arm(-s, abd=u(0, 30), flex=u(100, 160), elbow=u(0, 20))
        p.arm(s, abd=u(60, 100), flex=u(-10, 30), elbow=u(0, 30))
        p.spine(u(-10, 0), u(-10, 10), u(-5, 5))
    else:
        for a in SIDES:
            p.arm(a, abd=u(20, 140), flex=u(-20, 120), elbow=u(0, 90))
            p.leg(a, flex=u(0, 30), abd=u(0, 20), knee=u(10, 40), ankle=u(0, 25))
        p.spine(u(-5, 15), u(-35, 35), u(-10, 10))
    p.head(u(-20, 15), u(-40, 40), u(-15, 15))
    return go, p.bp


def sport(rng):
    u, p = rng.uniform, PoseBuilder()
    kind = ("lunge", "kick", "throw", "jump", "cartwheel", "handstand")[
        rng.choice(6, p=[0.22, 0.2, 0.2, 0.18, 0.1, 0.1])]
    s = SIDES[rng.integers(2)]
    go = _upright(u)
    if kind == "lunge":
        hip = u(70, 95)
        p.leg(s, flex=hip, abd=u(0, 15), knee=hip + u(-5, 15))
        ext = u(10, 25)  # the back shin ends near horizontal with the toes down
        p.leg(-s, flex=-ext, abd=u(0, 10), knee=u(75, 100) - ext, ankle=u(20, 45))
        if rng.random() < 0.5:
            _relaxed_arms(p, u)
        else:
            for a in SIDES:
                p.arm(a, abd=u(0, 30), flex=u(120, 175), elbow=u(0, 30))
        p.spine(u(-5, 15), u(-10, 10), u(-5, 5))
    elif kind == "kick":
        p.leg(s, flex=u(50, 110), abd=u(0, 20), knee=u(0, 40), ankle=u(20, 50))
        p.leg(-s, abd=u(0, 10), knee=u(5, 25))
        for a in SIDES:
            p.arm(a, abd=u(40, 100), flex=u(-30, 40), elbow=u(20, 80))
        p.spine(-u(0, 10), u(-15, 15), u(-8, 8))
    elif kind == "throw":
        p.arm(s, abd=u(80, 110), flex=u(-40, 0), elbow=u(60, 110), twist=u(30, 60))
        p.arm(-s, abd=u(10, 40), flex=u(60, 100), elbow=u(10, 40))
        p.leg(-s, flex=u(20, 45), abd=u(5, 15), knee=u(20, 45))
        p.leg(s, flex=-u(5, 20), abd=u(5, 15), knee=u(5, 20), ankle=u(10, 30))
        p.spine(u(0, 15), s * u(15, 40), u(-10, 10))
    elif kind == "jump":
        for a in SIDES:
            p.leg(a, flex=u(10, 50), abd=u(0, 15), knee=u(20, 80), ankle=u(20, 45))
            p.arm(a, abd=u(0, 40), flex=u(110, 170), elbow=u(0, 40))
        p.spine(u(-10, 10), u(-10, 10), u(-5, 5))
        go = orient(u(-25, 25), u(-5, 10), u(-5, 5))
    else:  # inverted: cartwheel (turned over sideways) or handstand (over the front)
        if kind == "cartwheel":
            base = _quat(_Z, s * u(110, 180) * _D)
            for a in SIDES:
                p.arm(a, abd=u(150, 175), flex=u(-10, 20), elbow=u(0, 15))
                p.leg(a, flex=u(-10, 20), abd=u(30, 55), knee=u(0, 20))
        else:
            base = _quat(_X, (180 + u(-20, 20)) * _D)
            for a in SIDES:
                p.arm(a, abd=u(5, 20), flex=u(160, 178), elbow=u(0, 10))
                p.leg(a, flex=u(-20, 30), abd=u(0, 20), knee=u(0, 60), ankle=u(10, 40))
        go = orient(u(-180, 180), base=base)
        p.spine(u(-15, 5), u(-5, 5), u(-5, 5))
    p.head(u(-15, 15), u(-30, 30), u(-10, 10))
    return go, p.bp


def yoga(rng):
    u, p = rng.uniform, PoseBuilder()
    kind = ("tree", "warrior", "down_dog", "triangle", "seated_fold", "splits")[rng.integers(6)]
    s = SIDES[rng.integers(2)]
    go = _upright(u)
    if kind == "tree":  # foot against the inner standing leg, knee turned out
        p.leg(-s, abd=u(0, 5), knee=u(0, 5))
        p.leg(s, flex=u(10, 35), abd=u(35, 55), twist=u(40, 45), knee=u(110, 140))
        for a in SIDES:
            p.arm(a, abd=u(0, 20), flex=u(150, 178), elbow=u(0, 20))
    elif kind == "warrior":
        p.leg(s, flex=u(60, 90), abd=u(5, 20), knee=u(60, 95))
        p.leg(-s, flex=-u(10, 25), abd=u(15, 30), knee=u(0, 10), twist=u(-20, 0))
        overhead = rng.random() < 0.5
        for a in SIDES:
            p.arm(a, abd=u(0, 20) if overhead else u(75, 95),
                  flex=u(150, 178) if overhead else u(-15, 15), elbow=u(0, 15))
        p.spine(u(-10, 5), 0 if overhead else s * u(10, 30), u(-5, 5))
    elif kind == "down_dog":  # hands and feet on the floor, hips high
        pitch = u(95, 125)
        go = orient(u(-25, 25), pitch, u(-3, 3))
        for a in SIDES:
            p.leg(a, flex=pitch - u(15, 30), abd=u(0, 8), knee=u(0, 15), ankle=-u(0, 15))
            p.arm(a, abd=u(0, 20), flex=u(150, 178), elbow=u(0, 10))
        p.spine(-u(0, 10))
    elif kind == "triangle":  # wide stance, trunk bent sideways over the front leg
        for a in SIDES:
            p.leg(a, abd=u(30, 45), knee=u(0, 5), twist=u(-5, 15))
            p.arm(a, abd=u(75, 100), flex=u(-20, 20), elbow=u(0, 10))
        p.spine(u(0, 15), u(-10, 10), s * u(25, 34))
    elif kind == "seated_fold":
        fold = u(30, 80)
        for a in SIDES:
            p.leg(a, flex=u(80, 100), abd=u(0, 15), knee=u(0, 15))
            # arms reach along the legs: their angle to the trunk shrinks as it folds
            p.arm(a, abd=u(5, 20), flex=u(85, 110) - fold, elbow=u(0, 20))
        p.spine(fold, u(-5, 5), u(-5, 5))
    else:  # splits, not fully down
        p.leg(s, flex=u(70, 110), knee=u(0, 10), ankle=u(10, 40))
        p.leg(-s, flex=-u(20, 30), knee=u(0, 10), ankle=u(10, 40))
        for a in SIDES:
            p.arm(a, abd=u(60, 175), flex=u(-10, 40), elbow=u(0, 30))
    p.head(u(-20, 20), u(-25, 25), u(-8, 8))
    return go, p.bp


TEMPLATES: dict[str, Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "standing": standing, "walking": walking, "running": running, "sitting": sitting,
    "crouching": crouching, "reaching": reaching, "lying": lying, "dance": dance,
    "sport": sport, "yoga": yoga,
}

"""Pinhole cameras orbiting a posed body, and projection (CONTRACTS.md conventions).

OpenCV camera: x right, y down, z forward; `X_cam = R @ X_body + t`;
`K = [[f, 0, cx], [0, f, cy], [0, 0, 1]]`; pixel (u, v) with the centre of the top-left
pixel at (0, 0), so the image spans [-0.5, W - 0.5] and its centre is ((W-1)/2, (H-1)/2).

Placement: the camera sits on a sphere around a framing target (azimuth about the body's
y axis, 0 = in front of the body, which faces +z; elevation > 0 = above, looking down;
roll about the optical axis).  Distance rule, per sample:
  1. draw a nominal distance from `distance_range_m`;
  2. if the framed region then fills a fraction of the image inside the framing's
     `fill_ranges` entry (fill = max(projected width / W, projected height / H)), keep it;
  3. otherwise draw a fill inside that range and solve for the distance giving it;
  4. never come closer than `min_distance_m`, nor so close that any body point is within
     `near_clearance_m` of the camera plane;
  5. "full" framing only: back off until every body point projects inside the image;
  6. clamp to `distance_range_m`: the configured range is a hard bound that the
     pose_pool check enforces, so it wins over the framing fill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pd_assets.skeleton import SMPL_JOINTS

FRAMINGS: tuple[str, ...] = ("full", "partial", "closeup")
_UPPER_JOINTS = {"spine1", "spine2", "spine3", "neck", "head", "left_collar", "right_collar",
                 "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                 "left_wrist", "right_wrist"}
_HEAD_SHOULDER_JOINTS = {"spine3", "neck", "head", "left_collar", "right_collar",
                         "left_shoulder", "right_shoulder"}
_IS_UPPER = np.array([n in _UPPER_JOINTS for n in SMPL_JOINTS])
_IS_HEAD_SHOULDER = np.array([n in _HEAD_SHOULDER_JOINTS for n in SMPL_JOINTS])
_HEAD, _SPINE3 = SMPL_JOINTS.index("head"), SMPL_JOINTS.index("spine3")
# Fraction of the image the framed region fills: full body 60-90% (room around it),
# half body 80-100% (the other half leaves the image), head and shoulders 60-90%.
_DEFAULT_FILL = {"full": (0.6, 0.9), "partial": (0.8, 1.0), "closeup": (0.6, 0.9)}
_HEAD_TOP_M = 0.12  # SMPL head joint to the top of the skull, roughly


def _pair(name: str, value, positive: bool = False) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"camera config {name} must be a (low, high) pair, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or (positive and lo <= 0):
        need = "0 < low <= high" if positive else "low <= high"
        raise ValueError(f"camera config {name}={value!r}: need finite {need}")
    return lo, hi


@dataclass(frozen=True)
class CameraConfig:
    width: int = 512
    height: int = 512
    focal_range_px: tuple[float, float] | None = None  # absolute focal; overrides the fov
    fov_range_deg: tuple[float, float] = (35.0, 65.0)  # horizontal field of view
    # hard bounds: the framing solve moves the camera only inside them (a close-up at a
    # 65 deg field of view needs ~0.5 m; a full body at 35 deg up to ~4 m)
    distance_range_m: tuple[float, float] = (0.5, 8.0)
    elevation_range_deg: tuple[float, float] = (-10.0, 30.0)
    azimuth_range_deg: tuple[float, float] = (-180.0, 180.0)
    roll_range_deg: tuple[float, float] = (-5.0, 5.0)
    framing_weights: dict = field(default_factory=lambda: {"full": 0.7, "partial": 0.2, "closeup": 0.1})
    # Fraction of the image the framed region fills (missing framings take _DEFAULT_FILL).
    fill_ranges: dict = field(default_factory=lambda: dict(_DEFAULT_FILL))
    principal_jitter_px: float = 0.0  # principal point = centre + uniform(+-jitter)
    min_distance_m: float = 0.3
    near_clearance_m: float = 0.1

    def __post_init__(self) -> None:
        if int(self.width) < 2 or int(self.height) < 2:
            raise ValueError(f"camera width/height must be >= 2 px, got {self.width}x{self.height}")
        def fix(name: str, value, positive: bool = False) -> None:  # frozen: normalise in place
            object.__setattr__(self, name, _pair(name, value, positive))

        if self.focal_range_px is not None:
            fix("focal_range_px", self.focal_range_px, True)
        fix("fov_range_deg", self.fov_range_deg, True)
        if self.fov_range_deg[1] >= 170:
            raise ValueError(f"fov_range_deg={self.fov_range_deg}: a pinhole needs < 170 degrees")
        fix("distance_range_m", self.distance_range_m, True)
        fix("elevation_range_deg", self.elevation_range_deg)
        if max(abs(e) for e in self.elevation_range_deg) > 85:
            raise ValueError(f"elevation_range_deg={self.elevation_range_deg}: keep within +-85 "
                             "(straight above/below leaves the camera roll undefined)")
        fix("azimuth_range_deg", self.azimuth_range_deg)
        fix("roll_range_deg", self.roll_range_deg)
        unknown = sorted(set(self.framing_weights) - set(FRAMINGS))
        w = [float(self.framing_weights.get(f, 0.0)) for f in FRAMINGS]
        if unknown or not all(math.isfinite(x) for x in w) or min(w) < 0 or sum(w) <= 0:
            raise ValueError(f"framing_weights={self.framing_weights!r}: keys from {FRAMINGS}, "
                             "finite weights >= 0, not all 0")
        fills = {**_DEFAULT_FILL, **self.fill_ranges}  # framings left out keep the defaults
        object.__setattr__(self, "fill_ranges", {k: _pair(f"fill_ranges[{k}]", v, True)
                                                 for k, v in fills.items() if k in FRAMINGS})
        if self.principal_jitter_px < 0 or self.min_distance_m <= 0 or self.near_clearance_m <= 0:
            raise ValueError("principal_jitter_px must be >= 0, min_distance_m and "
                             "near_clearance_m > 0")

    @classmethod
    def method_amass(cls, **overrides) -> CameraConfig:
        """The method's AMASS render setting: 1024x1024, focal 890 px, principal point at
        the centre, body about 3 m away, random yaw, full body.  The fill range is wide so
        the 3 m distance holds unless the body would not fit in the image."""
        cfg = dict(width=1024, height=1024, focal_range_px=(890.0, 890.0),
                   distance_range_m=(3.0, 3.0), elevation_range_deg=(0.0, 0.0),
                   roll_range_deg=(0.0, 0.0), framing_weights={"full": 1.0},
                   fill_ranges={"full": (0.05, 0.95)})
        return cls(**{**cfg, **overrides})


@dataclass
class Camera:
    K: np.ndarray          # (3, 3) float64 intrinsics
    R: np.ndarray          # (3, 3) body -> camera rotation
    t: np.ndarray          # (3,) translation, X_cam = R @ X + t
    width: int
    height: int
    framing: str           # "full" | "partial" | "closeup"
    distance_m: float      # camera centre to the framing target
    focal_px: float
    azimuth_deg: float = 0.0
    elevation_deg: float = 0.0
    roll_deg: float = 0.0
    framed_region: str = "body"  # body | upper | lower | head_shoulders

    @property
    def center(self) -> np.ndarray:
        """Camera centre in the body frame (-R^T t)."""
        return -self.R.T @ self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return project_points(points, self.K, self.R, self.t)


def project_points(points: np.ndarray, K: np.ndarray, R: np.ndarray,
                   t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 2) and camera depth z (N,) of body/world points (N, 3).

    Points at or behind the camera plane (z <= 0) get NaN pixels.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    cam = pts @ np.asarray(R, np.float64).T + np.asarray(t, np.float64)
    z = cam[:, 2]
    ok = z > 0
    safe_z = np.where(ok, z, 1.0)
    img = cam @ np.asarray(K, np.float64).T
    uv = img[:, :2] / safe_z[:, None]
    uv[~ok] = np.nan
    return uv, z


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """R, t of a camera at `eye` looking at `target`; `up` maps to image up (-v)."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    fwd = target - eye
    if np.linalg.norm(fwd) < 1e-12:
        raise ValueError(f"look_at: eye {eye} and target {target} coincide")
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError(f"look_at: viewing direction {fwd} is parallel to up {up}; pick another up")
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd])
    return R, -R @ eye


def _roll_matrix(roll_rad: float) -> np.ndarray:
    c, s = math.cos(roll_rad), math.sin(roll_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _region(points: np.ndarray, joints: np.ndarray | None, framing: str,
            rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """The points the framing should fill, and the region's name."""
    if framing == "full":
        return points, "body"
    if joints is not None:
        # label each point by its nearest joint: parts follow the skeleton in any pose
        d2 = (points ** 2).sum(1)[:, None] - 2 * points @ joints.T + (joints ** 2).sum(1)[None]
        nearest = np.argmin(d2, axis=1)
        if framing == "closeup":
            head_dir = joints[_HEAD] - joints[_SPINE3]
            top = joints[_HEAD] + _HEAD_TOP_M * head_dir / max(np.linalg.norm(head_dir), 1e-9)
            return np.vstack([points[_IS_HEAD_SHOULDER[nearest]], top]), "head_shoulders"
        upper = _IS_UPPER[nearest]
        name = ("upper", "lower")[int(rng.integers(2))]
        sel = points[upper if name == "upper" else ~upper]
        return (sel if len(sel) else points), name
    # no joints: split along the main axis of the points (pointing up where it can)
    centred = points - points.mean(0)
    axis = np.linalg.eigh(centred.T @ centred)[1][:, -1]
    axis = axis if axis[1] >= 0 else -axis
    s = centred @ axis
    lo, hi = s.min(), s.max()
    if framing == "closeup":  # the top 30% of a standing body is head, shoulders, chest
        return points[s >= hi - 0.3 * (hi - lo)], "head_shoulders"
    name = ("upper", "lower")[int(rng.integers(2))]
    mid = 0.5 * (lo + hi)
    return points[s >= mid] if name == "upper" else points[s <= mid], name


def _fill(rel: np.ndarray, d: float, f: float, w: int, h: int) -> float:
    """Image fraction filled by points `rel` (camera frame, camera at the target) at distance d."""
    z = rel[:, 2] + d
    u, v = f * rel[:, 0] / z, f * rel[:, 1] / z
    return max((u.max() - u.min()) / w, (v.max() - v.min()) / h)


def _solve_distance(rel: np.ndarray, fill: float, f: float, w: int, h: int,
                    d_min: float) -> float:
    """Distance >= d_min where the fill equals `fill` (bisection in log-distance)."""
    lo, hi = d_min, max(2 * d_min, 1.0)
    while _fill(rel, hi, f, w, h) > fill and hi < 1e5:
        hi *= 2.0
    if _fill(rel, lo, f, w, h) <= fill:
        return lo
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if _fill(rel, mid, f, w, h) > fill else (lo, mid)
    return hi


def sample_camera(rng: np.random.Generator, cfg: CameraConfig, points_body: np.ndarray,
                  joints: np.ndarray | None = None) -> Camera:
    """A camera framing `points_body` ((N, 3) body-frame vertices or joints).

    `joints` ((22, 3) SMPL-order, same frame) locates the upper/lower body and head for
    "partial" and "closeup"; without it a 22-point input is taken as the joints, and any
    other input is split along its main axis (a heuristic).
    """
    pts = np.asarray(points_body, dtype=np.float64).reshape(-1, 3)
    if len(pts) == 0 or not np.all(np.isfinite(pts)):
        raise ValueError(f"sample_camera needs finite body points, got {len(pts)} point(s) "
                         "with NaN/inf or none; check the body model output")
    if joints is None and len(pts) == len(SMPL_JOINTS):
        joints = pts
    w, h = int(cfg.width), int(cfg.height)
    fw = np.array([float(cfg.framing_weights.get(f, 0.0)) for f in FRAMINGS])
    framing = FRAMINGS[int(rng.choice(len(FRAMINGS), p=fw / fw.sum()))]
    if cfg.focal_range_px is not None:
        focal = float(rng.uniform(*cfg.focal_range_px))
    else:
        focal = 0.5 * w / math.tan(0.5 * math.radians(rng.uniform(*cfg.fov_range_deg)))
    jitter = cfg.principal_jitter_px * rng.uniform(-1.0, 1.0, size=2)
    cx, cy = (w - 1) / 2.0 + jitter[0], (h - 1) / 2.0 + jitter[1]
    az, el, roll = (float(rng.uniform(*r)) for r in (
        cfg.azimuth_range_deg, cfg.elevation_range_deg, cfg.roll_range_deg))
    d_nominal = float(rng.uniform(*cfg.distance_range_m))
    fill_lo, fill_hi = cfg.fill_ranges[framing]

    region, region_name = _region(pts, None if joints is None else np.asarray(joints, float),
                                  framing, rng)
    target = 0.5 * (region.min(0) + region.max(0))
    a, e = math.radians(az), math.radians(el)
    direction = np.array([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)])
    R0, _ = look_at(target + direction, target)
    R = _roll_matrix(math.radians(roll)) @ R0
    # camera-frame coordinates with the camera at the target; at distance d they shift by +d in z
    rel_all, rel = (pts - target) @ R.T, (region - target) @ R.T
    d_min = max(cfg.min_distance_m, cfg.near_clearance_m - rel_all[:, 2].min())
    d = max(d_nominal, d_min)
    if not fill_lo <= _fill(rel, d, focal, w, h) <= fill_hi:
        d = _solve_distance(rel, float(rng.uniform(fill_lo, fill_hi)), focal, w, h, d_min)
    K = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
    if framing == "full":
        for _ in range(200):  # perspective and roll can push an edge out: back off
            z = rel_all[:, 2] + d
            u = focal * rel_all[:, 0] / z + cx
            v = focal * rel_all[:, 1] / z + cy
            if u.min() >= -0.5 and v.min() >= -0.5 and u.max() <= w - 0.5 and v.max() <= h - 0.5:
                break
            d *= 1.02
    # the configured distance range wins over the framing fill (a checked invariant)
    d_lo, d_hi = cfg.distance_range_m
    d = float(min(max(d, d_lo, d_min), max(d_hi, d_min)))
    t = -R @ (target + d * direction)
    return Camera(K=K, R=R, t=t, width=w, height=h, framing=framing, distance_m=float(d),
                  focal_px=focal, azimuth_deg=az, elevation_deg=el, roll_deg=roll,
                  framed_region=region_name)

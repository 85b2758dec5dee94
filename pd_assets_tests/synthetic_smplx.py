"""A small, format-correct stand-in for the licensed SMPLX_NEUTRAL.npz, for tests.

The body is procedural: a tube along every bone of SMPL-X's 55-joint tree (placed like a
T-posed adult, pelvis at about SMPL-X's height offset), a sphere for the head, each vertex
rigidly skinned to the joint that drives its bone. It has SMPL-X's 10475 vertices so every
vertex id the smplx package (and the adapter's COCO face keypoints) uses exists; the nose,
eye and ear ids are moved onto the matching spots of the head sphere. Every key the smplx
loader reads is present with SMPL-X's shapes (10 shape + 10 expression dirs, 486 pose dirs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NUM_SMPLX_VERTICES = 10475
SMPLX_PARENTS = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)
PELVIS_OFFSET = np.array([0.0, -0.35, 0.01])  # SMPL-X's pelvis is not at the origin either
# Left/centre joints relative to the pelvis (T-pose, metres); right ones are mirrored in x.
_HALF = {
    0: (0, 0, 0), 1: (0.06, -0.09, -0.01), 3: (0, 0.11, -0.02), 4: (0.10, -0.47, 0.0),
    6: (0, 0.24, 0.0), 7: (0.09, -0.87, -0.04), 9: (0, 0.30, 0.02), 10: (0.11, -0.93, 0.08),
    12: (0, 0.51, -0.02), 13: (0.07, 0.42, 0.0), 15: (0, 0.60, 0.03), 16: (0.17, 0.45, -0.02),
    18: (0.43, 0.45, -0.04), 20: (0.68, 0.45, -0.03), 22: (0, 0.58, 0.06),
    23: (0.03, 0.66, 0.09),
    # left hand: index, middle, pinky, ring, thumb (3 joints each)
    25: (0.77, 0.44, 0.02), 26: (0.805, 0.44, 0.02), 27: (0.83, 0.44, 0.02),
    28: (0.775, 0.44, 0.0), 29: (0.81, 0.44, 0.0), 30: (0.84, 0.44, 0.0),
    31: (0.755, 0.44, -0.04), 32: (0.775, 0.44, -0.04), 33: (0.79, 0.44, -0.04),
    34: (0.77, 0.44, -0.02), 35: (0.80, 0.44, -0.02), 36: (0.825, 0.44, -0.02),
    37: (0.71, 0.43, 0.03), 38: (0.735, 0.425, 0.055), 39: (0.76, 0.42, 0.075),
}
_MIRROR = {2: 1, 5: 4, 8: 7, 11: 10, 14: 13, 17: 16, 19: 18, 21: 20, 24: 23,
           **{40 + k: 25 + k for k in range(15)}}
_HEAD_RADIUS = 0.1
# Face keypoints (smplx.vertex_ids "smplx" ids) and where they sit on the head sphere.
_FACE_POINTS = {9120: (0.0, -0.02, 1.0), 9448: (0.35, 0.25, 0.9), 9929: (-0.35, 0.25, 0.9),
                6: (1.0, 0.05, 0.0), 616: (-1.0, 0.05, 0.0)}


def smplx_joints() -> np.ndarray:
    """(55, 3) T-pose joint positions of the synthetic body."""
    j = np.zeros((55, 3))
    for i, p in _HALF.items():
        j[i] = p
    for i, src in _MIRROR.items():
        j[i] = j[src] * (-1.0, 1.0, 1.0)
    return j + PELVIS_OFFSET


def _radius(child: int) -> float:
    if child >= 25:
        return 0.009  # finger
    return {1: 0.09, 2: 0.09, 3: 0.12, 6: 0.13, 9: 0.13, 12: 0.06, 13: 0.06, 14: 0.06,
            15: 0.05, 4: 0.075, 5: 0.075, 7: 0.05, 8: 0.05, 10: 0.04, 11: 0.04,
            16: 0.05, 17: 0.05, 18: 0.045, 19: 0.045, 20: 0.035, 21: 0.035,
            22: 0.02, 23: 0.01, 24: 0.01}[child]


def _tube(a, b, radius, rings, segs):
    """Open cylinder from a to b: vertices, quads as triangles, outward radial unit vectors."""
    axis = b - a
    length = np.linalg.norm(axis)
    d = axis / length
    helper = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(d, helper)
    u /= np.linalg.norm(u)
    w = np.cross(d, u)
    t = np.linspace(0.0, 1.0, rings)[:, None, None]
    ang = np.linspace(0.0, 2 * np.pi, segs, endpoint=False)[None, :, None]
    radial = np.cos(ang) * u + np.sin(ang) * w                      # (1, segs, 3)
    verts = (a + t * axis + radius * radial).reshape(-1, 3)
    r, s = np.meshgrid(np.arange(rings - 1), np.arange(segs), indexing="ij")
    v00, v01 = r * segs + s, r * segs + (s + 1) % segs
    v10, v11 = v00 + segs, v01 + segs
    faces = np.concatenate([np.stack([v00, v01, v11], -1).reshape(-1, 3),
                            np.stack([v00, v11, v10], -1).reshape(-1, 3)])
    return verts, faces, np.broadcast_to(radial, (rings, segs, 3)).reshape(-1, 3)


def _sphere(center, radius, n_lat, n_lon):
    lat = np.linspace(0, np.pi, n_lat + 2)[1:-1]
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    dirs = np.stack([np.sin(la) * np.sin(lo), np.cos(la), np.sin(la) * np.cos(lo)], -1)
    dirs = np.concatenate([dirs.reshape(-1, 3), [[0, 1, 0], [0, -1, 0]]])
    r, s = np.meshgrid(np.arange(n_lat - 1), np.arange(n_lon), indexing="ij")
    v00, v01 = r * n_lon + s, r * n_lon + (s + 1) % n_lon
    faces = [np.stack([v00, v01, v01 + n_lon], -1).reshape(-1, 3),
             np.stack([v00, v01 + n_lon, v00 + n_lon], -1).reshape(-1, 3)]
    top, bottom, last = n_lat * n_lon, n_lat * n_lon + 1, (n_lat - 1) * n_lon
    s = np.arange(n_lon)
    faces += [np.stack([np.full(n_lon, top), (s + 1) % n_lon, s], -1),
              np.stack([np.full(n_lon, bottom), last + s, last + (s + 1) % n_lon], -1)]
    return center + radius * dirs, np.concatenate(faces), dirs


def _orient_outward(verts, faces, outward):
    """Flip faces whose normal points against the mean outward direction of their vertices."""
    tri = verts[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = (normal * outward[faces].mean(1)).sum(1) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    return faces


def build_synthetic_smplx(num_vertices: int = NUM_SMPLX_VERTICES) -> dict[str, np.ndarray]:
    """The arrays of a synthetic SMPLX_*.npz (see the module docstring)."""
    if num_vertices < 10000:  # smplx's own vertex selector reads ids up to 9929
        raise ValueError(f"num_vertices={num_vertices}: SMPL-X vertex ids go up to 9929, "
                         f"use at least 10000 (SMPL-X has {NUM_SMPLX_VERTICES})")
    joints = smplx_joints()
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []  # verts, faces, out, joint
    for child in range(1, 55):
        parent = SMPLX_PARENTS[child]
        fine = child >= 22
        parts.append((*_tube(joints[parent], joints[child], _radius(child),
                             4 if fine else 12, 8 if fine else 20), parent))
    tips = [10, 11] + [25 + 3 * k + 2 for k in range(5)] + [40 + 3 * k + 2 for k in range(5)]
    for leaf in tips:  # toes and finger tips, driven by the last joint
        d = joints[leaf] - joints[SMPLX_PARENTS[leaf]]
        end = joints[leaf] + d / np.linalg.norm(d) * (0.1 if leaf < 25 else 0.02)
        parts.append((*_tube(joints[leaf], end, _radius(leaf), 3, 8), leaf))
    used = sum(len(p[0]) for p in parts)
    n_lon = 48
    n_lat = (num_vertices - used - 2) // n_lon
    if 0 < num_vertices - used - 2 - n_lat * n_lon < 3:
        n_lat -= 1  # leave at least a triangle's worth for the filler fan
    parts.append((*_sphere(joints[15] + (0, 0.05, 0.01), _HEAD_RADIUS, n_lat, n_lon), 15))
    rest = num_vertices - used - len(parts[-1][0])
    if rest:  # a small fan hidden inside the pelvis takes the remaining vertices
        ang = np.linspace(0, 2 * np.pi, rest, endpoint=False)
        fan = joints[0] + 0.03 * np.stack([np.cos(ang), np.zeros(rest), np.sin(ang)], -1)
        fan_faces = np.stack([np.zeros(rest - 2, int), np.arange(1, rest - 1),
                              np.arange(2, rest)], -1)
        parts.append((fan, fan_faces, np.tile([0.0, 1.0, 0.0], (rest, 1)), 0))

    verts, faces, outward, owner, offset = [], [], [], [], 0
    rings: dict[int, np.ndarray] = {}  # joint -> indices of the tube ring centred on it
    for child, (v, f, out, joint) in enumerate(parts[:54], start=1):
        segs = 8 if child >= 22 else 20
        start = sum(len(p[0]) for p in parts[:child - 1])
        rings[child] = start + np.arange(len(v) - segs, len(v))
        if child == 3:  # the pelvis: first ring of the pelvis -> spine1 tube
            rings[0] = start + np.arange(segs)
    for v, f, out, joint in parts:
        verts.append(v)
        faces.append(_orient_outward(v, f, out) + offset)
        outward.append(out)
        owner.append(np.full(len(v), joint))
        offset += len(v)
    verts, faces = np.concatenate(verts), np.concatenate(faces)
    outward, owner = np.concatenate(outward), np.concatenate(owner)

    # Move the face keypoint ids onto the nearest head-sphere vertex to their spot (swap rows).
    head = np.flatnonzero(owner == 15)
    center = joints[15] + (0, 0.05, 0.01)
    perm = np.arange(num_vertices)
    taken: set[int] = set()
    for vid, direction in _FACE_POINTS.items():
        target = center + _HEAD_RADIUS * np.asarray(direction) / np.linalg.norm(direction)
        order = head[np.argsort(np.linalg.norm(verts[head] - target, axis=1))]
        src = next(int(i) for i in order if i not in taken and i not in _FACE_POINTS)
        taken.add(src)
        perm[[vid, src]] = perm[[src, vid]]
    inverse = np.argsort(perm)
    verts, outward, owner = verts[perm], outward[perm], owner[perm]
    faces = inverse[faces]

    weights = np.zeros((num_vertices, 55))
    weights[np.arange(num_vertices), owner] = 1.0
    # J_regressor: each joint is the centroid of the tube ring centred on it (exact at rest).
    regressor = np.zeros((55, num_vertices))
    for j, ring in rings.items():
        regressor[j, inverse[ring]] = 1.0 / len(ring)

    # Shape space: 0 overall size, 1 height, 2 girth, 3-9 small smooth fields; 10-19 expressions.
    centred = verts - joints[0]
    shapedirs = np.zeros((num_vertices, 3, 20))
    shapedirs[:, :, 0] = 0.05 * centred
    shapedirs[:, 1, 1] = 0.04 * centred[:, 1]
    shapedirs[:, :, 2] = 0.01 * outward
    for k in range(3, 10):
        shapedirs[:, :, k] = 0.005 * np.sin((k + 1) * centred[:, [1, 2, 0]] * 3.0) * outward
    is_head = (owner == 15)[:, None]
    for k in range(10, 20):
        shapedirs[:, :, k] = is_head * 0.003 * np.cos(k * centred[:, [0, 1, 2]] * 20.0)

    head_faces = np.flatnonzero(np.isin(faces, head).all(1))
    rng = np.random.default_rng(0)
    kintree = np.stack([np.array(SMPLX_PARENTS), np.arange(55)]).astype(np.int64)
    kintree[0, 0] = 4294967295  # what the real files store for the root's parent
    return {
        "v_template": verts.astype(np.float64),
        "f": faces.astype(np.uint32),
        "shapedirs": shapedirs,
        "posedirs": np.zeros((num_vertices, 3, 54 * 9), dtype=np.float32),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": kintree,
        "hands_componentsl": np.eye(45), "hands_componentsr": np.eye(45),
        "hands_meanl": np.zeros(45), "hands_meanr": np.zeros(45),
        "lmk_faces_idx": rng.choice(head_faces, 51).astype(np.int64),
        "lmk_bary_coords": np.full((51, 3), 1.0 / 3.0),
        "dynamic_lmk_faces_idx": rng.choice(head_faces, (79, 17)).astype(np.int64),
        "dynamic_lmk_bary_coords": np.full((79, 17, 3), 1.0 / 3.0),
    }


def official_metadata() -> dict[str, np.ndarray]:
    """Object-dtype members like the official files' ``joint2num``/``part2num`` dicts: loading
    them needs pickle (``np.load(..., allow_pickle=True)``)."""
    return {"joint2num": np.array({"pelvis": 0, "left_hip": 1}, dtype=object),
            "part2num": np.array({"global": 0, "head": 1}, dtype=object)}


def write_synthetic_smplx_model(folder: str | Path, num_vertices: int = NUM_SMPLX_VERTICES,
                                gender: str = "neutral", *, with_metadata: bool = False,
                                drop: tuple[str, ...] = ()) -> Path:
    """Write ``folder/SMPLX_{GENDER}.npz`` (compressed, ~1 MB) and return its path.

    ``with_metadata`` adds the official files' pickled metadata members (official_metadata);
    ``drop`` leaves out the named keys (for tests of incomplete files).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"SMPLX_{gender.upper()}.npz"
    arrays = {k: v for k, v in build_synthetic_smplx(num_vertices).items() if k not in drop}
    if with_metadata:
        arrays.update(official_metadata())
    np.savez_compressed(path, **arrays)  # allow_pickle defaults to True: objects get pickled
    return path

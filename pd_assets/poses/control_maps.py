"""Skeleton control image, keypoint visibility from the rendered depth, PNG codecs.

PNG encoding uses Pillow at compress_level=1, the fastest measured option (512x512 PNCC:
3.2 ms and 18 KB at level 1, 5.7 ms and 11 KB at Pillow's default 6; OpenCV's encoder
is slower at every level). Encoding, not rendering, is the per-sample bottleneck.
"""

from __future__ import annotations

import colorsys
import io

import numpy as np
from PIL import Image, ImageDraw

from pd_assets.skeleton import COCO17_KEYPOINTS, COCO17_LIMBS

PNG_COMPRESS_LEVEL = 1
MAX_DEPTH_MM = 65535


def _hue_palette(n: int, value: float = 1.0) -> list[tuple[int, int, int]]:
    return [tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(i / n, 1.0, value))
            for i in range(n)]


# OpenPose style: one fully saturated hue per limb and per keypoint, limbs drawn at 60 %
# brightness (OpenPose blends limbs at alpha 0.6 onto black), joints at full brightness.
LIMB_COLORS = _hue_palette(len(COCO17_LIMBS), value=0.6)
KEYPOINT_COLORS = _hue_palette(len(COCO17_KEYPOINTS))

# How far inside the skin each COCO-17 keypoint sits when seen through its own body part
# (approximate adult limb radii at the joint, metres): the surface in front of a visible
# hip is the thigh/buttock, ~10 cm in front of the joint; a nose is on the surface.
COCO17_INNER_DEPTH_M = np.array([
    0.0, 0.01, 0.01, 0.02, 0.02,   # nose, eyes, ears
    0.06, 0.06, 0.04, 0.04,        # shoulders, elbows
    0.03, 0.03, 0.10, 0.10,        # wrists, hips
    0.05, 0.05, 0.04, 0.04,        # knees, ankles
], dtype=np.float64)


def draw_skeleton(keypoints2d: np.ndarray, visible: np.ndarray, width: int, height: int,
                  thickness: int | None = None) -> np.ndarray:
    """OpenPose-style skeleton on black, (H, W, 3) uint8.

    A limb of COCO17_LIMBS is drawn only when both its keypoints are visible; visible
    keypoints get a disc. `thickness` (line width in px) defaults to 4 px at 512 px,
    scaled with the image's shorter side.
    """
    kp = np.asarray(keypoints2d, dtype=np.float64)
    vis = np.asarray(visible, dtype=bool)
    if kp.shape != (len(COCO17_KEYPOINTS), 2) or vis.shape != (len(COCO17_KEYPOINTS),):
        raise ValueError(f"draw_skeleton needs COCO-17 keypoints (17, 2) and visible (17,), "
                         f"got {kp.shape} and {vis.shape}")
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    vis = vis & np.isfinite(kp).all(axis=1)
    if thickness is None:
        thickness = max(1, int(round(4 * min(width, height) / 512)))
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for (a, b), color in zip(COCO17_LIMBS, LIMB_COLORS):
        if vis[a] and vis[b]:
            draw.line([tuple(kp[a]), tuple(kp[b])], fill=color, width=thickness)
    radius = max(1.0, thickness * 0.9)
    for k in np.flatnonzero(vis):
        u, v = kp[k]
        draw.ellipse([u - radius, v - radius, u + radius, v + radius],
                     fill=KEYPOINT_COLORS[k])
    return np.asarray(image)


def keypoint_visibility(keypoints_cam: np.ndarray, K: np.ndarray, depth: np.ndarray,
                        width: int, height: int, tolerance_m: float = 0.04,
                        inner_depth_m: np.ndarray | float | None = None) -> np.ndarray:
    """(N,) bool: in the image, in front of the camera and not hidden by the body.

    Joints lie inside the body, so the rendered surface at a keypoint's pixel is always
    somewhat in front of it. That surface is the keypoint's own body part when it is in
    front by at most the part's radius at the joint (`inner_depth_m`, COCO-17 defaults in
    COCO17_INNER_DEPTH_M) plus `tolerance_m` for body shape and regressor offsets; a
    different part in front (the torso over the far hip, an arm across the face) adds its
    own thickness, typically 10-30 cm, and the keypoint counts as occluded. The farthest
    surface in the 3x3 pixel neighbourhood is used (background counts as infinitely far),
    so a keypoint right at an occluder's edge stays visible, as it would be to a detector.
    """
    pts = np.asarray(keypoints_cam, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"keypoints_cam must be (N, 3) camera-frame points, got {pts.shape}")
    depth = np.asarray(depth)
    if depth.shape != (height, width):
        raise ValueError(f"depth must be ({height}, {width}) like the image, got {depth.shape}")
    if inner_depth_m is None:
        if len(pts) != len(COCO17_KEYPOINTS):
            raise ValueError(f"inner_depth_m defaults to the COCO-17 table; pass it for "
                             f"{len(pts)} keypoints")
        inner_depth_m = COCO17_INNER_DEPTH_M
    inner = np.broadcast_to(np.asarray(inner_depth_m, dtype=np.float64), (len(pts),))
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3x3, got {K.shape}")

    z = pts[:, 2]
    in_front = np.isfinite(pts).all(axis=1) & (z > 1e-6)
    safe_z = np.where(in_front, z, 1.0)
    uvw = pts @ K.T
    u = np.floor(uvw[:, 0] / safe_z + 0.5)  # pixel whose centre is nearest (OpenCV centres)
    v = np.floor(uvw[:, 1] / safe_z + 0.5)
    inside = in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)

    visible = np.zeros(len(pts), dtype=bool)
    for i in np.flatnonzero(inside):
        ui, vi = int(u[i]), int(v[i])
        window = depth[max(vi - 1, 0):vi + 2, max(ui - 1, 0):ui + 2]
        if (window <= 0).any():  # background next to it: nothing covers it there
            visible[i] = True
        else:
            visible[i] = z[i] <= window.max() + inner[i] + tolerance_m
    return visible


def _encode(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def _check(name: str, arr: np.ndarray, ndim: int, channels: int | None) -> np.ndarray:
    arr = np.asarray(arr)
    ok = arr.ndim == ndim and (channels is None or arr.shape[-1] == channels)
    if not ok or arr.dtype != np.uint8:
        want = "(H, W)" if channels is None else f"(H, W, {channels})"
        raise ValueError(f"{name} needs a {want} uint8 array, got {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr)


def encode_png_rgb(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes."""
    return _encode(Image.fromarray(_check("encode_png_rgb", image, 3, 3)))


def encode_png_rgba(image: np.ndarray) -> bytes:
    """(H, W, 4) uint8 -> PNG bytes."""
    return _encode(Image.fromarray(_check("encode_png_rgba", image, 3, 4)))


def encode_png_gray8(image: np.ndarray) -> bytes:
    """(H, W) uint8 -> 8-bit grey PNG; a bool mask is written as 0/255."""
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return _encode(Image.fromarray(_check("encode_png_gray8", arr, 2, None)))


def encode_png_gray16(depth_m: np.ndarray) -> bytes:
    """(H, W) depth in metres -> 16-bit grey PNG in millimetres (0 = background).

    Depths beyond 65.535 m are clipped to 65535 mm.
    """
    d = np.asarray(depth_m, dtype=np.float32)  # float32 is exact to well under 1 mm here
    if d.ndim != 2:
        raise ValueError(f"encode_png_gray16 needs an (H, W) depth map, got {d.shape}")
    mm = np.rint(d * np.float32(1000.0))
    if not (mm >= 0).all():  # also catches NaN
        raise ValueError("depth_m must be >= 0 and not NaN (0 = background)")
    mm = np.minimum(mm, MAX_DEPTH_MM).astype(np.uint16)
    return _encode(Image.fromarray(mm))


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> array: (H, W, C) uint8 for RGB/RGBA, (H, W) uint8 for 8-bit grey,
    (H, W) uint16 for 16-bit grey."""
    with Image.open(io.BytesIO(data)) as image:
        if image.mode in ("I;16", "I;16B", "I"):
            return np.asarray(image).astype(np.uint16)
        if image.mode not in ("RGB", "RGBA", "L"):
            raise ValueError(f"unexpected PNG mode {image.mode}; expected one written by "
                             f"the encode_png_* functions")
        return np.asarray(image).copy()


def decode_depth_png(data: bytes) -> np.ndarray:
    """16-bit millimetre depth PNG -> (H, W) float32 metres (0 = background)."""
    mm = decode_png(data)
    if mm.dtype != np.uint16:
        raise ValueError(f"not a 16-bit depth PNG (decoded as {mm.dtype} {mm.shape})")
    return mm.astype(np.float32) / 1000.0

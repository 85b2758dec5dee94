"""Renderer and control-map tests on hand-built meshes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pd_assets.poses.control_maps import (
    COCO17_INNER_DEPTH_M, KEYPOINT_COLORS, LIMB_COLORS, decode_depth_png, decode_png,
    draw_skeleton, encode_png_gray8, encode_png_gray16, encode_png_rgb, encode_png_rgba,
    keypoint_visibility,
)
from pd_assets.poses.render import (
    Renderer, RenderError, ShadingParams, hair_vertices, pncc_colors, sample_shading,
)
from pd_assets.skeleton import BODY_PARTS, COCO17_LIMBS

W, H = 64, 48
K = np.array([[120.0, 0.0, 30.3], [0.0, 100.0, 22.7], [0.0, 0.0, 1.0]])


def project(points: np.ndarray, K: np.ndarray = K) -> np.ndarray:
    uvw = points @ K.T
    return uvw[:, :2] / uvw[:, 2:]


def pixel_centres(width: int = W, height: int = H) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width]
    return np.stack([u, v], -1).astype(np.float64)


def inside_convex(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Points strictly inside a convex polygon (either orientation)."""
    edges = np.roll(poly, -1, axis=0) - poly
    rel = pts[..., None, :] - poly
    cross = edges[:, 0] * rel[..., 1] - edges[:, 1] * rel[..., 0]
    return (cross > 0).all(-1) | (cross < 0).all(-1)


def distance_to_boundary(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a
    t = np.clip(((pts[..., None, :] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0, 1)
    closest = a + t[..., None] * ab
    return np.linalg.norm(pts[..., None, :] - closest, axis=-1).min(-1)


def quad(z: float = 2.0, angle: float = 0.5, half: float = 0.3, tilt: float = 0.0):
    """A square rotated in-plane by `angle`, centred on the optical axis, at depth z,
    optionally tilted about the x axis (z then varies with y)."""
    c, s = np.cos(angle), np.sin(angle)
    corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    xy = corners @ np.array([[c, s], [-s, c]])
    verts = np.column_stack([xy, np.full(4, z)])
    verts[:, 2] += np.tan(tilt) * verts[:, 1]
    return verts, np.array([[0, 1, 2], [0, 2, 3]])


def make_renderer(verts, faces, parts=None, width=W, height=H) -> Renderer:
    parts = np.ones(len(verts), int) if parts is None else parts
    return Renderer(width, height, faces, pncc_colors(verts),
                    parts)


def test_mask_matches_analytic_rasterisation():
    verts, faces = quad()
    with make_renderer(verts, faces) as r:
        out = r.render(verts, K)
    poly = project(verts)
    centres = pixel_centres()
    expected = inside_convex(poly, centres)
    wrong = out.mask != expected
    assert expected.sum() > 300
    # Only pixel centres on the boundary may differ: within 1 px as the contract allows,
    # and in fact within GL's sub-pixel precision (a half-pixel offset error would put
    # a whole row or column here).
    assert (distance_to_boundary(poly, centres[wrong]) <= 1.0).all()
    assert (distance_to_boundary(poly, centres[wrong]) <= 0.05).all()


def test_depth_is_camera_z_on_a_tilted_plane():
    verts, faces = quad(z=2.0, tilt=0.6, half=0.2)
    with make_renderer(verts, faces) as r:
        out = r.render(verts, K)
    # Plane through the quad: n . X = h; the ray through pixel (u, v) is z * K^-1 [u, v, 1].
    n = np.cross(verts[1] - verts[0], verts[2] - verts[0])
    h = n @ verts[0]
    centres = pixel_centres()
    rays = np.concatenate([centres, np.ones((H, W, 1))], -1) @ np.linalg.inv(K).T
    z_true = h / (rays @ n)
    interior = inside_convex(project(verts), centres) & out.mask
    assert interior.sum() > 100
    np.testing.assert_allclose(out.depth[interior], z_true[interior], rtol=1e-3)
    assert (out.depth[~out.mask] == 0).all()
    assert (out.pncc[~out.mask] == 0).all() and (out.normals[~out.mask] == 0).all()
    assert (out.parts[~out.mask] == 0).all()


@pytest.mark.parametrize("flip_winding", [False, True])
def test_plane_facing_camera_has_normal_minus_z(flip_winding):
    verts, faces = quad()
    if flip_winding:
        faces = faces[:, ::-1].copy()
    with make_renderer(verts, faces) as r:
        out = r.render(verts, K)
    decoded = out.normals[out.mask].astype(np.float64) / 255.0 * 2.0 - 1.0
    np.testing.assert_allclose(decoded, np.tile([0.0, 0.0, -1.0], (len(decoded), 1)),
                               atol=1.5 / 127.5)


def test_parts_are_flat_per_triangle():
    verts, _ = quad(angle=0.0)
    parts = np.array([3, 5, 7, 9])
    # First-vertex convention: a triangle takes the part of faces[:, 0].
    faces = np.array([[1, 2, 0], [3, 0, 2]])
    with make_renderer(verts, faces, parts) as r:
        out = r.render(verts, K)
    assert set(np.unique(out.parts[out.mask])) == {5, 9}
    poly = project(verts)
    centres = pixel_centres()
    tri_a = inside_convex(poly[[1, 2, 0]], centres)
    tri_b = inside_convex(poly[[3, 0, 2]], centres)
    diagonal = distance_to_boundary(poly[[0, 2]], centres) <= 1.0
    assert (out.parts[tri_a & ~diagonal] == 5).all()
    assert (out.parts[tri_b & ~diagonal] == 9).all()


def test_pncc_colors_hand_case():
    verts = np.array([[0.0, 0.0, 0.0], [2.0, 1.0, -1.0], [1.0, 3.0, 1.0]])
    expected = np.array([[0.0, 0.0, 0.5], [1.0, 1 / 3, 0.0], [0.5, 1.0, 1.0]])
    np.testing.assert_allclose(pncc_colors(verts), expected, atol=1e-7)
    flat = pncc_colors(np.array([[0.0, 1.0, 5.0], [1.0, 2.0, 5.0]]))
    np.testing.assert_allclose(flat[:, 2], 0.5)
    with pytest.raises(ValueError, match="canonical_vertices"):
        pncc_colors(np.zeros((4, 2)))


def random_blob(rng: np.random.Generator, rings: int = 12, segments: int = 16):
    """A closed star-shaped mesh with random radii (a noisy UV sphere)."""
    theta = np.linspace(0, np.pi, rings + 2)[1:-1]
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    dirs = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1)
    dirs = np.concatenate([[[0, 1, 0]], dirs.reshape(-1, 3), [[0, -1, 0]]])
    verts = dirs * rng.uniform(0.5, 1.0, (len(dirs), 1)) * np.array([0.3, 0.6, 0.2])
    idx = np.arange(rings * segments).reshape(rings, segments) + 1
    nxt = np.roll(idx, -1, axis=1)
    last = len(verts) - 1
    faces = np.concatenate([
        np.stack([np.zeros(segments, int), nxt[0], idx[0]], -1),
        np.stack([idx[:-1], nxt[:-1], nxt[1:]], -1).reshape(-1, 3),
        np.stack([idx[:-1], nxt[1:], idx[1:]], -1).reshape(-1, 3),
        np.stack([np.full(segments, last), idx[-1], nxt[-1]], -1),
    ])
    return verts, faces


def test_projected_vertices_fall_on_the_mask():
    rng = np.random.default_rng(7)
    verts, faces = random_blob(rng)
    parts = rng.integers(1, len(BODY_PARTS), len(verts))
    Kr = np.array([[150.0, 0.0, 47.2], [0.0, 150.0, 33.9], [0.0, 0.0, 1.0]])
    renderer = Renderer(96, 80, faces, pncc_colors(verts), parts)
    for trial in range(3):
        a = rng.normal(size=3)
        angle = np.linalg.norm(a)
        kx = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]]) / angle
        R = np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx
        cam = verts @ R.T + np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), 2.5])
        out = renderer.render(cam, Kr)
        grown = out.mask.copy()  # dilate by one pixel (3x3)
        padded = np.pad(out.mask, 1)
        for dv in range(3):
            for du in range(3):
                grown |= padded[dv:dv + 80, du:du + 96]
        uv = np.rint(project(cam, Kr)).astype(int)
        ok = (uv[:, 0] >= 0) & (uv[:, 0] < 96) & (uv[:, 1] >= 0) & (uv[:, 1] < 80)
        assert ok.all()
        assert grown[uv[:, 1], uv[:, 0]].mean() >= 0.99
    renderer.release()


def test_shaded_uses_part_albedo_and_mask_alpha():
    verts, faces = quad()
    parts = np.full(4, BODY_PARTS.index("torso"))
    shading = ShadingParams(skin_rgb=(0.8, 0.6, 0.5), top_rgb=(0.2, 0.4, 0.6),
                            bottom_rgb=(0.1, 0.1, 0.1), shoe_rgb=(0.0, 0.0, 0.0),
                            light_dir_cam=np.array([0.0, 0.0, -1.0]), ambient=0.0)
    with make_renderer(verts, faces, parts) as r:
        out = r.render(verts, K, shading)
        no_shading = r.render(verts, K)
    assert no_shading.shaded is None
    assert (out.shaded[..., 3] == np.where(out.mask, 255, 0)).all()
    # Light from the camera onto a plane facing it: full Lambert, colour = albedo.
    np.testing.assert_allclose(out.shaded[out.mask][:, :3], np.tile([51, 102, 153], (
        out.mask.sum(), 1)), atol=2)
    assert (out.shaded[~out.mask] == 0).all()
    params = sample_shading(np.random.default_rng(0))
    assert params.part_albedo().shape == (len(BODY_PARTS), 3)


HEAD, TORSO = BODY_PARTS.index("head"), BODY_PARTS.index("torso")


def test_hair_covers_the_crown_and_the_back_of_the_skull_not_the_face_or_neck():
    # A head box in the SMPL frame (y up, facing +z): y 0..1, z 0..1, plus a torso vertex
    # above it that must never be hair whatever its position.
    pts = np.array([
        [0.0, 0.90, 0.90],  # crown, front: up 0.90 > 0.78
        [0.0, 0.50, 0.20],  # back of the skull: up 0.5 > 0.3, forward 0.2 < 0.55
        [0.0, 0.50, 0.90],  # the face: forward 0.9
        [0.0, 0.10, 0.10],  # the nape below the hairline (the neck): up 0.1
        [0.0, 0.0, 0.0], [0.0, 1.0, 1.0],  # the head's extent
        [0.0, 0.95, 0.10],  # torso
    ])
    parts = np.array([HEAD] * 6 + [TORSO])
    np.testing.assert_array_equal(hair_vertices(pts, parts),
                                  [True, True, False, False, False, True, False])
    # Fractions of the head's own extent: scaling and moving the mesh changes nothing.
    np.testing.assert_array_equal(hair_vertices(pts * 3.0 + 5.0, parts), hair_vertices(pts, parts))
    assert not hair_vertices(pts, np.full(7, TORSO)).any()  # no head, no hair
    with pytest.raises(ValueError, match="canonical_vertices"):
        hair_vertices(pts, parts[:3])
    with pytest.raises(ValueError, match="canonical_vertices"):
        hair_vertices(np.full((7, 3), np.nan), parts)


def _head_quad_render(hair: np.ndarray, **shading_kw):
    verts, faces = quad(angle=0.0)
    shading = ShadingParams(skin_rgb=(0.8, 0.6, 0.4), top_rgb=(0.2, 0.4, 0.6),
                            bottom_rgb=(0.1, 0.1, 0.1), shoe_rgb=(0.0, 0.0, 0.0),
                            light_dir_cam=np.array([0.0, 0.0, -1.0]), ambient=0.0,
                            **{"hair_rgb": (0.2, 0.1, 0.05), **shading_kw})
    with Renderer(W, H, faces, pncc_colors(verts), np.full(4, HEAD), vertex_hair=hair) as r:
        out = r.render(verts, K, shading)
    return out


def test_hair_vertices_take_the_hair_colour_shaded_like_skin():
    # Full Lambert onto a plane facing the light: the colour is the albedo itself.
    out = _head_quad_render(np.ones(4, bool))
    np.testing.assert_allclose(out.shaded[out.mask][:, :3], np.tile([51, 26, 13], (out.mask.sum(), 1)),
                               atol=2)
    bald = _head_quad_render(np.ones(4, bool), hair_rgb=None)
    np.testing.assert_allclose(bald.shaded[bald.mask][:, :3], np.tile([204, 153, 102], (
        bald.mask.sum(), 1)), atol=2)
    hooded = _head_quad_render(np.ones(4, bool), skin_parts=("left_hand",))  # head not bare
    np.testing.assert_allclose(hooded.shaded[hooded.mask][:, :3], np.tile([51, 102, 153], (
        hooded.mask.sum(), 1)), atol=2)
    # Hair on the left corners (x < 0) only: the hairline is the quad's vertical midline.
    verts, _ = quad(angle=0.0)
    half = _head_quad_render(verts[:, 0] < 0)
    centre_u = project(np.array([[0.0, 0.0, 2.0]]))[0, 0]
    u = pixel_centres()[..., 0]
    hair_px = half.mask & (u < centre_u - 1.5)
    skin_px = half.mask & (u > centre_u + 1.5)
    assert hair_px.sum() > 100 and skin_px.sum() > 100
    np.testing.assert_allclose(half.shaded[hair_px][:, :3], np.tile([51, 26, 13], (hair_px.sum(), 1)), atol=2)
    np.testing.assert_allclose(half.shaded[skin_px][:, :3], np.tile([204, 153, 102], (skin_px.sum(), 1)), atol=2)
    # Hair is shading only: every other map is what a hairless render gives.
    bare = _head_quad_render(np.zeros(4, bool))
    for name in ("pncc", "normals", "parts", "depth", "mask"):
        np.testing.assert_array_equal(getattr(half, name), getattr(bare, name))


def test_sampled_hair_is_a_natural_colour():
    colours = np.array([sample_shading(np.random.default_rng(s)).hair_rgb for s in range(200)])
    assert colours.shape == (200, 3) and (colours >= 0).all() and (colours <= 1).all()
    # Mostly dark: black and brown make up 80 % of the draws.
    assert 0.6 < (colours.mean(axis=1) < 0.3).mean() < 0.95


def test_renderer_rejects_bad_inputs():
    verts, faces = quad()
    r = make_renderer(verts, faces)
    with pytest.raises(ValueError, match="vertices_cam"):
        r.render(verts[:3], K)
    with pytest.raises(ValueError, match="K must be"):
        r.render(verts, np.eye(2))
    r.release()
    with pytest.raises(RenderError, match="release"):
        r.render(verts, K)
    with pytest.raises(ValueError, match="vertex_parts"):
        Renderer(W, H, faces, np.zeros((4, 3)), np.array([0, 1, 2, 99]))
    with pytest.raises(ValueError, match="vertex_hair"):
        Renderer(W, H, faces, np.zeros((4, 3)), np.ones(4, int), vertex_hair=np.ones(3, bool))


def test_missing_egl_names_the_packages(monkeypatch):
    import moderngl

    from pd_assets.poses import render

    def no_egl(**kwargs):
        raise Exception("eglGetDisplay failed")

    monkeypatch.setattr(render, "_CONTEXT", None)
    monkeypatch.setattr(moderngl, "create_context", no_egl)
    with pytest.raises(RenderError, match="libegl1 libegl-mesa0 libgl1-mesa-dri"):
        render.shared_context()


def test_skeleton_draws_visible_limbs_only():
    kp = np.full((17, 2), np.nan)
    kp[5], kp[6], kp[7] = (10.0, 30.0), (50.0, 30.0), (30.0, 5.0)
    visible = np.zeros(17, bool)
    visible[[5, 6]] = True
    img = draw_skeleton(kp, visible, W, H, thickness=3)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    limb = COCO17_LIMBS.index((5, 6))
    np.testing.assert_array_equal(img[30, 16:45], np.tile(LIMB_COLORS[limb], (29, 1)))
    np.testing.assert_array_equal(img[30, 10], KEYPOINT_COLORS[5])
    # Keypoint 7 is invisible: neither limb (5, 7) nor its disc is drawn.
    assert not img[:25].any()
    assert not img[40:].any()


def test_keypoint_visibility_with_an_occluding_square():
    verts, faces = quad(z=2.0, angle=0.0, half=0.2)
    with make_renderer(verts, faces) as r:
        depth = r.render(verts, K).depth
    points = np.array([
        [0.0, 0.0, 2.5],    # behind the square: hidden
        [0.0, 0.0, 1.5],    # in front of it
        [0.0, 0.0, 2.03],   # just behind the surface, within the tolerance
        [2.0, 0.0, 10.0],   # beside the square, nothing in front
        [5.0, 0.0, 2.0],    # outside the image
        [0.0, 0.0, -1.0],   # behind the camera
    ])
    vis = keypoint_visibility(points, K, depth, W, H, tolerance_m=0.04, inner_depth_m=0.0)
    np.testing.assert_array_equal(vis, [False, True, True, True, False, False])
    # A joint's own limb radius (inner_depth_m) widens the allowance: 0.2 m behind the
    # surface is hidden without it and visible with it.
    joint = np.array([[0.0, 0.0, 2.2]])
    assert not keypoint_visibility(joint, K, depth, W, H, inner_depth_m=0.0).any()
    assert keypoint_visibility(joint, K, depth, W, H, inner_depth_m=0.2).all()
    assert len(COCO17_INNER_DEPTH_M) == 17
    with pytest.raises(ValueError, match="inner_depth_m"):
        keypoint_visibility(points, K, depth, W, H)


def test_png_round_trips():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    gray = rng.integers(0, len(BODY_PARTS), (H, W), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(encode_png_rgb(rgb)), rgb)
    np.testing.assert_array_equal(decode_png(encode_png_rgba(rgba)), rgba)
    np.testing.assert_array_equal(decode_png(encode_png_gray8(gray)), gray)
    mask = gray > 5
    np.testing.assert_array_equal(decode_png(encode_png_gray8(mask)), mask * 255)

    depth = rng.uniform(0.3, 12.0, (H, W)).astype(np.float32)
    depth[:10] = 0.0
    depth[-1, -1] = 80.0  # beyond 65.535 m: clipped
    back = decode_depth_png(encode_png_gray16(depth))
    assert back.dtype == np.float32 and back.shape == (H, W)
    assert (back[:10] == 0).all()
    assert back[-1, -1] == pytest.approx(65.535)
    ok = depth < 65.0
    assert np.abs(back[ok] - depth[ok]).max() <= 0.0005 + 1e-6
    with pytest.raises(ValueError, match="uint8"):
        encode_png_rgb(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="depth_m"):
        encode_png_gray16(-depth)

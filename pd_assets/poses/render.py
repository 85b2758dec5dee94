"""Offscreen rasteriser for the control maps (PNCC, depth, normals, parts, shaded).

One moderngl EGL context per process (Mesa llvmpipe on CPU machines, the NVIDIA EGL
driver on GPU machines). All outputs come from one draw pass into four colour
attachments (MRT), then one readback each:

    0  RGBA8  pncc.rgb, alpha = part index / 255 (exact in UNORM8)
    1  RGBA8  encoded camera-frame normal (n + 1) / 2, alpha = 1
    2  RGBA8  shaded body (hair on the head vertices `hair_vertices` marks), alpha = 1
    3  R32F   camera z in metres (perspective-correct, so exact on planar triangles)

Cleared to zero, so background is 0 everywhere. No MSAA: the maps are labels.

Projection: the GL matrix is built from the OpenCV K so that camera point (x, y, z) lands
at window coordinates (u + 0.5, v + 0.5), with u = fx x/z + s y/z + cx and
v = fy y/z + cy. GL samples pixel (i, j) at its centre (i + 0.5, j + 0.5), so a vertex at
(u, v) lands in pixel (round(u), round(v)), the OpenCV pixel-centre convention. We do not
flip y: window row j is image row v = j, and glReadPixels returns window row 0 first,
so row 0 of every array is the top of the image without a copy. This mirrors the
winding, which is harmless because nothing is culled.

Parts are a `flat` varying: a triangle takes the part of its first vertex
(`faces[:, 0]`, first-vertex provoking convention), so labels never blend across parts.
"""

from __future__ import annotations

import colorsys
import os
from dataclasses import dataclass, field

import numpy as np

from pd_assets.skeleton import BODY_PARTS

NUM_PARTS = len(BODY_PARTS)
DEFAULT_SKIN_PARTS: tuple[str, ...] = (
    "head", "left_forearm", "right_forearm", "left_hand", "right_hand",
)
# Parts not in `skin_parts` are clothed: everything above the hips in the top's colour
# (a hood or gloves when head or hands are not bare), legs in the bottom's, feet in shoes.
_TOP_PARTS = ("head", "torso", "left_upper_arm", "right_upper_arm", "left_forearm",
              "right_forearm", "left_hand", "right_hand")
_BOTTOM_PARTS = ("left_thigh", "right_thigh", "left_shin", "right_shin")
_SHOE_PARTS = ("left_foot", "right_foot")
# Monk Skin Tone scale (Google, 10 swatches, light to deep), sRGB.
_MONK_SKIN_TONES = np.array([
    (0xF6, 0xED, 0xE4), (0xF3, 0xE7, 0xDB), (0xF7, 0xEA, 0xD0), (0xEA, 0xDA, 0xBA),
    (0xD7, 0xBD, 0x96), (0xA0, 0x7E, 0x56), (0x82, 0x5C, 0x43), (0x60, 0x41, 0x34),
    (0x3A, 0x31, 0x2A), (0x29, 0x24, 0x20),
], dtype=np.float64) / 255.0

_EGL_HINT = ("install the Debian packages libegl1 libegl-mesa0 libgl1-mesa-dri "
             "(`make setup` does this) or run on a machine with an EGL driver")


class RenderError(RuntimeError):
    """The renderer cannot run: no EGL/OpenGL context, or used after release()."""


@dataclass
class RenderOutput:
    pncc: np.ndarray            # (H, W, 3) uint8
    depth: np.ndarray           # (H, W) float32, camera z in metres, 0 = background
    normals: np.ndarray         # (H, W, 3) uint8, (n + 1) / 2 * 255, 0 = background
    parts: np.ndarray           # (H, W) uint8, index into BODY_PARTS, 0 = background
    mask: np.ndarray            # (H, W) bool
    shaded: np.ndarray | None   # (H, W, 4) uint8 RGBA, alpha = mask; None if not asked


@dataclass
class ShadingParams:
    """Albedos (sRGB floats in [0, 1]) and one directional light plus ambient.

    `light_dir_cam` points from the surface *towards* the light, in the OpenCV camera
    frame (so (0, 0, -1) is a light at the camera). Parts in `skin_parts` get skin,
    the other parts their clothing colour (upper body: top; legs: bottom; feet: shoes).
    """

    skin_rgb: tuple[float, float, float]
    top_rgb: tuple[float, float, float]
    bottom_rgb: tuple[float, float, float]
    shoe_rgb: tuple[float, float, float]
    light_dir_cam: np.ndarray
    ambient: float = 0.35
    skin_parts: tuple[str, ...] = field(default=DEFAULT_SKIN_PARTS)
    hair_rgb: tuple[float, float, float] | None = None  # None: a bald head, all skin

    def hair_albedo(self) -> tuple[float, float, float] | None:
        """The hair colour, or None when the head is bald or not bare (a hood covers it)."""
        if self.hair_rgb is None or "head" not in self.skin_parts:
            return None
        return _as_rgb("hair_rgb", self.hair_rgb)

    def part_albedo(self) -> np.ndarray:
        """(NUM_PARTS, 3) float32 albedo per BODY_PARTS index (background black)."""
        unknown = set(self.skin_parts) - set(BODY_PARTS)
        if unknown:
            raise ValueError(f"ShadingParams.skin_parts has unknown parts {sorted(unknown)}; "
                             f"use names from skeleton.BODY_PARTS")
        table = np.zeros((NUM_PARTS, 3), dtype=np.float32)
        for names, attr in ((_TOP_PARTS, "top_rgb"), (_BOTTOM_PARTS, "bottom_rgb"),
                            (_SHOE_PARTS, "shoe_rgb"), (self.skin_parts, "skin_rgb")):
            rgb = _as_rgb(attr, getattr(self, attr))
            for name in names:
                table[BODY_PARTS.index(name)] = rgb
        return table


def _clothing_rgb(rng: np.random.Generator, max_value: float = 0.95) -> tuple[float, float, float]:
    if rng.random() < 0.3:  # neutrals (black, grey, white) are common in clothing
        return colorsys.hsv_to_rgb(0.0, 0.0, rng.uniform(0.08, max_value))
    return colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.25, 0.85),
                               rng.uniform(0.2, max_value))


# Natural hair colours (sRGB) and how often they are drawn: black and browns dominate.
_HAIR_COLOURS = np.array([
    (0.09, 0.07, 0.06), (0.22, 0.15, 0.10), (0.40, 0.27, 0.17), (0.76, 0.63, 0.42),
    (0.52, 0.24, 0.12), (0.62, 0.61, 0.58),
], dtype=np.float64)
_HAIR_WEIGHTS = np.array([0.35, 0.30, 0.15, 0.10, 0.05, 0.05])


def sample_shading(rng: np.random.Generator) -> ShadingParams:
    """Skin tone across the whole Monk scale, random clothing and hair, a light from the front half."""
    pos = rng.uniform(0.0, len(_MONK_SKIN_TONES) - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, len(_MONK_SKIN_TONES) - 1)
    skin = (1 - (pos - lo)) * _MONK_SKIN_TONES[lo] + (pos - lo) * _MONK_SKIN_TONES[hi]
    skin = np.clip(skin * rng.uniform(0.95, 1.05, size=3), 0.0, 1.0)
    # Light: azimuth within +-70 deg of the camera axis, 5-60 deg above the horizon.
    az = np.deg2rad(rng.uniform(-70.0, 70.0))
    el = np.deg2rad(rng.uniform(5.0, 60.0))
    light = np.array([np.sin(az) * np.cos(el), -np.sin(el), -np.cos(az) * np.cos(el)])
    return ShadingParams(
        skin_rgb=tuple(float(c) for c in skin),
        top_rgb=_clothing_rgb(rng),
        bottom_rgb=_clothing_rgb(rng),
        shoe_rgb=_clothing_rgb(rng, max_value=0.6),
        light_dir_cam=light,
        ambient=float(rng.uniform(0.25, 0.5)),
        # drawn last, so every other draw is what it was before hair existed
        hair_rgb=tuple(float(c) for c in np.clip(
            _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS)]
            * rng.uniform(0.9, 1.1, size=3), 0.0, 1.0)),
    )


def pncc_colors(canonical_vertices: np.ndarray) -> np.ndarray:
    """Per-vertex PNCC colours: each axis min-max normalised to [0, 1], x->R, y->G, z->B.

    `canonical_vertices` (V, 3) is the canonical (A-pose) mesh. An axis with no extent
    maps to 0.5. Returns float32 (V, 3).
    """
    v = np.asarray(canonical_vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or not np.isfinite(v).all():
        raise ValueError(f"canonical_vertices must be a finite (V, 3) array, got shape "
                         f"{v.shape}")
    lo, hi = v.min(axis=0), v.max(axis=0)
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    out = np.where(span > 0, (v - lo) / safe, 0.5)
    return out.astype(np.float32)


def hair_vertices(canonical_vertices: np.ndarray, vertex_parts: np.ndarray) -> np.ndarray:
    """Head vertices a short haircut covers: the back of the skull and the crown.

    Hair is what tells a head seen from behind from one facing the camera (the face is
    skin, the back of the head is not), in photos and for pose detectors trained on them.
    `canonical_vertices` (V, 3) is the canonical mesh in the SMPL body frame (y up, facing
    +z); fractions are of the head part's own extent, so any body model's head works:
    the crown is its top 22 %, the back of the skull its rear 55 % above the lowest 30 %
    (the neck). Returns bool (V,).
    """
    v = np.asarray(canonical_vertices, dtype=np.float64)
    parts = np.asarray(vertex_parts)
    if v.ndim != 2 or v.shape[1] != 3 or parts.shape != (len(v),) or not np.isfinite(v).all():
        raise ValueError(f"canonical_vertices must be a finite (V, 3) array and vertex_parts "
                         f"(V,), got {v.shape} and {parts.shape}")
    head = parts == BODY_PARTS.index("head")
    hair = np.zeros(len(v), bool)
    if head.sum() < 4:
        return hair
    lo, hi = v[head].min(axis=0), v[head].max(axis=0)
    rel = (v - lo) / np.where(hi > lo, hi - lo, 1.0)
    up, forward = rel[:, 1], rel[:, 2]
    hair[head] = (up[head] > 0.78) | ((up[head] > 0.30) & (forward[head] < 0.55))
    return hair


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted per-vertex normals (V, 3) float32, following the face winding."""
    v = vertices.astype(np.float32, copy=False)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    idx = faces.reshape(-1)
    n = np.empty_like(v)
    for axis in range(3):  # bincount is several times faster than np.add.at here
        n[:, axis] = np.bincount(idx, weights=np.repeat(fn[:, axis], 3), minlength=len(v))
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.maximum(length, 1e-20)


def projection_matrix(K: np.ndarray, width: int, height: int,
                      near: float, far: float) -> np.ndarray:
    """GL clip matrix (4x4, column-vector convention) for an OpenCV K; see module doc."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must be a finite 3x3 intrinsics matrix with fx, fy > 0, got {K!r}")
    fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    P = np.zeros((4, 4), dtype=np.float64)
    P[0, 0], P[0, 1], P[0, 2] = 2 * fx / width, 2 * s / width, 2 * (cx + 0.5) / width - 1
    P[1, 1], P[1, 2] = 2 * fy / height, 2 * (cy + 0.5) / height - 1
    P[2, 2], P[2, 3] = (far + near) / (far - near), -2 * far * near / (far - near)
    P[3, 2] = 1.0
    return P


_VERTEX_SHADER = """
#version 330
uniform mat4 P;
in vec3 in_pos; in vec3 in_normal; in vec3 in_color; in float in_part; in float in_hair;
out vec3 v_pos; out vec3 v_normal; out vec3 v_color; flat out float v_part; out float v_hair;
void main() {
    v_pos = in_pos; v_normal = in_normal; v_color = in_color; v_part = in_part; v_hair = in_hair;
    gl_Position = P * vec4(in_pos, 1.0);
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform vec3 albedo[%d];
uniform vec3 light_dir;
uniform float ambient;
uniform vec3 hair_rgb;
uniform float hair_on;
in vec3 v_pos; in vec3 v_normal; in vec3 v_color; flat in float v_part; in float v_hair;
layout(location = 0) out vec4 o_pncc;
layout(location = 1) out vec4 o_normal;
layout(location = 2) out vec4 o_shaded;
layout(location = 3) out float o_z;
void main() {
    // Exact flat normal of this triangle, only used to orient the smooth one, so
    // meshes of either winding give camera-facing normals.
    vec3 fn = cross(dFdx(v_pos), dFdy(v_pos));
    vec3 view = normalize(v_pos);
    vec3 n = v_normal;
    float nl = length(n);
    float fl = length(fn);
    if (fl > 1e-30) {
        fn /= fl;
        if (dot(fn, view) > 0.0) fn = -fn;
        if (nl < 1e-12) n = fn;
        else if (dot(n, fn) < 0.0) n = -n;
    } else if (dot(n, view) > 0.0) {
        n = -n;
    }
    n = normalize(n);
    // Smooth normals can tilt past the silhouette; clamp them to face the camera.
    float nv = dot(n, view);
    if (nv > -1e-3) n = normalize(n - (nv + 1e-3) * view);
    int part = int(v_part + 0.5);
    float light = ambient + (1.0 - ambient) * max(dot(n, light_dir), 0.0);
    o_pncc = vec4(v_color, v_part / 255.0);
    o_normal = vec4(0.5 * n + 0.5, 1.0);
    // The hairline is where the interpolated hair flag crosses 0.5, inside the head's triangles.
    vec3 base = (hair_on > 0.5 && part == %d && v_hair > 0.5) ? hair_rgb : albedo[part];
    o_shaded = vec4(clamp(base * light, 0.0, 1.0), 1.0);
    o_z = v_pos.z;
}
""" % (NUM_PARTS, BODY_PARTS.index("head"))

_PNCC_VERTEX_SHADER = """#version 330
uniform mat4 P; in vec3 in_pos; in vec3 in_color; out vec3 v_color;
void main() { v_color = in_color; gl_Position = P * vec4(in_pos, 1.0); }"""
_PNCC_FRAGMENT_SHADER = """#version 330
in vec3 v_color; layout(location = 0) out vec4 o_pncc;
void main() { o_pncc = vec4(v_color, 1.0); }"""

_CONTEXT = None
_CONTEXT_PID: int | None = None


def shared_context():
    """The process's moderngl EGL context, created on first use (and again after fork)."""
    global _CONTEXT, _CONTEXT_PID
    if _CONTEXT is None or _CONTEXT_PID != os.getpid():
        try:
            import moderngl
        except ImportError as exc:
            raise RenderError(f"moderngl is not installed ({exc}); run `make setup`") from exc
        try:
            ctx = moderngl.create_context(standalone=True, backend="egl")
        except Exception as exc:  # moderngl raises plain Exception for EGL failures
            raise RenderError(f"cannot create an EGL OpenGL context ({exc}): {_EGL_HINT}") from exc
        if ctx.version_code < 330:
            raise RenderError(f"OpenGL {ctx.version_code} found, 3.3 needed: {_EGL_HINT}")
        ctx.provoking_vertex = moderngl.FIRST_VERTEX_CONVENTION
        _CONTEXT, _CONTEXT_PID = ctx, os.getpid()
    return _CONTEXT


def _as_rgb(name: str, rgb) -> tuple[float, float, float]:
    arr = np.asarray(rgb, dtype=np.float64)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise ValueError(f"ShadingParams.{name} must be 3 floats in [0, 1], got {rgb!r}")
    return tuple(np.clip(arr, 0.0, 1.0))


class Renderer:
    """Renders one mesh topology at a fixed size; reuse it for every sample."""

    def __init__(self, width: int, height: int, faces: np.ndarray, vertex_colors: np.ndarray,
                 vertex_parts: np.ndarray, near: float = 0.05, far: float = 100.0,
                 vertex_hair: np.ndarray | None = None):
        if width <= 0 or height <= 0:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        if not 0 < near < far:
            raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
        faces = np.asarray(faces)
        colors = np.asarray(vertex_colors, dtype=np.float32)
        parts = np.asarray(vertex_parts)
        n_verts = len(colors)
        if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
            raise ValueError(f"faces must be a non-empty (F, 3) index array, got {faces.shape}")
        if colors.ndim != 2 or colors.shape[1] != 3:
            raise ValueError(f"vertex_colors must be (V, 3) in [0, 1], got {colors.shape}")
        if parts.shape != (n_verts,):
            raise ValueError(f"vertex_parts must be ({n_verts},) like vertex_colors, got "
                             f"{parts.shape}")
        if parts.min() < 0 or parts.max() >= NUM_PARTS:
            raise ValueError(f"vertex_parts must index skeleton.BODY_PARTS (0..{NUM_PARTS - 1}),"
                             f" got range {parts.min()}..{parts.max()}")
        if faces.min() < 0 or faces.max() >= n_verts:
            raise ValueError(f"faces index vertices 0..{faces.max()} but there are {n_verts}")
        hair = np.zeros(n_verts, bool) if vertex_hair is None else np.asarray(vertex_hair)
        if hair.shape != (n_verts,):
            raise ValueError(f"vertex_hair must be ({n_verts},) like vertex_colors, got {hair.shape}")
        self.width, self.height, self.near, self.far = int(width), int(height), near, far
        self.faces = np.ascontiguousarray(faces, dtype=np.int32)
        self.num_vertices = n_verts
        ctx = self.ctx = shared_context()
        try:
            self._build(ctx, colors, parts, hair.astype(bool))
        except RenderError:
            raise
        except Exception as exc:
            raise RenderError(f"building GL resources for {width}x{height} failed ({exc}): "
                              f"{_EGL_HINT}") from exc

    def _build(self, ctx, colors: np.ndarray, parts: np.ndarray, hair: np.ndarray) -> None:
        size = (self.width, self.height)
        static = np.concatenate([np.clip(colors, 0, 1), parts[:, None].astype(np.float32),
                                 hair[:, None].astype(np.float32)], axis=1)
        self._static = ctx.buffer(np.ascontiguousarray(static, dtype=np.float32).tobytes())
        self._pos = ctx.buffer(reserve=self.num_vertices * 12, dynamic=True)
        self._nrm = ctx.buffer(reserve=self.num_vertices * 12, dynamic=True)
        self._index = ctx.buffer(self.faces.tobytes())
        self._prog = ctx.program(vertex_shader=_VERTEX_SHADER,
                                 fragment_shader=_FRAGMENT_SHADER)
        self._vao = ctx.vertex_array(
            self._prog,
            [(self._pos, "3f", "in_pos"), (self._nrm, "3f", "in_normal"),
             (self._static, "3f 1f 1f", "in_color", "in_part", "in_hair")],
            index_buffer=self._index, index_element_size=4)
        self._targets = [ctx.renderbuffer(size, 4, dtype="f1") for _ in range(3)]
        self._targets.append(ctx.renderbuffer(size, 1, dtype="f4"))
        self._depth_rb = ctx.depth_renderbuffer(size)
        self._fbo = ctx.framebuffer(color_attachments=self._targets,
                                    depth_attachment=self._depth_rb)
        self._pncc_prog = ctx.program(vertex_shader=_PNCC_VERTEX_SHADER,
                                      fragment_shader=_PNCC_FRAGMENT_SHADER)
        self._pncc_vao = ctx.vertex_array(
            self._pncc_prog, [(self._pos, "3f", "in_pos"),
                              (self._static, "3f 8x", "in_color")],
            index_buffer=self._index, index_element_size=4)
        self._pncc_rb = ctx.renderbuffer(size, 4, dtype="f1")
        self._pncc_depth = ctx.depth_renderbuffer(size)
        self._pncc_fbo = ctx.framebuffer(color_attachments=[self._pncc_rb],
                                         depth_attachment=self._pncc_depth)
        self._released = False

    def _upload(self, vertices_cam: np.ndarray, K: np.ndarray, prog) -> np.ndarray:
        if self._released:
            raise RenderError("Renderer.render called after release(); build a new Renderer")
        v = np.asarray(vertices_cam, dtype=np.float32)
        if v.shape != (self.num_vertices, 3):
            raise ValueError(f"vertices_cam must be ({self.num_vertices}, 3) like the mesh the "
                             f"Renderer was built for, got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("vertices_cam contains NaN or inf; check the pose and camera")
        v = np.ascontiguousarray(v)
        P = projection_matrix(K, self.width, self.height, self.near, self.far)
        prog["P"].write(P.T.astype(np.float32).tobytes())  # GL wants column-major
        self._pos.write(v.tobytes())
        return v

    def _prepare(self, fbo) -> None:
        import moderngl
        ctx = self.ctx
        fbo.use()
        ctx.viewport = (0, 0, self.width, self.height)
        ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        ctx.enable(moderngl.DEPTH_TEST)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)

    def _read_rgba(self, fbo, attachment: int) -> np.ndarray:
        data = fbo.read(components=4, attachment=attachment, dtype="f1")
        return np.frombuffer(data, dtype=np.uint8).reshape(self.height, self.width, 4)

    def render_pncc(self, vertices_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
        """PNCC map only, (H, W, 3) uint8: the cheapest path when nothing else is needed."""
        self._upload(vertices_cam, K, self._pncc_prog)
        self._prepare(self._pncc_fbo)
        self._pncc_vao.render()
        return np.ascontiguousarray(self._read_rgba(self._pncc_fbo, 0)[:, :, :3])

    def render(self, vertices_cam: np.ndarray, K: np.ndarray,
               shading: ShadingParams | None = None) -> RenderOutput:
        """All control maps of one posed mesh in one MRT pass (shaded only if `shading`)."""
        v = self._upload(vertices_cam, K, self._prog)
        self._nrm.write(np.ascontiguousarray(vertex_normals(v, self.faces)).tobytes())
        if shading is not None:
            light = np.asarray(shading.light_dir_cam, dtype=np.float64)
            if light.shape != (3,) or not np.isfinite(light).all() or not np.linalg.norm(light):
                raise ValueError(f"ShadingParams.light_dir_cam must be a non-zero 3-vector, "
                                 f"got {shading.light_dir_cam!r}")
            self._prog["albedo"].write(shading.part_albedo().tobytes())
            self._prog["light_dir"].value = tuple(light / np.linalg.norm(light))
            self._prog["ambient"].value = float(np.clip(shading.ambient, 0.0, 1.0))
            hair_rgb = shading.hair_albedo()
            self._prog["hair_on"].value = 0.0 if hair_rgb is None else 1.0
            self._prog["hair_rgb"].value = (0.0, 0.0, 0.0) if hair_rgb is None else hair_rgb
        self._prepare(self._fbo)
        self._vao.render()

        pncc_parts = self._read_rgba(self._fbo, 0)
        normals = self._read_rgba(self._fbo, 1)
        depth = np.frombuffer(self._fbo.read(components=1, attachment=3, dtype="f4"),
                              dtype=np.float32).reshape(self.height, self.width)
        mask = depth > 0.0
        shaded = None
        if shading is not None:
            shaded = self._read_rgba(self._fbo, 2).copy()
            shaded[..., 3] = np.where(mask, 255, 0)
        return RenderOutput(
            pncc=np.ascontiguousarray(pncc_parts[:, :, :3]),
            depth=depth.copy(),
            normals=np.ascontiguousarray(normals[:, :, :3]),
            parts=np.ascontiguousarray(pncc_parts[:, :, 3]),
            mask=mask,
            shaded=shaded,
        )

    def release(self) -> None:
        """Free this renderer's GL objects (the shared context stays for reuse)."""
        if getattr(self, "_released", True):
            return
        for obj in (self._vao, self._pncc_vao, self._fbo, self._pncc_fbo, *self._targets,
                    self._depth_rb, self._pncc_rb, self._pncc_depth, self._prog,
                    self._pncc_prog, self._static, self._pos, self._nrm, self._index):
            obj.release()
        self._released = True

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

"""Render and PNG-encode timings for the control maps at 512x512.

Uses a procedural body-sized mesh (a deformed UV sphere, ~14K vertices, ~27.7K
triangles, the size of an anny/SMPL body) so it needs no body model.

    .venv/bin/python benchmarks/bench_render.py [--size 512] [--repeats 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from pd_assets.poses.control_maps import (
    draw_skeleton, encode_png_gray8, encode_png_gray16, encode_png_rgb, encode_png_rgba,
    keypoint_visibility,
)
from pd_assets.poses.render import Renderer, pncc_colors, sample_shading, vertex_normals
from pd_assets.skeleton import BODY_PARTS


def body_like_mesh(rings: int = 99, segments: int = 140) -> tuple[np.ndarray, np.ndarray]:
    """A UV sphere stretched to a 1.7 m x 0.5 m x 0.3 m blob with bumps, in metres."""
    theta = np.linspace(0, np.pi, rings + 2)[1:-1]
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
    verts = np.concatenate([[[0, 1, 0]], ring, [[0, -1, 0]]])
    bump = 1 + 0.08 * np.sin(9 * verts[:, 1:2]) * np.cos(5 * np.arctan2(verts[:, 2:], verts[:, :1]))
    verts = verts * bump * np.array([0.25, 0.85, 0.15])
    faces = []
    idx = np.arange(rings * segments).reshape(rings, segments) + 1
    nxt = np.roll(idx, -1, axis=1)
    faces.append(np.stack([np.zeros(segments, int), nxt[0], idx[0]], -1))
    a, b, c, d = idx[:-1], nxt[:-1], idx[1:], nxt[1:]
    faces.append(np.stack([a, b, d], -1).reshape(-1, 3))
    faces.append(np.stack([a, d, c], -1).reshape(-1, 3))
    last = len(verts) - 1
    faces.append(np.stack([np.full(segments, last), idx[-1], nxt[-1]], -1))
    return verts, np.concatenate(faces).astype(np.int32)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (shader compile, first allocation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    size, n = args.size, args.repeats

    verts, faces = body_like_mesh()
    parts = np.clip(((verts[:, 1] + 0.9) / 1.8 * (len(BODY_PARTS) - 1)).astype(int) + 1,
                    1, len(BODY_PARTS) - 1)
    focal = 890.0 * size / 1024  # the method's 1024 px / 890 px focal, scaled
    K = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1.0]])
    rot = np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1.0]])  # body y-up -> camera y-down
    verts_cam = verts @ rot.T + np.array([0, 0, 3.0])
    shading = sample_shading(np.random.default_rng(0))

    renderer = Renderer(size, size, faces, pncc_colors(verts), parts)
    print(f"mesh: {len(verts)} vertices, {len(faces)} triangles; {size}x{size}; "
          f"{renderer.ctx.info['GL_RENDERER']}; median of {n}")
    out = renderer.render(verts_cam, K, shading)
    print(f"  mask coverage             {out.mask.mean() * 100:6.1f} %")
    rows = [
        ("render_pncc (PNCC only)", lambda: renderer.render_pncc(verts_cam, K)),
        ("render, no shading (MRT)", lambda: renderer.render(verts_cam, K)),
        ("render, all outputs (MRT)", lambda: renderer.render(verts_cam, K, shading)),
        ("  of which vertex_normals", lambda: vertex_normals(verts_cam, faces)),
        ("encode pncc (RGB)", lambda: encode_png_rgb(out.pncc)),
        ("encode normals (RGB)", lambda: encode_png_rgb(out.normals)),
        ("encode depth (16-bit)", lambda: encode_png_gray16(out.depth)),
        ("encode parts (8-bit)", lambda: encode_png_gray8(out.parts)),
        ("encode mask (8-bit)", lambda: encode_png_gray8(out.mask)),
        ("encode shaded (RGBA)", lambda: encode_png_rgba(out.shaded)),
    ]
    rng = np.random.default_rng(1)
    kp_cam = verts_cam[rng.choice(len(verts_cam), 17)] + np.array([0, 0, 0.05])
    kp2d = (kp_cam @ K.T)[:, :2] / kp_cam[:, 2:]
    skeleton = draw_skeleton(kp2d, np.ones(17, bool), size, size)
    rows += [
        ("draw_skeleton", lambda: draw_skeleton(kp2d, np.ones(17, bool), size, size)),
        ("encode skeleton (RGB)", lambda: encode_png_rgb(skeleton)),
        ("keypoint_visibility", lambda: keypoint_visibility(kp_cam, K, out.depth, size, size)),
    ]
    for name, fn in rows:
        print(f"  {name:26s}{timed(fn, n):7.2f} ms")
    renderer.release()


if __name__ == "__main__":
    main()

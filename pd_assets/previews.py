"""Contact sheets a person opens from the Dagster UI: images in a grid, keypoints drawn."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw

from pd_assets.skeleton import COCO17_LIMBS

LABEL_COLOR = (0, 255, 0)
DETECTED_COLOR = (255, 0, 255)


def to_rgb_image(array: np.ndarray) -> Image.Image:
    """Any control/image array (bool mask, uint8 grey/RGB/RGBA, float depth) as an RGB PIL image."""
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        valid = a > 0
        lo, hi = (float(a[valid].min()), float(a[valid].max())) if valid.any() else (0.0, 1.0)
        a = np.where(valid, 255 - (a - lo) / max(hi - lo, 1e-6) * 200, 0).astype(np.uint8)
    elif a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 4:  # composite RGBA on grey so the body stands out
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        a = (a[..., :3] * alpha + 96 * (1 - alpha)).astype(np.uint8)
    return Image.fromarray(a).convert("RGB")


def draw_keypoints(
    image: Image.Image, keypoints: np.ndarray, visible: np.ndarray | None = None,
    color: tuple[int, int, int] = LABEL_COLOR, scale: float = 1.0,
) -> Image.Image:
    """Draw COCO-17 keypoints and limbs (only between visible points) onto a copy of `image`."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    kp = np.asarray(keypoints, dtype=np.float64)[:, :2] * scale
    vis = np.ones(len(kp), bool) if visible is None else np.asarray(visible, bool)
    width = max(1, round(out.width / 160))
    for a, b in COCO17_LIMBS:
        if vis[a] and vis[b]:
            draw.line([tuple(kp[a]), tuple(kp[b])], fill=color, width=width)
    r = max(1.5, out.width / 100)
    for (x, y), v in zip(kp, vis):
        if v:
            draw.ellipse([x - r, y - r, x + r, y + r], outline=color, width=width)
    return out


HEADER_PX = 16  # height of the band that names the columns or holds a caption


def contact_sheet(rows: list[list[Image.Image]], tile: int = 128, pad: int = 2,
                  header: list[str] | None = None, caption: str | None = None) -> Image.Image:
    """Grid of images, one row per sample, each resized to `tile` x `tile`; `header` names
    the columns (which control map), `caption` is one line above them (e.g. a colour key)."""
    n_cols = max((len(r) for r in rows), default=1)
    top = HEADER_PX * (bool(caption) + bool(header))
    width = n_cols * (tile + pad) + pad
    sheet = Image.new("RGB", (width, top + max(len(rows), 1) * (tile + pad) + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    y = 2
    if caption:
        draw.text((pad + 2, y), caption, fill=(230, 230, 230))
        y += HEADER_PX
    for j, title in enumerate(header or []):
        draw.text((pad + j * (tile + pad) + 2, y), title, fill=(230, 230, 230))
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            sheet.paste(img.resize((tile, tile), Image.BILINEAR), (pad + j * (tile + pad), top + pad + i * (tile + pad)))
    return sheet


KEYPOINT_KEY = "keypoints: green = label, magenta = detected"


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def markdown_image(image: Image.Image, alt: str = "preview", max_side: int = 768) -> str:
    """A markdown image with the picture inline (JPEG data URI), so the UI shows it directly."""
    img = image.copy()
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return f"![{alt}](data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()})"

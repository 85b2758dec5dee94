"""Pictures for `filtered_shards` metadata: an OKS histogram and a kept/rejected sheet.

Builds on the shared `pd_assets.previews` (keypoint drawing, grids, inline markdown).
Label keypoints are green, detected (calibrated) keypoints magenta.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from pd_assets.previews import DETECTED_COLOR, KEYPOINT_KEY, LABEL_COLOR, contact_sheet, draw_keypoints

_KEPT, _REJECTED, _AXIS = (60, 160, 90), (200, 80, 70), (0, 0, 0)


def oks_histogram(oks_kept, oks_rejected, threshold: float, bins: int = 20,
                  size: tuple[int, int] = (480, 240)) -> Image.Image:
    """Stacked bars of OKS in [0, 1] (kept green on top of rejected red), threshold line."""
    w, h = size
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    edges = np.linspace(0.0, 1.0, bins + 1)
    kept = np.histogram(_finite(oks_kept), edges)[0]
    rejected = np.histogram(_finite(oks_rejected), edges)[0]
    top = max(int((kept + rejected).max()), 1)
    left, right, bottom, plot_h = 36, w - 10, h - 24, h - 48
    bar_w = (right - left) / bins
    for i in range(bins):
        x0, x1 = left + i * bar_w + 1, left + (i + 1) * bar_w - 1
        hr, hk = rejected[i] / top * plot_h, kept[i] / top * plot_h
        if hr:
            draw.rectangle([x0, bottom - hr, x1, bottom], fill=_REJECTED)
        if hk:
            draw.rectangle([x0, bottom - hr - hk, x1, bottom - hr], fill=_KEPT)
    draw.line([left, bottom, right, bottom], fill=_AXIS)
    tx = left + threshold * (right - left)
    draw.line([tx, 18, tx, bottom], fill=(30, 30, 200))
    for v in (0.0, 0.5, 1.0):
        draw.text((left + v * (right - left) - 8, bottom + 4), f"{v:.1f}", fill=_AXIS)
    draw.text((4, bottom - plot_h), str(top), fill=_AXIS)
    draw.text((left, 4), f"OKS, threshold {threshold:g}: green kept, red rejected", fill=_AXIS)
    return img


def _finite(values) -> np.ndarray:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    return v[np.isfinite(v)]


def sample_tile(image: np.ndarray | None, record: dict, label_kp, label_visible, tile: int = 160) -> Image.Image:
    """One sample at `tile` px: the image, label and detected keypoints, a caption bar."""
    if image is None:
        pic = Image.new("RGB", (tile, tile), (90, 90, 90))
        scale = 1.0
    else:
        pic = Image.fromarray(image).convert("RGB")
        scale = tile / max(pic.size)
        pic = pic.resize((max(1, round(pic.width * scale)), max(1, round(pic.height * scale))))
        pic = draw_keypoints(pic, np.asarray(label_kp, float).reshape(17, 2), label_visible,
                             LABEL_COLOR, scale=scale)
        det = record.get("det_keypoints2d_calibrated")
        if det is not None:
            pic = draw_keypoints(pic, np.asarray(det, float).reshape(17, 2), None, DETECTED_COLOR, scale=scale)
    canvas = Image.new("RGB", (tile, tile), (0, 0, 0))
    canvas.paste(pic, (0, 0))
    draw = ImageDraw.Draw(canvas)
    oks = record.get("oks")
    caption = ("kept" if record.get("kept") else ",".join(record.get("failed_checks") or ["rejected"]))
    caption = f"{'' if oks is None else f'{oks:.2f} '}{caption}"[:28]
    draw.rectangle([0, tile - 14, tile, tile], fill=_KEPT if record.get("kept") else _REJECTED)
    draw.text((3, tile - 13), caption, fill=(255, 255, 255))
    return canvas


def kept_and_rejected_sheet(kept_tiles: list[Image.Image], rejected_tiles: list[Image.Image],
                            per_row: int = 6, tile: int = 160) -> Image.Image:
    """Rows of kept samples, then rows of rejected samples."""
    rows = [kept_tiles[i:i + per_row] for i in range(0, len(kept_tiles), per_row)]
    rows += [rejected_tiles[i:i + per_row] for i in range(0, len(rejected_tiles), per_row)]
    caption = f"{KEYPOINT_KEY} (calibrated); {len(kept_tiles)} kept, then {len(rejected_tiles)} rejected"
    return contact_sheet(rows or [[Image.new("RGB", (tile, tile), (24, 24, 24))]], tile=tile, caption=caption)

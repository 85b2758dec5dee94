"""Pictures of a control adapter: a contact sheet of held-out generations and the loss curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pd_assets.previews import DETECTED_COLOR, contact_sheet, draw_keypoints


def contact_sheet_for(pose_dir: Path, gen_dir: Path, records: list[dict], n: int = 12, tile: int = 128) -> Image.Image:
    """Rows of (control | generated image with label keypoints (green) and detected ones (magenta))."""
    from pd_assets.curation.inputs import read_parquet_rows

    labels = {r["sample_id"]: r for r in read_parquet_rows(Path(pose_dir) / "labels.parquet", "pose_pool labels",
                                                            "re-materialise pose_pool")}
    rows = []
    for rec in sorted(records, key=lambda r: r["sample_id"])[:n]:
        label = labels[rec["sample_id"]]
        with Image.open(Path(pose_dir) / label["control_pncc"]) as c:
            control = c.convert("RGB")
        with Image.open(Path(gen_dir) / "images" / f"{rec['sample_id']}.png") as g:
            image = g.convert("RGB")
        kp = np.asarray(label["keypoints2d"], dtype=np.float64).reshape(17, 2)
        drawn = draw_keypoints(image, kp, np.asarray(label["keypoints_visible"], bool))
        if rec.get("det_keypoints2d") is not None:
            drawn = draw_keypoints(drawn, np.asarray(rec["det_keypoints2d"]).reshape(17, 2), color=DETECTED_COLOR)
        rows.append([control, image, drawn])
    # three samples per row: control | image | image + keypoints, side by side
    flat = [rows[i] + rows[i + 1] + rows[i + 2] if i + 2 < len(rows) else sum(rows[i:], [])
            for i in range(0, len(rows), 3)]
    return contact_sheet(flat, tile=tile)


def loss_curve_image(losses: list[float], title: str, size: tuple[int, int] = (480, 240), window: int = 25) -> Image.Image:
    """The loss per step (grey) and its moving average (blue), log-scaled y."""
    w, h = size
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y = np.asarray([v for v in losses if np.isfinite(v) and v > 0], dtype=np.float64)
    draw.text((6, 4), title, fill=(0, 0, 0))
    if y.size < 2:
        draw.text((6, h // 2), "not enough steps to plot", fill=(0, 0, 0))
        return img
    smooth = np.convolve(y, np.ones(min(window, y.size)) / min(window, y.size), mode="valid")
    lo, hi = np.log10(y.min()), np.log10(y.max())
    left, right, top, bottom = 40, w - 8, 20, h - 20

    def pts(values: np.ndarray, offset: int) -> list[tuple[float, float]]:
        xs = left + (np.arange(values.size) + offset) / max(y.size - 1, 1) * (right - left)
        ys = bottom - (np.log10(values) - lo) / max(hi - lo, 1e-9) * (bottom - top)
        return list(zip(xs.tolist(), ys.tolist()))

    draw.line(pts(y, 0), fill=(190, 190, 190))
    draw.line(pts(smooth, min(window, y.size) // 2), fill=(30, 60, 200), width=2)
    draw.line([left, bottom, right, bottom], fill=(0, 0, 0))
    draw.text((2, top), f"{10 ** hi:.3g}", fill=(0, 0, 0))
    draw.text((2, bottom - 10), f"{10 ** lo:.3g}", fill=(0, 0, 0))
    draw.text((right - 60, bottom + 4), f"{y.size} steps", fill=(0, 0, 0))
    return img

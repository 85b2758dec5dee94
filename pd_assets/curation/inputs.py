"""Reading the curation stage's inputs: label rows, generated images, label masks.

Nothing here raises on a bad image: an unreadable, truncated or missing file comes
back as `(None, "unreadable image: <why>")`, so one corrupt sample is a rejected row,
never a crashed run.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABEL_ARRAY_COLUMNS = {
    "keypoints2d": (17, 2), "keypoints3d_cam": (17, 3), "K": (3, 3), "R": (3, 3), "t": (3,),
    "bbox_xyxy": (4,), "joints3d_cam": (22, 3), "global_orient": (3,), "body_pose": (21, 3),
    "transl": (3,),
}


class InputError(RuntimeError):
    """An upstream partition is missing or malformed; names the path and the fix."""


@dataclass
class LabelView:
    """The parts of one `labels.parquet` row that scoring needs, as arrays."""

    sample_id: str
    keypoints2d: np.ndarray      # (17, 2) pixels
    visible: np.ndarray          # (17,) bool
    keypoints3d_cam: np.ndarray  # (17, 3) metres, camera frame
    K: np.ndarray                # (3, 3)
    area: float                  # mask area in px^2 (the OKS scale s^2)
    bbox_xyxy: np.ndarray        # (4,)
    width: int
    height: int

    @classmethod
    def from_row(cls, row: dict) -> LabelView:
        try:
            return cls(
                sample_id=str(row["sample_id"]),
                keypoints2d=np.asarray(row["keypoints2d"], dtype=np.float64).reshape(17, 2),
                visible=np.asarray(row["keypoints_visible"], dtype=bool).reshape(17),
                keypoints3d_cam=np.asarray(row["keypoints3d_cam"], dtype=np.float64).reshape(17, 3),
                K=np.asarray(row["K"], dtype=np.float64).reshape(3, 3),
                area=float(row["mask_area"]),
                bbox_xyxy=np.asarray(row["bbox_xyxy"], dtype=np.float64).reshape(4),
                width=int(row["width"]),
                height=int(row["height"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(
                f"label row {row.get('sample_id', '?')!r} does not follow the labels.parquet contract "
                f"({exc!r}): re-materialise pose_pool for this partition (pd_assets/CONTRACTS.md)"
            ) from exc


def read_parquet_rows(path: Path, what: str, fix: str) -> list[dict]:
    import polars as pl

    if not path.is_file():
        raise InputError(f"{what} not found at {path}: {fix}")
    try:
        return pl.read_parquet(path).to_dicts()
    except Exception as exc:  # polars raises its own ComputeError/IO errors
        raise InputError(f"{what} at {path} is not readable parquet ({exc}): {fix}") from exc


def load_image(path: Path, size: tuple[int, int] | None = None) -> tuple[np.ndarray | None, str | None]:
    """(H, W, 3) uint8 RGB, or (None, reason). `size` = (width, height) the label expects:
    an image of the same aspect ratio is resized to it; another aspect is rejected."""
    from PIL import Image

    if not path.is_file():
        return None, f"unreadable image: file missing at {path.name}"
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return None, f"unreadable image: {type(exc).__name__}: {exc}"
    if size is not None and rgb.size != tuple(size):
        w, h = rgb.size
        if abs(w * size[1] - h * size[0]) > max(w, h):
            return None, f"unreadable image: size {w}x{h} does not match the label's {size[0]}x{size[1]}"
        rgb = rgb.resize(tuple(size), Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8), None


def load_mask(path: Path | None) -> np.ndarray | None:
    """The rendered label mask (8-bit 0/255) as bool, or None if absent or unreadable."""
    from PIL import Image

    if path is None or not path.is_file():
        return None
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L")) > 127
    except Exception:  # an unreadable label mask leaves IoU unmeasured (recorded as null)
        return None


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality), subsampling=0)
    return buf.getvalue()


def jsonable(value):
    """Numpy scalars/arrays -> Python; NaN -> None (JSON and SQL both want null)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    return value


def dumps(obj) -> bytes:
    return json.dumps(jsonable(obj), sort_keys=True, allow_nan=False, separators=(",", ":")).encode()

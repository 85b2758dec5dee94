"""Per-sample labels derived from a posed body, its camera and its render.

Pure functions: what a label row holds (see CONTRACTS.md, labels.parquet) and how
the derived quantities (camera-frame points, bbox) are computed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def bbox_from_mask(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight pixel box (x0, y0, x1, y1) around the mask, edges at pixel borders; zeros if empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    # pixel centres are integers (OpenCV): the box covers [first - 0.5, last + 0.5]
    return (xs[0] - 0.5, ys[0] - 0.5, xs[-1] + 0.5, ys[-1] + 0.5)


def to_camera(points: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Body/world points (N, 3) into the OpenCV camera frame."""
    return (points @ np.asarray(R).T + np.asarray(t)).astype(np.float32)


def flat(a: np.ndarray) -> list[float]:
    return np.asarray(a, dtype=np.float32).reshape(-1).tolist()


LIST_COLUMNS = (
    "shape", "global_orient", "body_pose", "transl", "K", "R", "t", "joints3d_cam",
    "keypoints3d_cam", "keypoints2d", "bbox_xyxy",
)


def write_labels(rows: list[dict], path: Path) -> pl.DataFrame:
    """Rows -> a typed parquet table (float32 lists, int64 seed), written in place (caller stages it)."""
    frame = pl.DataFrame(rows)
    frame = frame.with_columns(
        [pl.col(c).cast(pl.List(pl.Float32)) for c in LIST_COLUMNS if c in frame.columns]
        + [pl.col("seed").cast(pl.Int64), pl.col("index").cast(pl.Int64)]
    )
    frame.write_parquet(path, compression="zstd")
    return frame


def read_labels(path: Path) -> pl.DataFrame:
    """The label table; `InputError` (path + fix) when it is missing or unreadable."""
    from pd_assets.safe_io import read_parquet_frame

    return read_parquet_frame(Path(path), "pose_pool labels", "re-materialise pose_pool for this partition")


def array_column(frame: pl.DataFrame, column: str, shape: tuple[int, ...]) -> np.ndarray:
    """A list column as a (rows, *shape) float array."""
    values = np.asarray(frame[column].to_list(), dtype=np.float64)
    return values.reshape((len(frame), *shape))

"""Free space is checked before a partition is written, against an estimate of its size.

A full disk would otherwise be found only after a whole shard was rendered or generated
(1000 samples in the gpu profile). The estimates are pure functions of the settings, so
they can be tested by hand; `require_free_space` compares one with the free space under
the output path (measured by `shutil.disk_usage`, or passed in) and raises `StorageError`
naming the path, the bytes needed and free, and the fix.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from pd_assets import thresholds as T
from pd_assets.storage import StorageError

# PNG bytes per pixel of each pose_pool control map: the largest file measured over the
# 64 samples of a `local` profile shard (anny, 512 x 512; close-up framings are the
# largest), rounded up. The mean is about half of these.
CONTROL_BYTES_PER_PIXEL = {"pncc": 0.31, "depth": 0.18, "normals": 0.52, "parts": 0.03,
                           "skeleton": 0.04, "shaded": 0.40, "mask": 0.02}
# An unknown control is assumed to be an RGBA image that does not compress at all.
UNKNOWN_CONTROL_BYTES_PER_PIXEL = 4.0
# A generated RGB image as PNG: a photograph compresses little, so its raw size (render
# backend images measured at most 0.6).
IMAGE_BYTES_PER_PIXEL = 3.0
# labels.parquet row, journal record and provenance row per sample (measured about 5 KB).
ROW_BYTES = 8_000


def pose_pool_bytes(num_samples: int, width: int, height: int, controls: Iterable[str]) -> int:
    """Estimated bytes of one pose_pool partition (control PNGs and label rows)."""
    per_pixel = sum(CONTROL_BYTES_PER_PIXEL.get(c, UNKNOWN_CONTROL_BYTES_PER_PIXEL) for c in controls)
    return int(num_samples * (width * height * per_pixel + ROW_BYTES))


def raw_generations_bytes(sizes: Iterable[tuple[int, int]]) -> int:
    """Estimated bytes of the images still to generate, one (width, height) per image."""
    return int(sum(w * h * IMAGE_BYTES_PER_PIXEL + ROW_BYTES for w, h in sizes))


def free_bytes_under(path: str | os.PathLike) -> int:
    """Free bytes on the volume that holds `path` (or would: its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def require_free_space(path: str | os.PathLike, estimate: int, *, what: str,
                       free_bytes: int | None = None, margin: float = T.DISK_SPACE_MARGIN) -> None:
    """Raise `StorageError` unless `estimate * margin` bytes are free under `path`."""
    needed = int(estimate * margin)
    if needed <= 0:
        return
    free = free_bytes_under(path) if free_bytes is None else int(free_bytes)
    if free < needed:
        raise StorageError(
            f"not enough free space for {what} under {path}: needs about {_size(needed)} ({needed} bytes, "
            f"estimate x {margin:g}), {_size(free)} ({free} bytes) free. Free space on that volume, point "
            "PD_DATA_ROOT (dataset_store.root) at a larger one, or make fewer/smaller samples per shard "
            "(pose_sampling.samples_per_shard, width/height); nothing was written"
        )


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"

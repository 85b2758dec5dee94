"""Reading the curation stage's inputs: label rows, generated images, label masks.

Nothing here raises on a bad sample: an unreadable, truncated or missing image comes
back as `(None, "unreadable image: <why>")`, a bad label mask as
`(None, "unreadable label mask: <why>; re-materialise pose_pool")`, an image whose bytes
are not the ones raw_generations recorded as a reason from `provenance_error`, so one
bad sample is a rejected row, never a crashed run (or a silently skipped check). A
partition-level problem (a missing parquet, an unfinished raw_generations run) raises
`InputError`. Paths named by a label row resolve inside its pose_pool partition
(`label_file`, through `pd_assets.safe_io.resolve_inside`) or the sample is rejected.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pd_assets.safe_io import InputError, UnsafePathError, read_parquet_rows, resolve_inside  # noqa: F401

LABEL_ARRAY_COLUMNS = {
    "keypoints2d": (17, 2), "keypoints3d_cam": (17, 3), "K": (3, 3), "R": (3, 3), "t": (3,),
    "bbox_xyxy": (4,), "joints3d_cam": (22, 3), "global_orient": (3,), "body_pose": (21, 3),
    "transl": (3,),
}


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


GENERATION_JOURNAL = "journal"  # raw_generations/{round}/{shard}/journal/ exists only while a run is unfinished


def check_generation_complete(gen_dir: Path, partition_key: str) -> None:
    """Raise unless the raw_generations partition is finished: its run writes images in
    place and replaces provenance.parquet only at the end, so while `journal/` exists
    (a run in progress, or one that was killed) images and provenance may disagree."""
    journal = Path(gen_dir) / GENERATION_JOURNAL
    if journal.exists():
        raise InputError(
            f"raw_generations for {partition_key} is incomplete (a run was interrupted or is in "
            f"progress): re-materialise raw_generations for this partition (found {journal})"
        )


def generation_error(record: dict | None) -> str | None:
    """Why raw_generations made no image for this sample (its provenance row's `error`), or None."""
    error = (record or {}).get("error")
    return f"raw_generations made no image: {error}" if error else None


def label_file(pool_dir: Path, row: dict, column: str) -> tuple[Path | None, str | None]:
    """The file a label row names in `column`, resolved inside its partition: (path, None),
    (None, None) when the row names none, or (None, why) when the path leaves the partition."""
    rel = row.get(column)
    if not rel:
        return None, None
    try:
        return resolve_inside(pool_dir, rel, what=f"label {column}"), None
    except UnsafePathError as exc:
        return None, str(exc)


def read_label_control(pool_dir: Path, row: dict, column: str) -> tuple[bytes | None, str | None]:
    """The bytes of the control map a label row names in `column`, or (None, why): the row
    names none, its path leaves the partition, or the file is missing or unreadable."""
    fix = "re-materialise pose_pool"
    path, unsafe = label_file(pool_dir, row, column)
    if unsafe:
        return None, unsafe
    if path is None:
        return None, f"the label row names no {column}; {fix}"
    try:
        return path.read_bytes(), None
    except FileNotFoundError:
        return None, f"{column} file missing at {row.get(column)}; {fix}"
    except OSError as exc:
        return None, f"{column} unreadable ({type(exc).__name__}: {exc}); {fix}"


def provenance_error(record: dict | None, image_sha256: str | None) -> str | None:
    """Why an image cannot be trusted to be the one its provenance row describes, or None.

    `image_sha256`: the sha256 of the image file's bytes (None when the file could not be
    read: that sample is already rejected as unreadable)."""
    if record is None:
        return "image has no provenance row: re-materialise raw_generations"
    if image_sha256 is not None and record.get("image_sha256") != image_sha256:
        return "image does not match its provenance (sha256): re-materialise raw_generations"
    return None


def read_image_file(path: Path, size: tuple[int, int] | None = None
                    ) -> tuple[np.ndarray | None, str | None, str | None]:
    """`load_image` plus the sha256 of the bytes it decoded: (image, reason, sha256).
    One read, so the hash is of exactly the pixels that are scored."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, f"unreadable image: file missing at {path.name}", None
    except OSError as exc:
        return None, f"unreadable image: {type(exc).__name__}: {exc}", None
    image, reason = decode_image(data, size)
    return image, reason, hashlib.sha256(data).hexdigest()


def load_image(path: Path, size: tuple[int, int] | None = None) -> tuple[np.ndarray | None, str | None]:
    """(H, W, 3) uint8 RGB, or (None, reason). `size` = (width, height) the label expects:
    an image of the same aspect ratio is resized to it; another aspect is rejected."""
    image, reason, _ = read_image_file(path, size)
    return image, reason


def decode_image(data: bytes, size: tuple[int, int] | None = None) -> tuple[np.ndarray | None, str | None]:
    """`load_image` on bytes already read."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
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


def load_mask(path: Path | None, size: tuple[int, int] | None = None) -> tuple[np.ndarray | None, str | None]:
    """The rendered label mask (8-bit 0/255) as (H, W) bool, or (None, reason).

    pose_pool always renders a mask, so a missing, unreadable or wrongly sized one is a
    broken input (the silhouette test would be skipped), never a silent None.
    `size` = (width, height) of the label."""
    from PIL import Image

    fix = "re-materialise pose_pool"
    if path is None:
        return None, f"unreadable label mask: the label row names no control_mask; {fix}"
    if not path.is_file():
        return None, f"unreadable label mask: file missing at {path.name}; {fix}"
    try:
        with Image.open(path) as im:
            im.load()
            mask = np.asarray(im.convert("L")) > 127
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ...
        return None, f"unreadable label mask: {type(exc).__name__}: {exc}; {fix}"
    if size is not None and mask.shape != (size[1], size[0]):
        return None, (f"unreadable label mask: size {mask.shape[1]}x{mask.shape[0]} does not match the "
                      f"label's {size[0]}x{size[1]}; {fix}")
    return mask, None


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

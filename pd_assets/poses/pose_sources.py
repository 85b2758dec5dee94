"""Real pose sources: AMASS SMPL-X sequences and directories of per-image SMPL-X fits.

Both give `PoseRecord`s in the project's body frame (SMPL: y up, faces +z; CONTRACTS.md).
Files are read with `np.load(allow_pickle=False)`: a pose file can never run code.
"""

from __future__ import annotations

import json
import logging
import pickle
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

log = logging.getLogger(__name__)

# AMASS is z-up; SMPL's body frame is y-up. Turning the world -90 deg about x maps +z to
# +y (and +y to -z), so a body standing in AMASS stands in ours: R_root' = R_fix @ R_root.
Z_UP_TO_Y_UP = Rotation.from_euler("x", -90, degrees=True)
# Per-image fits from HMR models are often in the OpenCV camera frame (y down, z forward):
# a 180 deg turn about x brings them to y up (the body then faces away from +z's camera).
FRAME_FIXES = {"y_up": Rotation.identity(), "z_up": Z_UP_TO_Y_UP,
               "opencv_camera": Rotation.from_euler("x", 180, degrees=True)}
# poses width -> (body, jaw, left hand, right hand) column slices. 165 = SMPL-X
# (root 3, body 63, jaw 3, eyes 6, hands 2x45); 156 = SMPL+H (root 3, body 63, hands 2x45).
_AMASS_LAYOUTS = {
    165: (slice(3, 66), slice(66, 69), slice(75, 120), slice(120, 165)),
    156: (slice(3, 66), None, slice(66, 111), slice(111, 156)),
}
_FIX_HINT = "re-download it or remove it from pose_sampling.pose_source_paths"


class PoseSourceError(ValueError):
    """A pose file is unreadable or not in the expected format."""


@dataclass
class PoseRecord:
    global_orient: np.ndarray               # (3,) axis-angle, y-up body frame
    body_pose: np.ndarray                   # (21, 3) axis-angle, SMPL-X body joints
    left_hand_pose: np.ndarray | None = None   # (15, 3)
    right_hand_pose: np.ndarray | None = None  # (15, 3)
    jaw_pose: np.ndarray | None = None         # (3,)
    betas: np.ndarray | None = None            # (n,)
    source: str = ""                           # "amass:<relative path>:<frame>" / "fit:<path>"


def _to_y_up(root_rotvecs: np.ndarray, fix: Rotation = Z_UP_TO_Y_UP) -> np.ndarray:
    return (fix * Rotation.from_rotvec(root_rotvecs)).as_rotvec()


_READ_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zlib.error,
                pickle.UnpicklingError)


def _open_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz (read eagerly, so truncation shows up here)."""
    try:
        npz = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise PoseSourceError(f"{path}: not a readable .npz archive (truncated or corrupt: "
                              f"{type(exc).__name__}: {exc}); {_FIX_HINT}") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise PoseSourceError(f"{path}: holds a single .npy array, not an .npz archive; {_FIX_HINT}")
    out = {}
    with npz:
        for key in npz.files:
            try:
                out[key] = npz[key]
            except ValueError as exc:
                if "pickle" in str(exc) and key in ("gender", "surface_model_type"):
                    continue  # metadata we never use; refusing pickle is the point
                raise PoseSourceError(f"{path}: array {key!r} is unreadable ({exc}); "
                                      f"{_FIX_HINT}") from None
            except _READ_ERRORS as exc:
                raise PoseSourceError(f"{path}: array {key!r} is truncated or corrupt "
                                      f"({type(exc).__name__}: {exc}); {_FIX_HINT}") from None
    return out


def _check_finite(path: Path, name: str, arr: np.ndarray) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.number):
        raise PoseSourceError(f"{path}: {name!r} has dtype {arr.dtype}, expected numbers; {_FIX_HINT}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr)).sum())
        raise PoseSourceError(f"{path}: {name!r} contains {bad} NaN/inf value(s); {_FIX_HINT}")
    return arr


def is_shape_only(arrays: dict[str, np.ndarray]) -> bool:
    """AMASS ships per-subject `shape.npz` files with betas/gender and no motion."""
    return "poses" not in arrays and "trans" not in arrays and "betas" in arrays


def load_amass_sequence(path: str | Path, rng: np.random.Generator, frames_per_sequence: int = 15,
                        root: str | Path | None = None) -> list[PoseRecord]:
    """Random frames (without replacement, in time order) of one AMASS `.npz` sequence.

    Keys used: `poses` (T, 165) SMPL-X or (T, 156) SMPL+H axis-angle, `betas` (optional).
    `trans` is dropped (the camera frames the body) and the root orientation is turned
    from AMASS z-up to the y-up body frame.  Shape-only files give [] (logged).
    `source` is "amass:<path relative to root>:<frame>".
    """
    path = Path(path)
    if frames_per_sequence < 1:
        raise ValueError(f"frames_per_sequence must be >= 1, got {frames_per_sequence}")
    arrays = _open_npz(path)
    if is_shape_only(arrays):
        log.debug("skipping %s: shape-only file (betas, no poses)", path)
        return []
    if "poses" not in arrays:
        raise PoseSourceError(f"{path}: no 'poses' array (keys: {sorted(arrays)}); expected an "
                              f"AMASS SMPL-X/SMPL+H sequence; {_FIX_HINT}")
    poses = _check_finite(path, "poses", arrays["poses"])
    if poses.ndim != 2 or poses.shape[1] not in _AMASS_LAYOUTS or len(poses) == 0:
        raise PoseSourceError(f"{path}: 'poses' has shape {poses.shape}, expected (T>0, 165) "
                              f"SMPL-X or (T>0, 156) SMPL+H; {_FIX_HINT}")
    betas = _check_finite(path, "betas", arrays["betas"]).reshape(-1) if "betas" in arrays else None
    body_sl, jaw_sl, lh_sl, rh_sl = _AMASS_LAYOUTS[poses.shape[1]]
    frames = np.sort(rng.choice(len(poses), size=min(frames_per_sequence, len(poses)), replace=False))
    sel = poses[frames]
    roots = _to_y_up(sel[:, :3])
    rel = path.relative_to(root).as_posix() if root is not None else path.name
    return [PoseRecord(
        global_orient=roots[k], body_pose=sel[k, body_sl].reshape(21, 3),
        left_hand_pose=sel[k, lh_sl].reshape(15, 3), right_hand_pose=sel[k, rh_sl].reshape(15, 3),
        jaw_pose=None if jaw_sl is None else sel[k, jaw_sl].copy(),
        betas=None if betas is None else betas.copy(), source=f"amass:{rel}:{int(f)}",
    ) for k, f in enumerate(frames)]


def find_npz_files(paths: str | Path | Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """(file, root) for every .npz under the given files/folders, sorted, deduplicated."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    found: dict[Path, Path] = {}
    for item in items:
        p = Path(item)
        if p.is_file():
            found.setdefault(p, p.parent)
        elif p.is_dir():
            for f in sorted(p.rglob("*.npz")):
                found.setdefault(f, p)
        else:
            raise PoseSourceError(f"pose source path {p} does not exist; fix "
                                  "pose_sampling.pose_source_paths")
    return sorted(found.items(), key=lambda kv: kv[0].as_posix())


def iter_pose_source(paths: str | Path | Sequence[str | Path], rng: np.random.Generator,
                     frames_per_sequence: int = 15,
                     on_skip: Callable[[Path, str], None] | None = None) -> Iterator[PoseRecord]:
    """PoseRecords of every AMASS sequence under `paths`, files in sorted order.

    Shape-only files are reported to `on_skip(path, reason)`; corrupt files raise.
    """
    for f, root in find_npz_files(paths):
        records = load_amass_sequence(f, rng, frames_per_sequence, root=root)
        if not records and on_skip is not None:
            on_skip(f, "shape-only file (betas, no poses)")
        yield from records


def _fit_array(path: Path, data: dict, key: str, rows: int, required: bool) -> np.ndarray | None:
    """`data[key]` as (rows, 3) axis-angle; accepts (rows*3,), (rows, 3), (rows, 3, 3)
    rotation matrices, each with an optional leading batch axis of 1."""
    if key not in data or data[key] is None:
        if required:
            raise PoseSourceError(f"{path}: missing {key!r} (keys: {sorted(data)}); each fit needs "
                                  "global_orient (3) and body_pose (63 or 21x3)")
        return None
    try:
        arr = np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise PoseSourceError(f"{path}: {key!r} is not numeric") from None
    arr = _check_finite(path, key, arr)
    if arr.ndim >= 2 and arr.shape[0] == 1 and arr.size in (rows * 3, rows * 9):
        arr = arr[0]
    if arr.size == rows * 9 and arr.shape[-2:] == (3, 3):
        return Rotation.from_matrix(arr.reshape(rows, 3, 3)).as_rotvec()
    if arr.size != rows * 3:
        hint = " (PCA hand poses? save full 45-value hand poses, use_pca=False)" if "hand" in key else ""
        raise PoseSourceError(f"{path}: {key!r} has shape {arr.shape}, expected {rows * 3} "
                              f"axis-angle values ({rows}x3) or {rows}x3x3 matrices{hint}")
    return arr.reshape(rows, 3)


def load_fit(path: str | Path, frame: str = "y_up", root: str | Path | None = None) -> PoseRecord:
    """One per-image SMPL-X fit (.npz or .json); see `load_fit_directory` for the format."""
    path = Path(path)
    if frame not in FRAME_FIXES:
        raise ValueError(f"frame={frame!r}: choose from {sorted(FRAME_FIXES)}")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PoseSourceError(f"{path}: unreadable JSON ({exc}); re-export the fit") from None
        if not isinstance(data, dict):
            raise PoseSourceError(f"{path}: expected a JSON object of arrays, got {type(data).__name__}")
    else:
        data = _open_npz(path)
    go = _fit_array(path, data, "global_orient", 1, True)
    betas = data.get("betas")
    betas = None if betas is None else _check_finite(path, "betas", np.asarray(betas, float)).reshape(-1)
    jaw = _fit_array(path, data, "jaw_pose", 1, False)
    rel = path.relative_to(root).as_posix() if root is not None else path.name
    return PoseRecord(
        global_orient=_to_y_up(go[0], FRAME_FIXES[frame]),
        body_pose=_fit_array(path, data, "body_pose", 21, True),
        left_hand_pose=_fit_array(path, data, "left_hand_pose", 15, False),
        right_hand_pose=_fit_array(path, data, "right_hand_pose", 15, False),
        jaw_pose=None if jaw is None else jaw[0], betas=betas, source=f"fit:{rel}",
    )


def load_fit_directory(folder: str | Path, frame: str = "y_up") -> list[PoseRecord]:
    """Every per-image SMPL-X fit in `folder` (recursive, sorted).

    One `.npz` or `.json` file per image with keys:
      global_orient  3 values (axis-angle) or a 3x3 matrix
      body_pose      63 values or (21, 3) axis-angle, or (21, 3, 3) matrices
      betas          optional, any length
      left_hand_pose, right_hand_pose  optional, 45 values / (15, 3) (full, not PCA)
      jaw_pose       optional, 3 values
    A leading batch axis of size 1 (smplx output) is accepted.  `frame` names the frame
    of global_orient: "y_up" (SMPL body frame, as is), "z_up" (AMASS-like) or
    "opencv_camera" (HMR-style fits in the camera frame).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PoseSourceError(f"fit directory {folder} does not exist; fix "
                              "pose_sampling.pose_source_paths")
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".npz", ".json") and p.is_file())
    if not files:
        raise PoseSourceError(f"fit directory {folder} has no .npz or .json fits; point "
                              "pose_sampling.pose_source_paths at the folder that holds them")
    return [load_fit(p, frame=frame, root=folder) for p in files]


POSE_SOURCES: tuple[str, ...] = ("procedural", "amass", "fits")


def load_pose_records(kind: str, paths: Sequence[str | Path], rng: np.random.Generator,
                      frames_per_sequence: int = 15) -> list[PoseRecord] | None:
    """All records of the configured pose source; None for "procedural" (sample instead)."""
    if kind not in POSE_SOURCES:
        raise ValueError(f"pose_source={kind!r}: choose from {list(POSE_SOURCES)}")
    if kind == "procedural":
        return None
    if not paths:
        raise PoseSourceError(f"pose_source={kind!r} needs pose_sampling.pose_source_paths "
                              "(AMASS .npz files/folders, or per-image fit folders)")
    if kind == "amass":
        records = list(iter_pose_source(
            paths, rng, frames_per_sequence,
            on_skip=lambda p, why: log.warning("skipping %s: %s", p, why)))
    else:
        records = [r for p in paths for r in load_fit_directory(p)]
    if not records:
        raise PoseSourceError(f"no poses found under {list(map(str, paths))} for "
                              f"pose_source={kind!r}; check pose_sampling.pose_source_paths")
    return records

"""Nothing read from the dataset store is trusted: paths, ids and tables are checked first.

A `labels.parquet` is data, and data can be damaged or crafted. Every stage reads it,
and the paths built from it, through this module:

* `read_label_rows` / `read_parquet_rows` / `read_parquet_frame`: a missing or unreadable
  table is an `InputError` that names the path and the fix, never a bare polars error.
  Label rows must carry a `sample_id` of the documented form (`check_sample_id`).
* `resolve_inside(base, relative, what=...)`: a path *read from data* (a label's
  `control_*` column), resolved with its symlinks and refused unless it stays inside
  `base` (its partition directory). An absolute path, a `../..` path or a symlink that
  leaves the partition raises `UnsafePathError`.
* `store_path(base, *names, what=...)`: a path *written* from ids (an image, a journal
  file, a partition directory). Each name must be one plain path component, so no id can
  make a write leave the store.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

# Sample id `f"{round}-{shard}-{index:06d}"` (pd_assets/CONTRACTS.md), e.g. r0-s0003-000017.
SAMPLE_ID_PATTERN = re.compile(r"r\d+-s\d{4,}-\d{6,}")
SAMPLE_ID_FORM = "r{n}-s{nnnn}-{nnnnnn}, e.g. r0-s0003-000017"
_REMATERIALISE = "re-materialise pose_pool for this partition (pd_assets/CONTRACTS.md)"


class InputError(RuntimeError):
    """An input partition is missing or malformed; names the path and the fix."""


class UnsafePathError(InputError):
    """A path from data (or an id used in a path) would leave the directory it belongs to."""


def check_sample_id(sample_id: object, where: str) -> str:
    """`sample_id` if it has the documented form, else `InputError` naming `where` it came from."""
    if not isinstance(sample_id, str) or not SAMPLE_ID_PATTERN.fullmatch(sample_id):
        raise InputError(f"{where}: sample_id {sample_id!r} is not of the form {SAMPLE_ID_FORM}: {_REMATERIALISE}")
    return sample_id


def resolve_inside(base: str | os.PathLike, relative: object, *, what: str) -> Path:
    """`base / relative` with symlinks resolved; `UnsafePathError` unless it lies inside `base`.

    `what` names the value in the message (e.g. "sample r0-s0000-000003's control_pncc").
    The file need not exist: the caller reports a missing file in its own words."""
    if not isinstance(relative, (str, os.PathLike)) or not str(relative).strip() or "\x00" in str(relative):
        raise UnsafePathError(f"{what} is not a path ({relative!r}): {_REMATERIALISE}")
    rel = Path(relative)
    if rel.is_absolute():
        raise UnsafePathError(f"{what} is the absolute path {str(relative)!r}; label paths are relative to "
                              f"their partition {base}: {_REMATERIALISE}")
    try:
        root = Path(base).resolve()
        target = (root / rel).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise UnsafePathError(f"{what} ({str(relative)!r}) cannot be resolved ({exc}): {_REMATERIALISE}") from exc
    if not target.is_relative_to(root):
        raise UnsafePathError(f"{what} ({str(relative)!r}) resolves to {target}, outside its partition {root}: "
                              f"{_REMATERIALISE}")
    return target


def store_path(base: str | os.PathLike, *names: str, what: str = "output path") -> Path:
    """`base / name / ...` where every name is one plain path component (no separator, not
    `.` or `..`, not empty): the one way output paths are built from ids."""
    for name in names:
        text = str(name)
        if text in ("", ".", "..") or "/" in text or "\\" in text or "\x00" in text:
            raise UnsafePathError(f"{what}: {text!r} is not a plain file or folder name, so the path would "
                                  f"leave {base}; ids have the form {SAMPLE_ID_FORM}")
    return Path(base).joinpath(*names)


def read_parquet_frame(path: Path, what: str, fix: str, columns: list[str] | None = None):
    """The table at `path` as a polars DataFrame, or `InputError` naming the path and `fix`."""
    import polars as pl

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found at {path}: {fix}")
    try:
        return pl.read_parquet(path, columns=columns)
    except Exception as exc:  # polars raises its own ComputeError / IO / schema errors
        raise InputError(f"{what} at {path} is not readable parquet ({type(exc).__name__}: {exc}): {fix}") from exc


def read_parquet_rows(path: Path, what: str, fix: str) -> list[dict]:
    return read_parquet_frame(path, what, fix).to_dicts()


def read_label_rows(pool_dir: Path, fix: str, required: Iterable[str] = ("sample_id",)) -> list[dict]:
    """The rows of `pool_dir/labels.parquet`, each with a valid, unique `sample_id` and the
    `required` columns; `InputError` (path + fix) otherwise."""
    path = Path(pool_dir) / "labels.parquet"
    frame = read_parquet_frame(path, "pose_pool labels", fix)
    missing = [c for c in dict.fromkeys(["sample_id", *required]) if c not in frame.columns]
    if missing:
        raise InputError(f"pose_pool labels at {path} lack column(s) {missing}: {_REMATERIALISE}")
    rows = frame.to_dicts()
    seen: set[str] = set()
    for i, row in enumerate(rows):
        sid = check_sample_id(row["sample_id"], f"{path} row {i}")
        if sid in seen:
            raise InputError(f"{path}: sample_id {sid!r} appears twice: {_REMATERIALISE}")
        seen.add(sid)
    return rows

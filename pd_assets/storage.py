"""Atomic file and directory writes.

A reader (or a re-launched run) must never see a file or a partition that looks
complete but is not: everything is written under a temporary name in the same
directory and renamed into place, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

COMPLETE_MARKER = "_COMPLETE.json"


class StorageError(RuntimeError):
    """A write failed; the message names the path and what to do."""


def _explain(exc: OSError, path: Path) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(
            f"disk full while writing {path}: free space under {path.parent} or point "
            "PD_DATA_ROOT / dataset_store.root at a larger volume; nothing already "
            "written was replaced"
        )
    return StorageError(f"could not write {path}: {exc}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` via a temp file in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _explain(exc, path) from exc
    return path


def atomic_write_json(path: str | os.PathLike, obj: object) -> Path:
    return atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


@contextlib.contextmanager
def atomic_directory(final_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh staging directory; on success it replaces `final_dir` whole.

    On failure the staging directory is removed and `final_dir` (if any) is left as
    it was. The swap renames the old directory aside first, so at no time does a
    half-written directory sit under the final name.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staging = final_dir.with_name(f".{final_dir.name}.staging-{token}")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = final_dir.with_name(f".{final_dir.name}.old-{token}")
    try:
        if final_dir.exists():
            os.replace(final_dir, old)
        os.replace(staging, final_dir)
    except OSError as exc:
        if old.exists() and not final_dir.exists():
            os.replace(old, final_dir)
        shutil.rmtree(staging, ignore_errors=True)
        raise _explain(exc, final_dir) from exc
    shutil.rmtree(old, ignore_errors=True)


def remove_stale_staging(parent: str | os.PathLike) -> list[Path]:
    """Delete staging/old leftovers of killed runs under `parent` (never final outputs)."""
    parent = Path(parent)
    removed = []
    if not parent.is_dir():
        return removed
    for p in parent.iterdir():
        if p.name.startswith(".") and (".staging-" in p.name or ".old-" in p.name or ".tmp-" in p.name):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            removed.append(p)
    return removed


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()

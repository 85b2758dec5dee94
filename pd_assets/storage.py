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


_FULL = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM}
# errnos that say "this place cannot be written", whatever the code was doing there
STORAGE_ERRNOS = _FULL | _DENIED | {errno.EROFS}
_MOVE_ROOT = "point PD_DATA_ROOT / dataset_store.root at"


def explain_os_error(exc: OSError, path: str | os.PathLike) -> StorageError:
    """The one place that turns a failed write under `path` into a message with the fix."""
    path = Path(path)
    culprit = Path(exc.filename) if exc.filename else path
    if exc.errno in _FULL:
        return StorageError(
            f"disk full while writing {path}: free space under {path.parent} or {_MOVE_ROOT} "
            "a larger volume; nothing already written was replaced"
        )
    if exc.errno == errno.EROFS:
        return StorageError(
            f"cannot write {path}: {culprit} is on a read-only file system; {_MOVE_ROOT} a "
            "writable folder (or remount it read-write)"
        )
    if exc.errno in _DENIED:
        return StorageError(
            f"cannot write {path}: permission denied on {culprit} for user id {os.getuid()}; "
            f"make it writable by this user or {_MOVE_ROOT} a folder this user owns"
        )
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) or isinstance(exc, NotADirectoryError):
        return StorageError(
            f"cannot write {path}: {culprit} (or a folder above it) is a file, not a folder; "
            f"move that file away or {_MOVE_ROOT} a folder"
        )
    return StorageError(f"could not write {path}: {exc}")


@contextlib.contextmanager
def explained_os_errors(path: str | os.PathLike) -> Iterator[None]:
    """Run a write to `path`; an OSError leaves as a StorageError naming the path and the fix."""
    try:
        yield
    except OSError as exc:
        raise explain_os_error(exc, path) from exc


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` via a temp file in the same directory, then rename."""
    path = Path(path)
    with explained_os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise explain_os_error(exc, path) from exc
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
    token = uuid.uuid4().hex[:8]
    staging = final_dir.with_name(f".{final_dir.name}.staging-{token}")
    with explained_os_errors(final_dir):
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    try:
        yield staging
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.errno in STORAGE_ERRNOS:
            raise explain_os_error(exc, final_dir) from exc
        raise
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
        raise explain_os_error(exc, final_dir) from exc
    shutil.rmtree(old, ignore_errors=True)


def clean_partition_leftovers(final_dir: str | os.PathLike) -> list[Path]:
    """Remove what killed runs of *this* partition left beside it; never touch siblings.

    A run killed between the two renames of `atomic_directory` leaves the previous
    partition only under `.{name}.old-*`: it is moved back rather than deleted.
    Callers hold `partition_lock` so no live run of this partition owns these files.
    """
    final_dir = Path(final_dir)
    parent, name = final_dir.parent, final_dir.name
    if not parent.is_dir():
        return []
    removed = []
    olds = sorted(parent.glob(f".{name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not final_dir.exists():
        os.replace(olds.pop(), final_dir)
    for p in [*parent.glob(f".{name}.staging-*"), *olds]:
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


@contextlib.contextmanager
def partition_lock(root: str | os.PathLike, *key: str, timeout_s: float = 30.0) -> Iterator[None]:
    """Exclusive lock on one partition across processes (a file lock under `root/.locks`).

    Two runs of the same partition (a backfill and a manual launch, say) would otherwise
    write into each other's staging directories.
    """
    from filelock import FileLock, Timeout

    lock_dir = Path(root) / ".locks"
    lock_path = lock_dir / ("-".join(key) + ".lock")
    lock = FileLock(str(lock_path), timeout=timeout_s)
    with explained_os_errors(lock_path):
        lock_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire()
    except Timeout:  # a TimeoutError, so an OSError: caught first
        raise StorageError(
            f"partition {'/'.join(key)} is being written by another run (lock {lock_path}): "
            "wait for that run to finish or cancel it, then launch again"
        ) from None
    except OSError as exc:
        raise explain_os_error(exc, lock_path) from exc
    try:
        yield
    finally:
        lock.release()


def remove_stale_staging(directory: str | os.PathLike) -> list[Path]:
    """Delete temp leftovers of killed runs inside a directory that one partition owns.

    Only for a partition's own folders (its images/, journal/): never call it on a
    folder shared by several partitions; use `clean_partition_leftovers` there.
    """
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
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

"""WebDataset `.tar` shards: deterministic bytes, atomic writes, plain-tarfile readable.

A sample is a key (the sample id, no dots) and files `{key}.{ext}`: `jpg`, `json`,
optionally `pncc.png`. Members are written sorted by key then extension, with a fixed
mtime, owner and mode, so writing the same samples twice gives identical bytes.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from pd_assets.storage import explain_os_error, explained_os_errors

FIXED_MTIME = 0
_EXT_ORDER = ("jpg", "json", "pncc.png")


def _ext_key(ext: str) -> tuple[int, str]:
    return (_EXT_ORDER.index(ext) if ext in _EXT_ORDER else len(_EXT_ORDER), ext)


class ShardWriter:
    """Stream samples into a tar at `path` in strictly increasing key order; the file
    appears under its final name only when the writer closes without error."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{uuid.uuid4().hex[:8]}")
        with explained_os_errors(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tar = tarfile.open(self._tmp, "w", format=tarfile.GNU_FORMAT)
        self.keys: list[str] = []

    def add(self, key: str, files: Mapping[str, bytes]) -> None:
        if not key or "." in key or "/" in key:
            raise ValueError(f"WebDataset key {key!r} must be non-empty and contain no '.' or '/'")
        if self.keys and key <= self.keys[-1]:
            raise ValueError(f"shard keys must be strictly increasing: {key!r} after {self.keys[-1]!r}")
        for ext in sorted(files, key=_ext_key):
            data = files[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mtime = FIXED_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
        self.keys.append(key)

    def close(self) -> None:
        try:
            self._tar.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise explain_os_error(exc, self.path) from exc

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._tar.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_shard(path: str | os.PathLike, samples: Iterable[tuple[str, Mapping[str, bytes]]]) -> list[str]:
    """Write `samples` ((key, {ext: bytes}), ...) sorted by key; returns the keys in order."""
    items = sorted(samples, key=lambda kv: kv[0])
    if len({k for k, _ in items}) != len(items):
        raise ValueError("duplicate sample keys in one shard: sample ids must be unique")
    with ShardWriter(path) as writer:
        for key, files in items:
            writer.add(key, files)
    return writer.keys


def shard_keys(path: str | os.PathLike) -> list[str]:
    """Sample keys in a shard (the part of each member name before the first dot)."""
    seen: dict[str, None] = {}
    with tarfile.open(path, "r") as tar:
        for member in tar.getmembers():
            seen.setdefault(Path(member.name).name.split(".", 1)[0], None)
    return list(seen)

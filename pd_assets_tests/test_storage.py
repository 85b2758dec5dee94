"""Atomic writes keep what was written before; seeds derive only from their labelled parts."""

from __future__ import annotations

import errno
import os

import pytest

from pd_assets import storage
from pd_assets.seeding import derive_seed, rng_for


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a" / "labels.parquet"
    storage.atomic_write_bytes(target, b"first")
    storage.atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["labels.parquet"]


def test_disk_full_names_the_path_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "labels.parquet"
    storage.atomic_write_bytes(target, b"old")
    real_replace = os.replace

    def full(src, dst):  # the temp file was written; the disk fills before the rename
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", full)
    with pytest.raises(storage.StorageError, match="disk full while writing .*labels.parquet.*PD_DATA_ROOT"):
        storage.atomic_write_bytes(target, b"new")
    monkeypatch.setattr(storage.os, "replace", real_replace)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.parquet"]  # no temp file left


def test_failed_partition_keeps_the_previous_one(tmp_path):
    final = tmp_path / "pose_pool" / "r0" / "s0000"
    with storage.atomic_directory(final) as staging:
        (staging / "labels.parquet").write_bytes(b"v1")
    with pytest.raises(RuntimeError, match="boom"):
        with storage.atomic_directory(final) as staging:
            (staging / "labels.parquet").write_bytes(b"half")
            raise RuntimeError("boom")
    assert (final / "labels.parquet").read_bytes() == b"v1"
    assert [p.name for p in final.parent.iterdir()] == ["s0000"]


def test_stale_staging_is_removed_but_final_outputs_are_not(tmp_path):
    (tmp_path / "s0000").mkdir()
    (tmp_path / ".s0000.staging-1234abcd").mkdir()
    (tmp_path / ".s0001.old-1234abcd").mkdir()
    (tmp_path / ".x.png.tmp-1234abcd").write_bytes(b"")
    removed = storage.remove_stale_staging(tmp_path)
    assert len(removed) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["s0000"]


def test_seeds_depend_on_every_part_and_nothing_else():
    base = derive_seed(7, "r0", "s0000", 3, "pose")
    assert base == derive_seed(7, "r0", "s0000", 3, "pose")
    others = {derive_seed(8, "r0", "s0000", 3, "pose"), derive_seed(7, "r1", "s0000", 3, "pose"),
              derive_seed(7, "r0", "s0001", 3, "pose"), derive_seed(7, "r0", "s0000", 4, "pose"),
              derive_seed(7, "r0", "s0000", 3, "camera")}
    assert base not in others and len(others) == 5
    assert 0 <= base < 2**63
    # parts are separated, so ("r0", "1") and ("r01",) are different streams
    assert derive_seed(1, "r0", "1") != derive_seed(1, "r01")
    assert rng_for(7, "r0", "s0000", 3, "pose").random() == rng_for(7, "r0", "s0000", 3, "pose").random()

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


def test_cleanup_touches_only_this_partitions_leftovers(tmp_path):
    (tmp_path / "s0000").mkdir()
    (tmp_path / ".s0000.staging-1234abcd").mkdir()
    (tmp_path / ".s0001.staging-5678abcd").mkdir()  # a sibling's live run: keep
    removed = storage.clean_partition_leftovers(tmp_path / "s0000")
    assert [p.name for p in removed] == [".s0000.staging-1234abcd"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".s0001.staging-5678abcd", "s0000"]


def test_partition_orphaned_between_renames_is_restored(tmp_path):
    """Killed after moving the old partition aside, before the new one moved in."""
    old = tmp_path / ".s0000.old-1234abcd"
    old.mkdir()
    (old / "labels.parquet").write_bytes(b"v1")
    (tmp_path / ".s0000.staging-1234abcd").mkdir()
    storage.clean_partition_leftovers(tmp_path / "s0000")
    assert (tmp_path / "s0000" / "labels.parquet").read_bytes() == b"v1"
    assert [p.name for p in tmp_path.iterdir()] == ["s0000"]


def test_disk_full_inside_a_partition_is_explained(tmp_path):
    final = tmp_path / "pose_pool" / "r0" / "s0000"
    with pytest.raises(storage.StorageError, match="disk full while writing .*s0000"):
        with storage.atomic_directory(final):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(final.parent.iterdir()) == []


def test_second_writer_of_a_partition_is_refused_clearly(tmp_path):
    import subprocess
    import sys
    import textwrap

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).resolve().parents[1])!r})
        from pd_assets import storage
        with storage.partition_lock({str(tmp_path)!r}, "pose_pool", "r0", "s0000"):
            print("held", flush=True)
            time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(storage.StorageError, match="being written by another run"):
            with storage.partition_lock(tmp_path, "pose_pool", "r0", "s0000", timeout_s=0.5):
                pass
        with storage.partition_lock(tmp_path, "pose_pool", "r0", "s0001", timeout_s=0.5):
            pass  # another partition is free
    finally:
        holder.kill()
        holder.wait()
    with storage.partition_lock(tmp_path, "pose_pool", "r0", "s0000", timeout_s=5):
        pass  # a killed holder releases the lock


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

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


def _read_only_below(monkeypatch, root):
    """Simulate a read-only mount at `root` (tests run as root, so chmod would not stop a write)."""
    real_mkdir = storage.Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(root)) and not self.exists():
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(storage.Path, "mkdir", mkdir)


def test_read_only_data_root_is_explained_by_the_lock(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    _read_only_below(monkeypatch, root)
    with pytest.raises(storage.StorageError) as info:
        with storage.partition_lock(root, "pose_pool", "r0", "s0000"):
            pass
    msg = str(info.value)
    assert f"{root}/.locks" in msg and "read-only file system" in msg
    assert "PD_DATA_ROOT" in msg  # the fix
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only file system"),
                                         (errno.EACCES, "permission denied"),
                                         (errno.ENOSPC, "disk full")])
def test_every_write_path_explains_the_same_errors(tmp_path, monkeypatch, code, words):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "x"))

    monkeypatch.setattr(storage.Path, "mkdir", fail)
    with pytest.raises(storage.StorageError, match=f"{words}.*PD_DATA_ROOT"):
        storage.atomic_write_bytes(tmp_path / "a" / "labels.parquet", b"x")
    with pytest.raises(storage.StorageError, match=f"{words}.*PD_DATA_ROOT"):
        with storage.atomic_directory(tmp_path / "pose_pool" / "r0" / "s0000"):
            pass
    with pytest.raises(storage.StorageError, match=f"{words}.*PD_DATA_ROOT"):
        with storage.partition_lock(tmp_path, "pose_pool", "r0", "s0000"):
            pass


def test_data_root_that_is_a_file_is_explained(tmp_path):
    root = tmp_path / "data"
    root.write_bytes(b"not a folder")  # PD_DATA_ROOT pointed at a file: a real OSError, no mock
    with pytest.raises(storage.StorageError, match=f"{root}.*is a file, not a folder.*PD_DATA_ROOT"):
        with storage.partition_lock(root, "filtered_shards", "r0", "s0000"):
            pass


def test_errors_inside_a_staged_partition_that_are_not_about_storage_pass_through(tmp_path):
    with pytest.raises(FileNotFoundError):
        with storage.atomic_directory(tmp_path / "pose_pool" / "r0" / "s0000"):
            open(tmp_path / "missing-input.npz", "rb")

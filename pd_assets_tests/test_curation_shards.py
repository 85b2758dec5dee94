"""WebDataset shards (deterministic, readable by webdataset and tarfile) and the DuckDB catalog."""

from __future__ import annotations

import hashlib
import json
import tarfile
import threading

import polars as pl
import pytest

from pd_assets.curation.catalog import CATALOG_NAME, query, refresh_catalog
from pd_assets.curation.shards import ShardWriter, shard_keys, write_shard


def _samples(n=3):
    return [(f"r0-s0000-{i:06d}", {"json": json.dumps({"i": i}).encode(), "jpg": b"\xff\xd8 fake " + bytes([i]),
                                   "pncc.png": b"png" + bytes([i])}) for i in range(n)]


def test_shard_bytes_are_reproducible_and_sorted(tmp_path):
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    write_shard(a, _samples())
    write_shard(b, list(reversed(_samples())))
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    with tarfile.open(a) as tar:
        names = tar.getnames()
        assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o644 for m in tar.getmembers())
    assert names[:3] == ["r0-s0000-000000.jpg", "r0-s0000-000000.json", "r0-s0000-000000.pncc.png"]
    assert shard_keys(a) == [k for k, _ in _samples()]


def test_shard_loads_with_webdataset(tmp_path):
    import webdataset as wds

    path = tmp_path / "s.tar"
    write_shard(path, _samples())
    rows = list(wds.WebDataset(str(path), shardshuffle=False))
    assert [r["__key__"] for r in rows] == [k for k, _ in _samples()]
    assert json.loads(rows[1]["json"]) == {"i": 1} and rows[2]["pncc.png"] == b"png\x02"


def test_writer_refuses_bad_keys_and_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "s.tar"
    with pytest.raises(ValueError, match="no '.'"):
        write_shard(path, [("a.b", {"json": b"{}"})])
    with pytest.raises(ValueError, match="duplicate"):
        write_shard(path, [("a", {"json": b"{}"}), ("a", {"json": b"{}"})])
    with pytest.raises(ValueError, match="strictly increasing"):
        with ShardWriter(path) as w:
            w.add("b", {"json": b"{}"})
            w.add("a", {"json": b"{}"})
    assert list(tmp_path.iterdir()) == []


def _index(root, rnd, shard, n, kept_every=2):
    part = root / "filtered_shards" / rnd / shard
    part.mkdir(parents=True)
    pl.DataFrame({
        "sample_id": [f"{rnd}-{shard}-{i:06d}" for i in range(n)], "round": [rnd] * n, "shard": [shard] * n,
        "kept": [i % kept_every == 0 for i in range(n)], "oks": [0.9 + 0.01 * i for i in range(n)],
        "difficulty_bin": ["low"] * n, "reject_stage": [None if i % kept_every == 0 else "pose_alignment" for i in range(n)],
        "failed_checks": [[] if i % kept_every == 0 else ["oks"] for i in range(n)],
    }).write_parquet(part / "index.parquet")


def test_catalog_answers_the_readme_question(tmp_path):
    _index(tmp_path, "r0", "s0000", 4)
    _index(tmp_path, "r0", "s0001", 2)
    _index(tmp_path, "r1", "s0000", 3, kept_every=3)
    (tmp_path / "filtered_shards" / "r0" / ".s0002.staging-abc").mkdir()  # never read
    path = refresh_catalog(tmp_path)
    assert path == tmp_path / CATALOG_NAME
    rows = query(tmp_path, "SELECT round, difficulty_bin, count(*) AS kept, round(avg(oks), 3) AS mean_oks "
                           "FROM kept_samples GROUP BY ALL ORDER BY ALL")
    assert rows == [("r0", "low", 3, 0.907), ("r1", "low", 1, 0.9)]
    summary = query(path, "SELECT round, shard, samples, kept FROM shard_summary ORDER BY ALL")
    assert summary == [("r0", "s0000", 4, 2), ("r0", "s0001", 2, 1), ("r1", "s0000", 3, 1)]
    assert query(path, "SELECT sum(samples) FROM reject_reasons")[0][0] == 5
    # new partitions show up on the next query (the views glob at query time)
    _index(tmp_path, "r2", "s0000", 2)
    assert query(path, "SELECT count(*) FROM samples")[0][0] == 11


def test_concurrent_refreshes_leave_a_valid_catalog(tmp_path):
    _index(tmp_path, "r0", "s0000", 4)
    errors = []

    def refresh():
        try:
            refresh_catalog(tmp_path)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert query(tmp_path, "SELECT count(*) FROM samples")[0][0] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.duckdb", "catalog.duckdb.lock", "filtered_shards"]


def test_catalog_without_any_index_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialise filtered_shards"):
        refresh_catalog(tmp_path)

"""The DuckDB catalog (`catalog.duckdb` at the dataset root): views over every shard.

Views (no data is copied; each query reads the parquet files it needs):

* `samples`        every scored sample of every round and shard (all index.parquet files)
* `kept_samples`   the samples written to the WebDataset shards
* `shard_summary`  per round and shard: samples, kept, pass rate, median kept OKS
* `reject_reasons` per round, stage and first failing check: how many
* `labels`         every pose_pool label row (when pose_pool partitions exist)

Example ("how many kept samples per round and difficulty bin, and their mean OKS")::

    duckdb data/catalog.duckdb -c "SELECT round, difficulty_bin, count(*) AS kept,
        round(avg(oks), 3) AS mean_oks FROM kept_samples GROUP BY ALL ORDER BY ALL"

Refreshing writes a new database file and renames it over the old one under a file
lock, so concurrent partitions never corrupt it and readers see the old or the new
catalog, never half of one. The views hold absolute paths: after moving the dataset,
run `python -m pd_assets.curation.catalog --root NEW_ROOT`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import uuid
from pathlib import Path

CATALOG_NAME = "catalog.duckdb"
INDEX_GLOB = "filtered_shards/r*/s*/index.parquet"  # r*/s*: skips .staging-/.old- dirs
LABELS_GLOB = "pose_pool/r*/s*/labels.parquet"


def _views(root: Path, with_labels: bool) -> list[str]:
    index = (root / INDEX_GLOB).as_posix().replace("'", "''")
    sql = [
        f"CREATE VIEW samples AS SELECT * FROM read_parquet('{index}', union_by_name = true)",
        "CREATE VIEW kept_samples AS SELECT * FROM samples WHERE kept",
        """CREATE VIEW shard_summary AS
           SELECT round, shard, count(*) AS samples, count(*) FILTER (WHERE kept) AS kept,
                  avg(CAST(kept AS DOUBLE)) AS pass_rate,
                  median(oks) FILTER (WHERE kept) AS median_oks_kept, avg(oks) AS mean_oks
           FROM samples GROUP BY round, shard""",
        """CREATE VIEW reject_reasons AS
           SELECT round, reject_stage, failed_checks[1] AS first_check, count(*) AS samples
           FROM samples WHERE NOT kept GROUP BY ALL""",
    ]
    if with_labels:
        labels = (root / LABELS_GLOB).as_posix().replace("'", "''")
        sql.append(f"CREATE VIEW labels AS SELECT * FROM read_parquet('{labels}', union_by_name = true)")
    return sql


def refresh_catalog(root: str | os.PathLike, timeout_s: float = 120.0) -> Path:
    """(Re)build `catalog.duckdb` under `root` atomically; returns its path."""
    import duckdb
    from filelock import FileLock

    root = Path(root).expanduser().resolve()
    target = root / CATALOG_NAME
    if not any(root.glob(INDEX_GLOB)):
        raise FileNotFoundError(
            f"no filtered_shards index under {root}: materialise filtered_shards first"
        )
    with FileLock(str(target) + ".lock", timeout=timeout_s):
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            con = duckdb.connect(str(tmp))
            try:
                for stmt in _views(root, with_labels=any(root.glob(LABELS_GLOB))):
                    con.execute(stmt)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            os.replace(tmp, target)
        finally:
            for leftover in (tmp, Path(str(tmp) + ".wal")):
                with contextlib.suppress(OSError):
                    leftover.unlink()
    return target


def query(root_or_catalog: str | os.PathLike, sql: str):
    """Run `sql` read-only against the catalog; returns a list of row tuples."""
    import duckdb

    path = Path(root_or_catalog)
    if path.is_dir():
        path = path / CATALOG_NAME
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild the DuckDB catalog over filtered_shards.")
    parser.add_argument("--root", default=os.environ.get("PD_DATA_ROOT", "data"), help="dataset root")
    parser.add_argument("--sql", default=None, help="a query to run after refreshing")
    args = parser.parse_args(argv)
    path = refresh_catalog(args.root)
    print(path)
    if args.sql:
        for row in query(path, args.sql):
            print(*row, sep="\t")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

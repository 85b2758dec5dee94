"""What the difficulty predictor learns from: every scored sample of one round.

Every shard's `filtered_shards/{round}/{shard}/index.parquet` (kept *and* rejected
samples) joined on `sample_id` with that shard's `pose_pool` labels. The target is the
sample's OKS; a sample in which the detector found no person counts as OKS 0 (the hardest
outcome, not a missing value). Samples without an OKS for another reason (an unreadable
image, a label with no visible keypoint) say nothing about difficulty and are left out,
and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pd_assets.mining.features import FEATURE_COLUMNS
from pd_assets.safe_io import InputError, check_sample_id, read_parquet_frame

INDEX_COLUMNS = ("sample_id", "oks", "person_count", "kept", "difficulty_bin")


class MiningInputError(InputError):
    """An input of mined_hard_set is missing or unreadable; the message says what to materialise."""


@dataclass
class RoundTable:
    frame: pl.DataFrame  # label feature columns + index columns + `oks_target` (Float64)
    num_scored: int      # index rows read
    num_no_person: int   # counted as OKS 0
    num_excluded: int    # no OKS for another reason (left out)


def oks_target() -> pl.Expr:
    """`oks_target`: OKS, or 0.0 where no person was detected; null where neither applies."""
    return (pl.when(pl.col("oks").is_not_null()).then(pl.col("oks"))
            .when(pl.col("person_count") == 0).then(pl.lit(0.0))
            .otherwise(pl.lit(None, dtype=pl.Float64)).alias("oks_target"))


def load_round(root: Path, round_name: str, shards: list[str]) -> RoundTable:
    """Every scored sample of `round_name` over `shards`, with its labels and `oks_target`."""
    root = Path(root)
    missing = [s for s in shards if not (root / "filtered_shards" / round_name / s / "index.parquet").is_file()]
    if missing:
        keys = ", ".join(f"{round_name}|{s}" for s in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise MiningInputError(
            f"mined_hard_set[{round_name}] learns from every shard of the round, but "
            f"{len(missing)} of {len(shards)} have no {root}/filtered_shards/{round_name}/<shard>/index.parquet "
            f"(first: {missing[0]}): materialise filtered_shards for {keys}")
    parts = []
    for shard in shards:
        fix = f"re-materialise pose_pool, raw_generations and filtered_shards for {round_name}|{shard}"
        index = read_parquet_frame(root / "filtered_shards" / round_name / shard / "index.parquet",
                                   "filtered_shards index", fix)
        labels_path = root / "pose_pool" / round_name / shard / "labels.parquet"
        labels = read_parquet_frame(labels_path, "pose_pool labels", fix)
        absent = [c for c in FEATURE_COLUMNS if c not in labels.columns]
        if absent:
            raise MiningInputError(f"pose_pool labels at {labels_path} lack columns {absent}: {fix}")
        keep = ["sample_id", *FEATURE_COLUMNS,
                *[c for c in ("round", "shard", "index", "pose_source") if c in labels.columns]]
        for i, sid in enumerate(labels["sample_id"].to_list()):
            check_sample_id(sid, f"{labels_path} row {i}")
        joined = index.select(list(INDEX_COLUMNS)).join(labels.select(keep), on="sample_id", how="inner")
        if joined.height < index.height:
            raise MiningInputError(
                f"{index.height - joined.height} samples of {round_name}|{shard} are in the filtered_shards "
                f"index but not in the pose_pool labels (the pose pool changed after curation): {fix}")
        parts.append(joined)
    frame = pl.concat(parts, how="diagonal_relaxed").with_columns(oks_target())
    scored = frame.height
    no_person = frame.filter(pl.col("oks").is_null() & (pl.col("person_count") == 0)).height
    usable = frame.filter(pl.col("oks_target").is_not_null())
    return RoundTable(frame=usable, num_scored=scored, num_no_person=no_person,
                      num_excluded=scored - usable.height)

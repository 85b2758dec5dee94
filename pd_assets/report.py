"""Print where one partition's outputs are and what they hold (what `make demo` ends with).

Usage: `python -m pd_assets.report --partition 'r0|s0000' [--root DATA_ROOT]`.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import polars as pl

from pd_assets.safe_io import read_parquet_frame
from resources.profiles import data_root


def _pose_pool(part: Path) -> list[str]:
    labels = read_parquet_frame(part / "labels.parquet", "pose_pool labels", "re-materialise pose_pool")
    controls = sorted(p.name for p in (part / "controls").iterdir())
    visible = sum(sum(v) for v in labels["keypoints_visible"].to_list())
    return [
        f"pose_pool        {part}",
        f"  {len(labels)} samples ({labels['body_model'][0]}), controls: {', '.join(controls)}",
        f"  pose families: {dict(Counter(labels['pose_family'].to_list()).most_common())}",
        f"  framings: {dict(Counter(labels['framing'].to_list()))}; "
        f"visible keypoints: {visible}/{17 * len(labels)}",
        f"  labels: {part / 'labels.parquet'}   preview: {part / 'preview.png'}",
        f"  first prompt: {labels['prompt'][0]}",
    ]


def _raw_generations(part: Path) -> list[str]:
    provenance = pl.read_parquet(part / "provenance.parquet")
    images = list((part / "images").glob("*.png"))
    backend = provenance["backend"][0] if "backend" in provenance.columns else "?"
    failed = provenance["error"].drop_nulls().len() if "error" in provenance.columns else 0
    no_image = f", {failed} samples without an image (provenance column `error` says why)" if failed else ""
    return [
        f"raw_generations  {part}",
        f"  {len(images)} images, backend {backend}{no_image}; provenance: {part / 'provenance.parquet'}",
    ]


def _filtered_shards(part: Path) -> list[str]:
    index = pl.read_parquet(part / "index.parquet")
    kept = index.filter(pl.col("kept"))
    reasons = Counter(index.filter(~pl.col("kept"))["reject_stage"].to_list())
    median = kept["oks"].median() if len(kept) else float("nan")
    tars = sorted(part.glob("*.tar"))
    return [
        f"filtered_shards  {part}",
        f"  kept {len(kept)}/{len(index)} (pass rate {len(kept) / max(len(index), 1):.3f}), "
        f"median kept OKS {median:.3f}; rejected by stage: {dict(reasons)}",
        f"  shard: {', '.join(str(t) for t in tars)}   index: {part / 'index.parquet'}",
    ]


def report(root: Path, round_name: str, shard: str) -> str:
    lines = [f"dataset store: {root}"]
    for asset, describe in (("pose_pool", _pose_pool), ("raw_generations", _raw_generations),
                            ("filtered_shards", _filtered_shards)):
        part = root / asset / round_name / shard
        lines += describe(part) if part.exists() else [f"{asset:<16} not materialised for {round_name}|{shard}"]
    catalog = root / "catalog.duckdb"
    if catalog.exists():
        from pd_assets.curation.catalog import query

        rows = query(root, "SELECT round, difficulty_bin, count(*) AS samples, "
                           "count(*) FILTER (WHERE kept) AS kept, round(avg(oks) FILTER (WHERE kept), 3) "
                           "FROM samples WHERE difficulty_bin IS NOT NULL GROUP BY ALL ORDER BY ALL")
        lines.append(f"catalog: {catalog}  (samples per round and OKS difficulty bin)")
        lines.append(f"  {'round':<6}{'bin':<11}{'samples':>8}{'kept':>6}{'mean kept OKS':>15}")
        lines += [f"  {r:<6}{b:<11}{n:>8}{k:>6}{'' if m is None else m:>15}" for r, b, n, k, m in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--partition", default="r0|s0000")
    parser.add_argument("--root", default=None)
    args = parser.parse_args(argv)
    round_name, shard = args.partition.split("|")
    print(report(Path(args.root or data_root()), round_name, shard))
    return 0


if __name__ == "__main__":
    sys.exit(main())

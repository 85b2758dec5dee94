"""Two curriculum rounds on the render backend: does mining make round 1 harder?

In a temp dataset store (or --root), with the `local` profile (render-backend generator,
mediapipe, 64 samples per shard at 512 px unless --samples says otherwise):

1. round r0: pose_pool -> raw_generations -> filtered_shards for every shard (random poses);
2. mined_hard_set[r0]: the OKS predictor on every scored r0 sample, the candidate pool, the
   curriculum selection;
3. round r1: the same three assets, pose_pool drawing from mined_hard_set[r0];

then prints the predictor's held-out Spearman, each round's mean OKS before filtering (a
sample with no detected person counts as OKS 0, as in mining), how many r1 samples still
pass the filter, and the per-round table from the DuckDB catalog.

    .venv/bin/python benchmarks/bench_mining.py [--shards 4] [--samples 64] [--pool-multiple 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

OKS_TARGET_SQL = "coalesce(oks, CASE WHEN person_count = 0 THEN 0.0 END)"
TABLE_SQL = f"""
WITH s AS (SELECT round, kept, oks, {OKS_TARGET_SQL} AS oks_t FROM samples)
SELECT round, count(*) AS samples, count(*) FILTER (WHERE kept) AS kept,
       round(avg(oks_t), 3) AS mean_oks, round(avg(oks), 3) AS mean_oks_detected,
       count(*) FILTER (WHERE oks_t >= 0.8) AS low,
       count(*) FILTER (WHERE oks_t >= 0.6 AND oks_t < 0.8) AS medium,
       count(*) FILTER (WHERE oks_t >= 0.4 AND oks_t < 0.6) AS high,
       count(*) FILTER (WHERE oks_t < 0.4) AS very_high,
       count(*) FILTER (WHERE oks_t IS NULL) AS no_oks
FROM s GROUP BY round ORDER BY round
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=4, help="shards per round (>= 4 for the README figure)")
    parser.add_argument("--samples", type=int, default=None, help="samples per shard (default: the local profile's)")
    parser.add_argument("--pool-multiple", type=float, default=None, help="candidates per selected sample")
    parser.add_argument("--hardest-fraction", type=float, default=None, help="r0's hardest fraction")
    parser.add_argument("--root", default=None, help="dataset store (default: a temp dir, removed after)")
    args = parser.parse_args()
    # partition counts are read at import: one round's mined set needs exactly these shards
    os.environ["PD_NUM_SHARDS"] = str(args.shards)
    os.environ["PD_NUM_ROUNDS"] = str(max(2, int(os.environ.get("PD_NUM_ROUNDS", "2"))))
    os.environ["PD_PROFILE"] = "local"
    if args.root:
        Path(args.root).mkdir(parents=True, exist_ok=True)
        run(Path(args.root), args)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_mining_") as tmp:
            run(Path(tmp) / "data", args)


def _materialize(assets, partition: str, resources: dict):
    import dagster as dg

    result = dg.materialize(assets, partition_key=partition, resources=resources, raise_on_error=False)
    if not result.success:
        errors = [str(e.event_specific_data.error) for e in result.get_step_failure_events()]
        raise SystemExit(f"{partition}: materialisation failed: {errors[0][:2000] if errors else 'see log'}")
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    return result, failed


def run(root: Path, args) -> None:
    import json

    import dagster as dg

    from pd_assets.curation.assets import CURATION_ASSETS
    from pd_assets.curation.catalog import query
    from pd_assets.curation.checks import CURATION_CHECKS
    from pd_assets.generation.assets import GENERATION_ASSETS
    from pd_assets.generation.checks import GENERATION_CHECKS
    from pd_assets.mining.assets import MINING_ASSETS
    from pd_assets.mining.checks import MINING_CHECKS
    from pd_assets.partitions import round_shard_partitions, shard_partitions
    from pd_assets.poses.assets import POSES_ASSETS
    from pd_assets.poses.checks import POSES_CHECKS
    from resources.dataset_store import DatasetStoreResource
    from resources.mining import MiningResource
    from resources.pose_sampling import PoseSamplingResource
    from resources.profiles import resources_for_profile

    resources = resources_for_profile("local")
    resources["dataset_store"] = DatasetStoreResource(root=str(root))
    if args.samples:
        local = resources["pose_sampling"]
        resources["pose_sampling"] = PoseSamplingResource(samples_per_shard=args.samples, width=local.width,
                                                          height=local.height)
    mining_update = {}
    if args.pool_multiple:
        mining_update["pool_multiple"] = args.pool_multiple
    if args.hardest_fraction:
        mining_update["hardest_fraction_schedule"] = [args.hardest_fraction]
    resources["mining"] = MiningResource(**mining_update)  # the local profile's are the defaults
    shards = shard_partitions.get_partition_keys()
    chain = [*POSES_ASSETS, *GENERATION_ASSETS, *CURATION_ASSETS, *POSES_CHECKS, *GENERATION_CHECKS, *CURATION_CHECKS]
    print(f"dataset store {root}; {len(shards)} shards x {resources['pose_sampling'].samples_per_shard} samples "
          f"per round; generator {resources['generator'].backend}; mining {resources['mining'].model_dump()}",
          flush=True)
    seconds = {}
    for round_name in ("r0", "r1"):
        if round_name == "r1":
            t = time.perf_counter()
            upstream = dg.AssetSpec("filtered_shards", partitions_def=round_shard_partitions)
            mined, failed = _materialize([upstream, *MINING_ASSETS, *MINING_CHECKS], "r0", resources)
            seconds["mined_hard_set[r0]"] = time.perf_counter() - t
            meta = mined.get_asset_materialization_events()[0].materialization.metadata
            print(f"mined_hard_set[r0] in {seconds['mined_hard_set[r0]']:.0f} s; failed checks: {failed or 'none'}",
                  flush=True)
        for shard in shards:
            t = time.perf_counter()
            _, failed = _materialize(chain, f"{round_name}|{shard}", resources)
            seconds[f"{round_name}|{shard}"] = time.perf_counter() - t
            print(f"{round_name}|{shard}: {seconds[f'{round_name}|{shard}']:.0f} s; failed checks: "
                  f"{failed or 'none'}", flush=True)

    report = json.loads((root / "mined_hard_set" / "r0" / "report.json").read_text())
    rows = query(root, TABLE_SQL)
    by_round = {r[0]: r for r in rows}
    header = ("round", "samples", "kept", "mean_oks", "mean_oks_detected", "low", "medium", "high", "very_high",
              "no_oks")
    print("\nper-round table (DuckDB catalog; mean_oks counts no person as 0, bins on that OKS):")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")
    spear, mean0, mean1 = report["predictor_spearman"], by_round["r0"][3], by_round["r1"][3]
    kept1 = by_round["r1"][2]
    print(f"\npredictor (trained on r0, {report['training']['num_used']} samples, split {report['split_sizes']}): "
          f"held-out Spearman {spear if spear is None else round(spear, 3)} (target >= 0.3), "
          f"MAE {report['predictor_mae']:.3f}, validation Spearman {report['predictor_validation_spearman']}, "
          f"{report['best_iteration']} trees")
    print(f"importance (gain share): " + ", ".join(
        f"{k} {v:.2f}" for k, v in list(report["importance_by_group"].items())[:6]))
    print(f"selection: {report['num_selected']} of {report['num_candidates']} candidates, hardest fraction "
          f"{report['hardest_fraction']}, diversity {report['num_diversity']}, duplicates skipped "
          f"{report['duplicates_skipped']}; mean predicted OKS selected {report['mean_predicted_oks_selected']:.3f} "
          f"vs pool {report['mean_predicted_oks_pool']:.3f}; bins pool {report['bins_pool']}, "
          f"selected {report['bins_selected']}")
    print(f"mean OKS before filtering: r0 {mean0}, r1 {mean1}, drop {mean0 - mean1:.3f} (target >= 0.05)")
    print(f"r1 samples kept by the filter: {kept1} of {by_round['r1'][1]} (target > 0)")
    ok = spear is not None and spear >= 0.3 and mean0 - mean1 >= 0.05 and kept1 > 0
    print(f"targets {'met' if ok else 'NOT met'}; wall time {sum(seconds.values()):.0f} s "
          f"(mining {seconds['mined_hard_set[r0]']:.0f} s)")


if __name__ == "__main__":
    main()

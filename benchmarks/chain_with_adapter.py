"""The Dagster chain pose_pool -> raw_generations -> filtered_shards run with a trained
control adapter (issue 7's "done when"), on a partition no adapter trained or was tuned on.

Runs the real assets and their checks (`dg.materialize`, the `local-diffusion` profile's
resources) in a fresh dataset store, with `generator.control_adapter` pointing at a
version folder around the benchmark's model (`bench_alignment.adapter_folder`), and
prints what each stage made and how many samples filtered_shards kept.

    python benchmarks/chain_with_adapter.py --adapter /work/bench_out/ca5/model --partition 'r0|s0010'
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapter", type=Path, required=True, help="a benchmark model folder (pipeline/ ...)")
    ap.add_argument("--partition", default="r0|s0010")
    ap.add_argument("--sampling", default="8:1.5:3",
                    help="steps:guidance:image_guidance the model is run with (the benchmark's validated choice)")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--store", type=Path, default=Path("/tmp/pd_chain_store"))
    args = ap.parse_args()

    import dagster as dg
    import polars as pl

    from bench_alignment import adapter_folder
    from pd_assets.curation.assets import CURATION_ASSETS
    from pd_assets.curation.checks import CURATION_CHECKS
    from pd_assets.generation.assets import GENERATION_ASSETS
    from pd_assets.generation.checks import GENERATION_CHECKS
    from pd_assets.poses.assets import POSES_ASSETS
    from resources.dataset_store import DatasetStoreResource
    from resources.generator import GeneratorResource
    from resources.pose_sampling import PoseSamplingResource
    from resources.profiles import resources_for_profile

    os.environ.setdefault("PD_NUM_SHARDS", "16")
    steps, guidance, image_guidance = (float(v) for v in args.sampling.split(":"))
    vdir = adapter_folder(args.adapter, args.store / "_adapter", int(steps), guidance, image_guidance)
    res = resources_for_profile("local-diffusion")
    res.update(
        dataset_store=DatasetStoreResource(root=str(args.store)),
        pose_sampling=PoseSamplingResource(samples_per_shard=args.samples, width=128, height=128),
        generator=GeneratorResource(backend="diffusers", control_adapter=str(vdir), dtype="float32"),
    )
    rnd, shard = args.partition.split("|")
    t = time.perf_counter()
    result = dg.materialize([*POSES_ASSETS, *GENERATION_ASSETS, *CURATION_ASSETS, *GENERATION_CHECKS,
                             *CURATION_CHECKS], partition_key=args.partition, resources=res, raise_on_error=False)
    print(f"materialised in {time.perf_counter() - t:.0f} s: success={result.success}")
    for ev in result.get_asset_check_evaluations():
        print(f"  check {ev.asset_key.to_user_string()}.{ev.check_name}: {'passed' if ev.passed else 'FAILED'}")
    prov = pl.read_parquet(args.store / "raw_generations" / rnd / shard / "provenance.parquet")
    print(f"raw_generations: {prov.height} images, family {prov['family'].unique().to_list()}, "
          f"control_adapter {prov['control_adapter'].unique().to_list()}")
    index = pl.read_parquet(args.store / "filtered_shards" / rnd / shard / "index.parquet")
    kept = index.filter(pl.col("kept"))
    print(f"filtered_shards: kept {kept.height}/{index.height} samples "
          f"(median OKS of kept {kept['oks'].median() if kept.height else 'n/a'})")
    return 0 if result.success and kept.height > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

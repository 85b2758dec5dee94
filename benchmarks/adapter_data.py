"""Materialise the control-adapter benchmark's data: pose_pool + render-backend raw_generations
at 128 px for the training shards r0|s0000.. and one held-out shard after them (never trained on).

    python benchmarks/adapter_data.py --root /tmp/adapter_bench --shards 8 --per-shard 512 --heldout 64
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def resources(root: Path, per_shard: int, size: int, prompt_view: bool = False, hair: bool = True) -> dict:
    from resources.generator import GeneratorResource
    from resources.pose_sampling import PoseSamplingResource
    from resources.profiles import resources_for_profile

    res = resources_for_profile("local")
    res["dataset_store"] = type(res["dataset_store"])(root=str(root))
    res["pose_sampling"] = PoseSamplingResource(samples_per_shard=per_shard, width=size, height=size,
                                                controls=["pncc", "shaded", "mask"], prompt_view=prompt_view,
                                                hair=hair)
    res["generator"] = GeneratorResource(backend="render")
    return res


def materialise(root: Path, partitions: list[str], per_shard: int, size: int, prompt_view: bool = False,
                hair: bool = True) -> None:
    import dagster as dg

    from pd_assets.generation.assets import GENERATION_ASSETS
    from pd_assets.poses.assets import POSES_ASSETS

    for key in partitions:
        done = root / "raw_generations" / key.replace("|", "/") / "provenance.parquet"
        if done.is_file():
            continue
        t = time.perf_counter()
        dg.materialize([*POSES_ASSETS, *GENERATION_ASSETS], partition_key=key,
                       resources=resources(root, per_shard, size, prompt_view, hair))
        print(f"{key}: {per_shard} pairs in {time.perf_counter() - t:.1f} s", flush=True)


def heldout_partition(shards: int) -> str:
    """The held-out test shard: the one after the training shards (never trained on, never
    used to stop or tune)."""
    return f"r0|s{shards:04d}"


def extra_test_partitions(shards: int, count: int) -> list[str]:
    """Further unseen test shards, after the validation shard: the same figures on more
    controls (run 9's median OKS moved by +-0.07 from one 64-control shard to the next)."""
    return [f"r0|s{shards + 2 + i:04d}" for i in range(count)]


def validation_partition(shards: int) -> str:
    """The validation shard (the curve, early stopping and any tuning): after the test shard."""
    return f"r0|s{shards + 1:04d}"


def model_form(model_dir: Path) -> tuple[str, Path]:
    """(generator family, the folder whose weights read the pncc control) of a benchmark
    model folder: its ControlNet, or, without one, the concat denoiser `pipeline/unet`."""
    controlnet = model_dir / "controlnet-pncc"
    if controlnet.is_dir():
        return "sd15", controlnet
    return "sd15-concat", model_dir / "pipeline" / "unet"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--per-shard", type=int, default=512)
    ap.add_argument("--heldout", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--prompt-view", action="store_true", help="prompts state the body's view (pose_sampling.prompt_view)")
    ap.add_argument("--no-hair", action="store_true", help="bald heads (pose_sampling.hair false): the data of runs 1-15")
    args = ap.parse_args()
    materialise(args.root, [f"r0|s{i:04d}" for i in range(args.shards)], args.per_shard, args.size, args.prompt_view,
                not args.no_hair)
    materialise(args.root, [heldout_partition(args.shards), validation_partition(args.shards)], args.heldout, args.size,
                args.prompt_view, not args.no_hair)


if __name__ == "__main__":
    main()

"""raw_generations overhead and throughput with the tiny diffusers model on the CPU.

For each batch size, the asset's images/second (its `images_per_second` metadata: the
generation loop with control-map reads, PNG encoding, hashing and atomic writes) against
a bare loop that calls the same pipeline object on the same inputs (prompts, control
images, per-sample seeded generators) and keeps the images in memory. Both run warm (the
pipeline loaded and every batch shape seen once); each figure is the best of `--repeats`.

    .venv/bin/python benchmarks/bench_generation.py [--n 48] [--batch-sizes 1 4 8] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402
import torch  # noqa: E402

from pd_assets.generation.assets import raw_generations  # noqa: E402
from pd_assets.generation.generator import control_to_image  # noqa: E402
from pd_assets.generation.partition import generation_seed  # noqa: E402
from pd_assets.generation.store import read_control, read_pose_samples  # noqa: E402
from pd_assets.generation.tiny_models import build_tiny_model  # noqa: E402
from pd_assets.partitions import round_shard_partitions  # noqa: E402
from pd_assets_tests.fixtures_pose_pool import PROJECT_SEED, write_fake_pose_pool_partition  # noqa: E402
from resources.compute import ComputeResource  # noqa: E402
from resources.dataset_store import DatasetStoreResource  # noqa: E402
from resources.generator import GeneratorResource  # noqa: E402


def bare_loop(pipe, inputs, batch_size: int, steps: int, guidance: float) -> float:
    """Seconds for the pipeline alone over `inputs` (prompt, negative, control, seed)."""
    started = time.perf_counter()
    for i in range(0, len(inputs), batch_size):
        chunk = inputs[i:i + batch_size]
        pipe(
            prompt=[c[0] for c in chunk], negative_prompt=[c[1] for c in chunk],
            image=[c[2] for c in chunk], height=64, width=64, num_inference_steps=steps,
            guidance_scale=guidance, output_type="pil",
            generator=[torch.Generator("cpu").manual_seed(c[3]) for c in chunk],
        )
    return time.perf_counter() - started


def asset_run(root: Path, generator: GeneratorResource, batch_size: int) -> tuple[float, float]:
    """(asset images/second from its metadata, end-to-end wall seconds of materialize)."""
    started = time.perf_counter()
    result = dg.materialize(
        [raw_generations, dg.AssetSpec("pose_pool", partitions_def=round_shard_partitions)],
        partition_key="r0|s0000",
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        resources={"generator": generator,
                   "compute": ComputeResource(device="cpu", batch_size=batch_size, seed=PROJECT_SEED),
                   "dataset_store": DatasetStoreResource(root=str(root))},
    )
    wall = time.perf_counter() - started
    (event,) = result.get_asset_materialization_events()
    return float(event.materialization.metadata["images_per_second"].value), wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48, help="images per measurement")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    build_tiny_model()
    generator = GeneratorResource.for_profile("ci")
    gen = generator.build("cpu", "float32")
    pipe = gen.pipeline  # the very object the asset uses (cached per process)
    with tempfile.TemporaryDirectory(prefix="bench_generation_") as tmp_name:
        return _measure(Path(tmp_name), args, generator, pipe)


def _measure(tmp: Path, args, generator: GeneratorResource, pipe) -> int:
    pose_dir = write_fake_pose_pool_partition(tmp / "pool", "r0", "s0000", n=args.n, size=64)
    inputs = []
    for s in read_pose_samples(pose_dir):
        control = control_to_image("pncc", read_control(pose_dir, s, "pncc"), 64, 64)
        inputs.append((s.prompt, s.negative, control, generation_seed(PROJECT_SEED, "r0", "s0000", s.index)))

    print(f"tiny SD1.5 ControlNet, 64x64, {generator.steps} steps, guidance {generator.guidance}, "
          f"{args.n} images per run, torch threads {torch.get_num_threads()}, best of {args.repeats}")
    print(f"{'batch':>5} {'bare img/s':>11} {'asset img/s':>12} {'ratio':>6} {'e2e img/s':>10}")
    run = 0
    for bs in args.batch_sizes:
        bare_loop(pipe, inputs[: 2 * bs], bs, generator.steps, generator.guidance)  # warm this shape
        bare_best, asset_best, e2e_best = float("inf"), 0.0, 0.0
        for _ in range(args.repeats):
            bare_best = min(bare_best, bare_loop(pipe, inputs, bs, generator.steps, generator.guidance))
            run += 1
            root = tmp / f"run{run}"
            write_fake_pose_pool_partition(root, "r0", "s0000", n=args.n, size=64)
            ips, wall = asset_run(root, generator, bs)
            asset_best, e2e_best = max(asset_best, ips), max(e2e_best, args.n / wall)
        bare_ips = args.n / bare_best
        print(f"{bs:>5} {bare_ips:>11.1f} {asset_best:>12.1f} {bare_ips / asset_best:>6.3f} {e2e_best:>10.1f}")
    print("ratio = bare images/s / asset images/s (target <= 1.10); e2e = whole materialize "
          "(Dagster run, pipeline from the process cache, planning, provenance, preview)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

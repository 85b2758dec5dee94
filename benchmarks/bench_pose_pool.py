"""Stage-1 speed: PNCC render, pose_pool throughput, and Dagster overhead over the bare loop.

Targets (issue 2, on a 2-core CPU): a 512x512 PNCC map <= 20 ms; the whole pose_pool
computation >= 15 samples/s at 512x512; the asset's wall time <= 1.15x the bare loop
over the same functions. Run: `.venv/bin/python benchmarks/bench_pose_pool.py [--samples N]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resources.paths import anny_cache_dir  # noqa: E402

os.environ.setdefault("ANNY_CACHE_DIR", str(anny_cache_dir()))

import dagster as dg  # noqa: E402
import numpy as np  # noqa: E402

from pd_assets.poses.assets import pose_pool, settings_from  # noqa: E402
from pd_assets.poses.body_models import BodyParams, load_body_model  # noqa: E402
from pd_assets.poses.cameras import sample_camera  # noqa: E402
from pd_assets.poses.labels import to_camera  # noqa: E402
from pd_assets.poses.pool import build_pose_pool, renderer_for  # noqa: E402
from resources import BodyModelResource, ComputeResource, DatasetStoreResource  # noqa: E402
from resources.pose_sampling import PoseSamplingResource  # noqa: E402


def pncc_ms(model, size: int, repeats: int = 30) -> float:
    renderer = renderer_for(model, size, size)
    rng = np.random.default_rng(0)
    meshes = model.forward(BodyParams.rest(model.sample_shape(rng, 8)))
    times = []
    for i in range(repeats):
        cam = sample_camera(rng, settings_from(PoseSamplingResource(width=size, height=size)).camera,
                            meshes.vertices[i % 8], joints=meshes.joints[i % 8])
        verts = to_camera(meshes.vertices[i % 8], cam.R, cam.t)
        t = time.perf_counter()
        renderer.render_pncc(verts, cam.K)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model = load_body_model("anny")
    sampling = PoseSamplingResource(samples_per_shard=args.samples, width=args.size, height=args.size)
    compute = ComputeResource(device="cpu", batch_size=16)
    settings = settings_from(sampling)
    print(f"PNCC {args.size}x{args.size}: {pncc_ms(model, args.size):.1f} ms (target <= 20 ms)")

    work = Path(tempfile.mkdtemp(prefix="bench_pose_pool_"))
    resources = {
        "compute": compute, "body_model": BodyModelResource(kind="anny"), "pose_sampling": sampling,
        "dataset_store": DatasetStoreResource(root=str(work / "store")),
    }
    warm = work / "warm"
    warm.mkdir()
    build_pose_pool(settings_from(PoseSamplingResource(samples_per_shard=4, width=args.size, height=args.size)),
                    model, warm, compute.seed, "r0", "s0000")
    bare, asset = [], []
    for rep in range(args.repeats):  # alternate so machine noise hits both alike
        out = work / f"bare{rep}"
        out.mkdir()
        t = time.perf_counter()
        summary = build_pose_pool(settings, model, out, compute.seed, "r0", "s0000", batch_size=compute.batch_size)
        bare.append(time.perf_counter() - t)
        shutil.rmtree(out)
        t = time.perf_counter()
        result = dg.materialize([pose_pool], partition_key="r0|s0000", resources=resources)
        asset.append(time.perf_counter() - t)
        assert result.success
    b, a = min(bare), min(asset)
    print(f"pose_pool bare loop: {args.samples} samples in {b:.2f} s = {args.samples / b:.1f} samples/s "
          f"(target >= 15); stage seconds {({k: round(v, 2) for k, v in summary.stage_seconds.items()})}")
    print(f"pose_pool asset (dg.materialize): {a:.2f} s = {args.samples / a:.1f} samples/s")
    print(f"asset / bare wall-time ratio: {a / b:.3f} (target <= 1.15)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

"""Curation throughput at 512x512 on CPU: the whole filter vs bare detector inference.

Builds one pose_pool partition (anny + the renderer) and render-backend-like images
(the shaded body on a textured background) in a temp dir, then times

* bare detector inference (mediapipe Pose Landmarker on decoded images),
* the whole per-partition filter (`curate_partition`: PNG decode and sha256 against the
  provenance, detection, every score, JPEG encode, tar write), and its parts.

    .venv/bin/python benchmarks/bench_curation.py [--samples 64] [--size 512]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from resources.paths import anny_cache_dir  # noqa: E402

os.environ.setdefault("ANNY_CACHE_DIR", str(anny_cache_dir()))


def build_inputs(root: Path, samples: int, size: int) -> None:
    from pd_assets.poses.body_models import load_body_model
    from pd_assets.poses.cameras import CameraConfig
    from pd_assets.poses.pool import PosePoolSettings, build_pose_pool
    from pd_assets_tests.curation_fixtures import write_render_generations

    out = root / "pose_pool" / "r0" / "s0000"
    out.mkdir(parents=True)
    settings = PosePoolSettings(samples_per_shard=samples, camera=CameraConfig(width=size, height=size),
                                controls=("pncc", "shaded", "mask"))
    build_pose_pool(settings, load_body_model("anny"), out, 20260328, "r0", "s0000")
    write_render_generations(root, "r0", "s0000")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes (best is reported)")
    args = parser.parse_args()

    import polars as pl

    from pd_assets.curation.filters import FilterThresholds
    from pd_assets.curation.inputs import load_image
    from pd_assets.curation.mediapipe_task import build as build_task
    from pd_assets.curation.pipeline import curate_partition
    from resources.keypoint_detector import KeypointDetectorResource
    from resources.paths import models_dir

    build_task(models_dir())
    resource = KeypointDetectorResource()
    detector = resource.build()
    calibration, calibration_status = resource.resolve_calibration()
    print(f"calibration: {calibration_status}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        build_inputs(root, args.samples, args.size)
        print(f"inputs: {args.samples} samples at {args.size}x{args.size} built in {time.perf_counter() - t0:.1f} s")
        pool, gen = root / "pose_pool" / "r0" / "s0000", root / "raw_generations" / "r0" / "s0000"
        labels = pl.read_parquet(pool / "labels.parquet").to_dicts()
        provenance = {r["sample_id"]: r for r in pl.read_parquet(gen / "provenance.parquet").to_dicts()}
        images = [load_image(gen / "images" / f"{r['sample_id']}.png")[0] for r in labels]
        detector.detect(images[:2])  # warm-up

        bare, full, parts = float("inf"), float("inf"), {}
        for _ in range(args.repeats):
            t = time.perf_counter()
            detector.detect(images)
            bare = min(bare, time.perf_counter() - t)
            t = time.perf_counter()
            result = curate_partition(labels, provenance, pool, gen, detector, calibration, FilterThresholds(),
                                      root / f"bench-{time.monotonic_ns()}.tar", batch_size=16,
                                      calibration_status=calibration_status)
            elapsed = time.perf_counter() - t
            if elapsed < full:
                full, parts = elapsed, result.seconds
        n = len(images)
        print(f"bare detector inference : {n / bare:6.1f} images/s ({1000 * bare / n:5.1f} ms/image)")
        print(f"whole filter            : {n / full:6.1f} images/s ({1000 * full / n:5.1f} ms/image), "
              f"kept {result.num_kept}/{n}")
        print(f"overhead over the detector: {100 * (full - bare) / bare:5.1f} %")
        print("  breakdown (ms/image): " + ", ".join(f"{k} {1000 * v / n:.1f}" for k, v in parts.items()))
    detector.close()


if __name__ == "__main__":
    main()

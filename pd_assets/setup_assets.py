"""Build every model asset the project needs locally (what `make setup` runs; idempotent).

- the anny body-model cache (about a minute the first time; `ANNY_CACHE_DIR`);
- the mediapipe Pose Landmarker `.task` bundle and the selfie segmenter, from the model
  files inside the mediapipe 0.10.21 wheel (Apache-2.0);
- the tiny random-weight diffusers ControlNet pipeline used by tests and the `ci` profile.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from resources.paths import anny_cache_dir, models_dir


def build_anny_cache() -> None:
    os.environ.setdefault("ANNY_CACHE_DIR", str(anny_cache_dir()))
    from pd_assets.poses.body_models import load_body_model

    load_body_model("anny")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip", nargs="*", default=[], choices=["anny", "mediapipe", "tiny-diffusers"])
    args = parser.parse_args(argv)
    from pd_assets.curation import mediapipe_task
    from pd_assets.generation import tiny_models

    steps = {
        "anny": build_anny_cache,
        "mediapipe": lambda: mediapipe_task.build(models_dir()),
        "tiny-diffusers": lambda: tiny_models.build_all(models_dir()),
    }
    for name, step in steps.items():
        if name in args.skip:
            continue
        t = time.perf_counter()
        step()
        print(f"setup_assets: {name} ready ({time.perf_counter() - t:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

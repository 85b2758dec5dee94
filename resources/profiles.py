"""The one place that chooses the deployment profile: `PD_PROFILE` = local | ci | gpu.

Assets never branch on the profile; they receive resources built here.
"""

from __future__ import annotations

import os

from resources.body_model import BodyModelResource
from resources.compute import ComputeResource
from resources.dataset_store import DatasetStoreResource
from resources.mining import MiningResource
from resources.paths import REPO_ROOT, anny_cache_dir
from resources.pose_sampling import PoseSamplingResource

# local-diffusion: the local profile at 128 px with the generator this machine trains
# (control_adapter from scratch, then raw_generations with generator.control_adapter=latest)
PROFILES = ("local", "local-diffusion", "ci", "gpu")


def current_profile() -> str:
    profile = os.environ.get("PD_PROFILE", "local").strip() or "local"
    if profile not in PROFILES:
        raise ValueError(f"PD_PROFILE={profile!r} is not one of {', '.join(PROFILES)}")
    return profile


def data_root() -> str:
    return os.environ.get("PD_DATA_ROOT") or str(REPO_ROOT / "data")


def resources_for_profile(profile: str | None = None) -> dict[str, object]:
    profile = profile or current_profile()
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(PROFILES)}")
    # anny reads its cache location from the environment at import time
    os.environ.setdefault("ANNY_CACHE_DIR", str(anny_cache_dir()))
    from resources.alignment import AlignmentResource
    from resources.control_adapter import ControlAdapterResource
    from resources.generator import GeneratorResource
    from resources.keypoint_detector import KeypointDetectorResource

    compute = {
        "local": ComputeResource(device="auto", dtype="float32", batch_size=16),
        "local-diffusion": ComputeResource(device="auto", dtype="float32", batch_size=16),
        "ci": ComputeResource(device="cpu", dtype="float32", batch_size=8),
        "gpu": ComputeResource(device="cuda", dtype="bfloat16", batch_size=8),
    }[profile]
    sampling = {
        "local": PoseSamplingResource(samples_per_shard=64, width=512, height=512),
        "local-diffusion": PoseSamplingResource(samples_per_shard=512, width=128, height=128),
        "ci": PoseSamplingResource(samples_per_shard=8, width=128, height=128),
        "gpu": PoseSamplingResource(samples_per_shard=1000, width=1024, height=1024),
    }[profile]
    return {
        "compute": compute,
        "dataset_store": DatasetStoreResource(root=data_root()),
        "body_model": BodyModelResource(
            kind=os.environ.get("PD_BODY_MODEL", "anny"),
            model_path=os.environ.get("PD_SMPLX_MODEL_PATH") or None,
        ),
        "pose_sampling": sampling,
        # PD_GENERATOR_BACKEND=render: the render backend on any profile (its images match their
        # labels, so curation and mining see real scores: the daemon end-to-end test uses it)
        "generator": (GeneratorResource(backend="render") if os.environ.get("PD_GENERATOR_BACKEND") == "render"
                      else GeneratorResource.for_profile(profile)),
        "keypoint_detector": KeypointDetectorResource.for_profile("local" if profile == "local-diffusion" else profile),
        "control_adapter": ControlAdapterResource.for_profile(profile),
        "alignment": AlignmentResource.for_profile(profile),
        # ci: a small candidate pool and leaves that still split a few dozen samples
        "mining": {"local": MiningResource(), "local-diffusion": MiningResource(),
                   "ci": MiningResource(pool_multiple=4.0, min_data_in_leaf=5),
                   "gpu": MiningResource()}[profile],
    }

"""Resources: device resolution, validated settings, profiles chosen in one place."""

from __future__ import annotations

import pydantic
import pytest
import torch

from resources.compute import ComputeResource, resolve_device
from resources.pose_sampling import PoseSamplingResource
from resources.profiles import resources_for_profile


def test_auto_device_follows_torch():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert ComputeResource(device="auto").torch_device() == expected
    assert resolve_device(" CPU ") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_a_gpu_says_what_to_do():
    with pytest.raises(ValueError, match="no CUDA device.*compute.device=auto"):
        resolve_device("cuda:1")


def test_bad_device_and_dtype_are_rejected():
    with pytest.raises(ValueError, match="not one of auto, cpu, cuda, cuda:N"):
        resolve_device("tpu")
    with pytest.raises(pydantic.ValidationError, match="dtype"):
        ComputeResource(dtype="fp8")


def test_controls_are_validated_and_mask_is_always_written():
    assert PoseSamplingResource(controls=["pncc"]).validated_controls() == ("pncc", "mask")
    with pytest.raises(ValueError, match="unknown control.*thermal"):
        PoseSamplingResource(controls=["thermal"]).validated_controls()


def test_profiles_differ_only_in_resources():
    local, ci = resources_for_profile("local"), resources_for_profile("ci")
    assert set(local) == set(ci) == {"compute", "dataset_store", "body_model", "pose_sampling",
                                     "generator", "keypoint_detector", "mining", "control_adapter", "alignment"}
    assert (ci["pose_sampling"].width, ci["pose_sampling"].samples_per_shard) == (128, 8)
    assert local["generator"].backend == "render" and ci["generator"].backend == "diffusers"

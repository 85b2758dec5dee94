"""Compute device, dtype, batch size and project seed."""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field


def resolve_device(spec: str) -> str:
    """`auto` -> `cuda` when a GPU is visible, else `cpu`; `cpu`, `cuda`, `cuda:N` as given."""
    import torch

    spec = spec.strip().lower()
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    if spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(
                f"compute.device={spec!r} but torch sees no CUDA device: install a CUDA build "
                "of torch (see README, 'GPU machines') or set compute.device=auto|cpu"
            )
        index = int(spec[5:]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"compute.device={spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return spec
    raise ValueError(f"compute.device={spec!r} is not one of auto, cpu, cuda, cuda:N")


class ComputeResource(dg.ConfigurableResource):
    """Where tensors live and how work is batched; `seed` is the project seed."""

    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        default="float32", description="default dtype for models that do not set their own"
    )
    batch_size: int = Field(default=16, ge=1, description="samples per batch on the device")
    seed: int = Field(default=20260328, description="project seed; every draw derives from it")

    def torch_device(self) -> str:
        return resolve_device(self.device)

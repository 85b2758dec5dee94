"""Which generator makes the images: the render baseline or a diffusers pipeline.

One resource, two backends; the asset only calls `build(...).generate(...)`. Profiles:
`local` renders (fast CPU preview), `ci` runs the tiny diffusers model the project builds
(`python -m pd_assets.generation.tiny_models`), `gpu` runs real weights named by
environment variables:

    PD_GENERATOR_MODEL       base model, local diffusers folder or hub id
    PD_GENERATOR_FAMILY      sd15 | sdxl | flux | flux-control        (default sdxl)
    PD_GENERATOR_CONTROLNET  control=path_or_id@scale[,...], e.g. pncc=/models/cn-pncc@1.0
    PD_GENERATOR_LORAS       path@scale[,...], e.g. /ckpt/realism.safetensors@0.8
    PD_GENERATOR_DTYPE       float16 | bfloat16 | float32              (default float16)
    PD_GENERATOR_GUIDANCE    guidance scale, a finite number           (default 7.5)
    HF_TOKEN                 hub token for gated models (read only through dg.EnvVar)
"""

from __future__ import annotations

import math
import os
from typing import Any

import dagster as dg
from pydantic import Field

BACKENDS = ("render", "diffusers")
_PROFILES = ("local", "local-diffusion", "ci", "gpu")


class ControlNetConfig(dg.Config):
    path_or_id: str = Field(
        description="ControlNet (or, for flux-control, control LoRA): local folder or hub id",
    )
    control: str = Field(
        description="the pose_pool control map it was trained on: pncc, skeleton, depth, normals, ...",
    )
    scale: float = Field(
        default=1.0, allow_inf_nan=False,
        description="controlnet_conditioning_scale (adapter weight for a control LoRA)",
    )
    subfolder: str | None = Field(default=None, description="subfolder inside the folder/repository, if any")


class LoraConfig(dg.Config):
    path: str = Field(
        description="LoRA .safetensors file or folder (e.g. a realism LoRA, aligned_checkpoint's DPO LoRA)",
    )
    scale: float = Field(default=1.0, allow_inf_nan=False, description="adapter weight passed to set_adapters")
    weight_name: str | None = Field(default=None, description="file name inside a folder holding several")


class GeneratorResource(dg.ConfigurableResource):
    """How raw_generations makes one image per pose sample."""

    backend: str = Field(default="render", description="render (shaded mesh on a background) | diffusers")
    model: str | None = Field(
        default=None,
        description="diffusers: base pipeline, local folder or hub id (HF_HUB_OFFLINE respected)",
    )
    family: str = Field(
        default="sd15",
        description="diffusers pipeline family: sd15 | sd15-concat (control as denoiser input channels) | sdxl | flux | flux-control",
    )
    controlnets: list[ControlNetConfig] = Field(
        default_factory=list,
        description="ControlNets, each fed the pose_pool control map it names; several -> MultiControlNet",
    )
    loras: list[LoraConfig] = Field(
        default_factory=list,
        description="extra LoRAs stacked in order with their scales",
    )
    scheduler: str = Field(
        default="default",
        description="default (the model's) | euler | euler_a | ddim | dpm++ | unipc | ... | a diffusers scheduler class",
    )
    steps: int = Field(default=25, ge=1, description="denoising steps")
    guidance: float = Field(
        default=7.5, allow_inf_nan=False,
        description="classifier-free guidance (FLUX: distilled guidance, 3.5 in the method)",
    )
    negative_prompt: str | None = Field(
        default=None,
        description="replaces every sample's negative prompt when set (ignored by FLUX)",
    )
    width: int | None = Field(
        default=None, ge=8,
        description="image width; unset = the pose_pool render width",
    )
    height: int | None = Field(
        default=None, ge=8,
        description="image height; unset = the pose_pool render height",
    )
    dtype: str | None = Field(default=None, description="float32 | float16 | bfloat16; unset = compute.dtype")
    cpu_offload: bool = Field(
        default=False,
        description="enable_model_cpu_offload (CUDA only): less GPU memory, slower",
    )
    attention_slicing: bool = Field(
        default=False,
        description="enable_attention_slicing: less memory, slower",
    )
    compile: bool = Field(default=False, description="torch.compile the UNet/transformer (slow first batch)")
    batch_size: int | None = Field(
        default=None, ge=1,
        description="images per pipeline call; unset = compute.batch_size; halved on CUDA OOM",
    )
    variant: str | None = Field(default=None, description="weights variant to load, e.g. fp16")
    hf_token: str | None = Field(
        default=None,
        description="hub token for gated models: set only as dg.EnvVar('HF_TOKEN')",
    )
    control_adapter: str | None = Field(
        default=None,
        description="diffusers: `latest` (the newest control_adapter that passed its checks) or a "
                    "control_adapter/<version> folder; replaces model, family and controlnets, and steps and "
                    "guidance by the sampling settings the adapter passed its checks with",
    )
    aligned: str = Field(
        default="none",
        description="DPO alignment LoRA: `latest` (newest aligned_checkpoint that passed its check), `none`, "
                    "or an aligned_checkpoint/<version> folder; stacked on top of `loras`",
    )
    strict: bool = Field(
        default=False,
        description="fail the whole partition when a sample's control map is missing, unreadable or "
                    "outside its partition (default: record that sample as failed in provenance, make the rest)",
    )
    render_backgrounds: list[str] = Field(
        default_factory=lambda: ["solid", "gradient", "noise"],
        description="render backend: background kinds drawn per sample",
    )
    render_lighting_jitter: float = Field(
        default=0.25, ge=0.0, le=1.0, allow_inf_nan=False,
        description="render backend: strength of the random lighting (0 = the shaded render as is)",
    )

    def image_size(self, label_width: int, label_height: int) -> tuple[int, int]:
        """The size images are made at: the configured one, else the pose_pool render's."""
        return int(self.width or label_width), int(self.height or label_height)

    def build(self, device: str, dtype: Any = None, *, batch_size: int = 1, log: Any = None,
              store_root: Any = None):
        """A Generator for `device`; the diffusers pipeline is loaded once per process.
        `store_root`: the dataset store, where `control_adapter=latest` is looked up."""
        if self.backend not in BACKENDS:
            raise ValueError(f"generator.backend={self.backend!r} is not one of {', '.join(BACKENDS)}")
        bs = int(self.batch_size or batch_size)
        if self.backend == "render":
            from pd_assets.generation.render_backend import RenderConfig, RenderGenerator

            cfg = RenderConfig(tuple(self.render_backgrounds), self.render_lighting_jitter, device="cpu")
            return RenderGenerator(cfg, batch_size=bs, log=log)
        from pd_assets.generation.diffusers_backend import (
            ControlNetSpec,
            DiffusersConfig,
            DiffusersGenerator,
            LoraSpec,
        )

        model, family, controlnets, adapter = self.model, self.family, self.controlnets, ""
        steps, guidance = self.steps, self.guidance
        if self.control_adapter:
            model, family, controlnets, adapter, (steps, guidance) = self._adapter_weights(store_root)
        loras, aligned = list(self.loras), ""
        if self.aligned not in ("", "none"):
            from pathlib import Path

            from pd_assets.generation.adapter_store import resolve_aligned

            if self.aligned == "latest" and store_root is None:
                raise ValueError("generator.aligned=latest needs the dataset store root to look it up")
            vdir, report = resolve_aligned(self.aligned, Path(store_root) if store_root else Path("."))
            loras.append(LoraConfig(path=str(vdir / "lora" / "pytorch_lora_weights.safetensors"), scale=1.0))
            aligned = report["version"]
        if not model:
            raise ValueError(
                "generator.backend=diffusers but generator.model is unset: set it (or PD_GENERATOR_MODEL in "
                "the gpu profile) to a local diffusers folder or a hub id"
            )
        dtype_name = self.dtype or (str(dtype).replace("torch.", "") if dtype is not None else "float32")
        cfg = DiffusersConfig(
            model=model, family=family, control_adapter=adapter, aligned_checkpoint=aligned,
            controlnets=tuple(ControlNetSpec(c.path_or_id, c.control, c.scale, c.subfolder) for c in controlnets),
            loras=tuple(LoraSpec(lo.path, lo.scale, lo.weight_name) for lo in loras),
            scheduler=self.scheduler, steps=steps, guidance=guidance,
            negative_prompt=self.negative_prompt, dtype=dtype_name, device=device,
            cpu_offload=self.cpu_offload, attention_slicing=self.attention_slicing,
            compile=self.compile, variant=self.variant, token=self.hf_token,
        )
        return DiffusersGenerator(cfg, batch_size=bs, log=log)

    def _adapter_weights(self, store_root: Any) -> tuple[str, str, list[ControlNetConfig], str, tuple[int, float]]:
        """(model, family, controlnets, version, (steps, guidance)) of the configured control
        adapter: its weights and the sampling settings its held-out evaluation used."""
        from pathlib import Path

        from pd_assets.generation.adapter_store import control_scale, resolve_adapter

        if self.control_adapter == "latest" and store_root is None:
            raise ValueError("generator.control_adapter=latest needs the dataset store root to look it up")
        vdir, report = resolve_adapter(self.control_adapter, Path(store_root) if store_root else Path("."))
        scale = control_scale(report["family"], report.get("image_guidance", 1.0))
        cns = [ControlNetConfig(path_or_id=str(vdir / rel), control=c, scale=scale)
               for c, rel in report["controlnets"].items()]
        sampling = (int(report["sample_steps"]), float(report["guidance"]))
        return str(vdir / report["pipeline"]), report["family"], cns, report["version"], sampling

    def describe(self) -> str:
        if self.backend == "render":
            return "render (shaded mesh on a procedural background)"
        if self.control_adapter:
            return f"diffusers control_adapter={self.control_adapter} (with its validated steps and guidance)"
        cns = ", ".join(f"{c.control}@{c.scale:g}" for c in self.controlnets)
        loras = f", loras: {len(self.loras)}" if self.loras else ""
        return f"diffusers {self.family} {self.model} [controls: {cns}{loras}], {self.steps} steps, guidance {self.guidance:g}"

    @classmethod
    def for_profile(cls, profile: str) -> GeneratorResource:
        if profile == "local":
            return cls(backend="render")  # size follows pose_sampling
        if profile == "local-diffusion":  # the generator control_adapter trained here (128 px)
            return cls(backend="diffusers", control_adapter="latest", dtype="float32")
        if profile == "ci":
            from pd_assets.generation.tiny_models import default_tiny_model_dir

            tiny = default_tiny_model_dir("sd15")
            return cls(
                backend="diffusers", model=str(tiny / "pipeline"), family="sd15",
                controlnets=[ControlNetConfig(path_or_id=str(tiny / "controlnet-pncc"), control="pncc")],
                steps=2, guidance=5.0, width=64, height=64, dtype="float32",
            )
        if profile == "gpu":
            return cls(
                backend="diffusers",
                model=dg.EnvVar("PD_GENERATOR_MODEL") if os.environ.get("PD_GENERATOR_MODEL")
                else "stabilityai/stable-diffusion-xl-base-1.0",
                family=os.environ.get("PD_GENERATOR_FAMILY", "sdxl"),
                controlnets=parse_controlnets(os.environ.get("PD_GENERATOR_CONTROLNET", "")),
                loras=parse_loras(os.environ.get("PD_GENERATOR_LORAS", "")),
                dtype=os.environ.get("PD_GENERATOR_DTYPE", "float16"),
                steps=25, guidance=_env_float("PD_GENERATOR_GUIDANCE", 7.5),
                hf_token=dg.EnvVar("HF_TOKEN") if os.environ.get("HF_TOKEN") else None,
            )
        raise ValueError(f"profile {profile!r} is not one of {', '.join(_PROFILES)}")


def _finite(text: str) -> float | None:
    """`text` as a finite float, or None (not a number, nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _env_float(name: str, default: float) -> float:
    """A finite float from environment variable `name` (unset or empty: `default`)."""
    text = os.environ.get(name, "").strip()
    value = _finite(text) if text else default
    if value is None:
        raise ValueError(f"{name}={text!r} is not a finite number: set it to e.g. {default} "
                         f"(or unset it for the default {default})")
    return value


def _split_scale(item: str, what: str) -> tuple[str, float]:
    body, sep, scale = item.rpartition("@")
    if not sep:
        return item, 1.0
    value = _finite(scale)
    if value is None:
        raise ValueError(f"{what}: {item!r} has scale {scale!r}, which is not a finite number: "
                         "write path@1.0 (or leave @scale out for 1.0)")
    return body, value


def parse_controlnets(text: str) -> list[ControlNetConfig]:
    """`pncc=/models/cn-pncc@1.0,depth=org/cn-depth@0.5` -> ControlNetConfig list."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        control, sep, rest = item.partition("=")
        if not sep or not rest:
            raise ValueError(
                f"PD_GENERATOR_CONTROLNET entry {item!r} must read control=path_or_id[@scale], "
                "e.g. pncc=/models/controlnet-pncc@1.0"
            )
        path, scale = _split_scale(rest, "PD_GENERATOR_CONTROLNET")
        out.append(ControlNetConfig(path_or_id=path, control=control.strip(), scale=scale))
    return out


def parse_loras(text: str) -> list[LoraConfig]:
    """`/ckpt/realism.safetensors@0.8,/ckpt/dpo@1` -> LoraConfig list."""
    return [LoraConfig(path=p, scale=s) for p, s in
            (_split_scale(item, "PD_GENERATOR_LORAS") for item in filter(None, (x.strip() for x in text.split(","))))]

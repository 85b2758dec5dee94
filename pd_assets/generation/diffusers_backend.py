"""The diffusers generator: SD 1.5 / SDXL with one or several ControlNets, FLUX with a
ControlNet or a control LoRA, extra LoRAs stacked with scales.

Every sample gets its own `torch.Generator` seeded with its true seed, so the initial
noise of an image never depends on its batch. (Batched GPU/CPU kernels still round
differently from unbatched ones, so an image made in a batch of 4 may differ from the
same sample made alone by 1/255 on a few pixels; provenance records the batch size, and
`reproduce` re-runs a sample at that batch size, which gives the same bytes.)
Generators are seeded on the CPU: the same noise on any device.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pd_assets.generation.generator import (
    POSE_POOL_CONTROLS,
    GeneratedImage,
    GenerationRequest,
    GeneratorError,
    control_to_image,
)
from pd_assets.generation.pipelines import (
    FAMILIES,
    check_combination,
    load_pipeline,
    scheduler_name,
)
from pd_assets.generation.weights import content_hash, resolve_weights

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControlNetSpec:
    path_or_id: str
    control: str  # the pose_pool control map it was trained on: pncc, skeleton, depth, normals ...
    scale: float = 1.0
    subfolder: str | None = None


@dataclass(frozen=True)
class LoraSpec:
    path: str
    scale: float = 1.0
    weight_name: str | None = None


@dataclass(frozen=True)
class DiffusersConfig:
    model: str
    family: str = "sd15"
    controlnets: tuple[ControlNetSpec, ...] = ()
    loras: tuple[LoraSpec, ...] = ()
    scheduler: str = "default"
    steps: int = 25
    guidance: float = 7.5
    negative_prompt: str | None = None  # None: each sample's own negative prompt
    dtype: str = "float32"
    device: str = "cpu"
    cpu_offload: bool = False
    attention_slicing: bool = False
    compile: bool = False
    variant: str | None = None
    token: str | None = field(default=None, repr=False)  # hub token; never recorded
    control_adapter: str = ""  # the control_adapter version whose weights these are, if any
    aligned_checkpoint: str = ""  # the aligned_checkpoint version whose DPO LoRA is stacked, if any

    def cache_key(self) -> str:
        d = asdict(self)
        d.pop("token")
        return json.dumps(d, sort_keys=True)


_PIPELINES: dict[str, Any] = {}  # one loaded pipeline per configuration per process


def clear_pipeline_cache() -> None:
    _PIPELINES.clear()


class DiffusersGenerator:
    backend = "diffusers"

    def __init__(self, config: DiffusersConfig, *, batch_size: int = 1, log: Any = None):
        self.config = config
        self.batch_size = max(1, int(batch_size))
        self.log = log or _LOG
        self._validate()
        self.required_controls = tuple(dict.fromkeys(c.control for c in config.controlnets))
        self._model_dir = resolve_weights(config.model, what="base model", setting="generator.model",
                                          token=config.token, variant=config.variant)
        self._controlnet_dirs = [
            self._subfolder(resolve_weights(c.path_or_id, what=f"ControlNet for {c.control!r}",
                                            setting="generator.controlnets[].path_or_id",
                                            token=config.token, variant=config.variant), c.subfolder)
            for c in config.controlnets
        ]
        self._lora_paths = [resolve_weights(lo.path, what="LoRA", setting="generator.loras[].path",
                                            token=config.token) for lo in config.loras]
        self._lora_files = [_lora_file(p, lo.weight_name) for p, lo in zip(self._lora_paths, config.loras, strict=True)]
        check_combination(config.family, self._model_dir, self._controlnet_dirs,
                          [c.path_or_id for c in config.controlnets])
        self._fields: dict[str, Any] | None = None

    @staticmethod
    def _subfolder(path: Path, sub: str | None) -> Path:
        return path / sub if sub else path

    def _validate(self) -> None:
        cfg = self.config
        if cfg.family not in FAMILIES:
            raise GeneratorError(f"generator.family={cfg.family!r} is not one of {', '.join(FAMILIES)}")
        if not cfg.controlnets:
            raise GeneratorError(
                f"generator.controlnets is empty for family {cfg.family!r}: the image would not follow "
                "the pose; add a ControlNet (or, for flux-control, the control LoRA; PD_GENERATOR_CONTROLNET in the gpu "
                "profile) trained on a "
                f"pose_pool control map ({', '.join(POSE_POOL_CONTROLS)})"
            )
        bad = [c.control for c in cfg.controlnets if c.control not in POSE_POOL_CONTROLS]
        if bad:
            raise GeneratorError(
                f"generator.controlnets names control map(s) {bad} that pose_pool does not make; "
                f"use one of {', '.join(POSE_POOL_CONTROLS)}"
            )
        if cfg.family == "flux-control" and len(cfg.controlnets) != 1:
            raise GeneratorError("generator.family=flux-control takes exactly one control LoRA in "
                                 f"generator.controlnets, got {len(cfg.controlnets)}")
        if cfg.family == "sd15-concat" and cfg.controlnets and cfg.controlnets[0].scale != 1.0 and cfg.guidance <= 1.0:
            raise GeneratorError(
                f"generator.controlnets[0].scale={cfg.controlnets[0].scale:g} is sd15-concat's image guidance, which "
                f"the InstructPix2Pix pipeline applies only with guidance > 1 (generator.guidance={cfg.guidance:g}): "
                "set generator.guidance above 1 (e.g. 1.5) or the scale to 1")
        if cfg.family == "sd15-concat" and len(cfg.controlnets) != 1:
            raise GeneratorError("generator.family=sd15-concat reads exactly one control map (its denoiser's "
                                 "extra input channels): give one entry in generator.controlnets, pointing at "
                                 f"the model's unet folder, got {len(cfg.controlnets)}")
        if cfg.steps < 1:
            raise GeneratorError(f"generator.steps={cfg.steps} must be at least 1")
        numbers = [("generator.guidance", cfg.guidance)]
        numbers += [(f"generator.controlnets[{i}].scale", c.scale) for i, c in enumerate(cfg.controlnets)]
        numbers += [(f"generator.loras[{i}].scale", lo.scale) for i, lo in enumerate(cfg.loras)]
        for name, value in numbers:
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise GeneratorError(f"{name}={value!r} is not a finite number: set it to a real value "
                                     "(e.g. 1.0 for a scale, 7.5 for SD guidance, 3.5 for FLUX)")

    # ---- provenance -------------------------------------------------------------
    def provenance_fields(self) -> dict[str, Any]:
        if self._fields is None:
            cfg = self.config
            self._fields = {
                "backend": self.backend,
                "family": cfg.family,
                "model_id": cfg.model,
                "model_hash": content_hash(self._model_dir),
                "control_adapter": cfg.control_adapter,
                "aligned_checkpoint": cfg.aligned_checkpoint,
                # path#weight_name when one file of a folder is loaded; its hash is that file's
                "lora_paths": [lo.path + (f"#{lo.weight_name}" if lo.weight_name and p.is_dir() else "")
                               for lo, p in zip(cfg.loras, self._lora_paths, strict=True)],
                "lora_hashes": [content_hash(p) for p in self._lora_files],
                "lora_scales": [float(lo.scale) for lo in cfg.loras],
                "controlnet_ids": [c.path_or_id + (f"#{c.subfolder}" if c.subfolder else "")
                                   for c in cfg.controlnets],
                "controlnet_hashes": [content_hash(p) for p in self._controlnet_dirs],
                "control_types": [c.control for c in cfg.controlnets],
                "control_scales": [float(c.scale) for c in cfg.controlnets],
                "scheduler": scheduler_name(cfg.scheduler, self._model_dir),
                "steps": int(cfg.steps),
                "guidance": float(cfg.guidance),
                "dtype": cfg.dtype,
                "variant": cfg.variant or "",
                "device": _device_label(cfg.device),
                **library_versions(),
            }
        return dict(self._fields)

    def request_provenance(self, request: GenerationRequest) -> dict[str, Any]:
        return {
            "prompt": request.prompt,
            "negative_prompt": self._negative(request),
            "seed": int(request.seed),
            "width": int(request.width),
            "height": int(request.height),
        }

    def _negative(self, request: GenerationRequest) -> str:
        if self.config.family.startswith("flux"):
            return ""  # FLUX (guidance-distilled) takes no negative prompt
        if self.config.negative_prompt is not None:
            return self.config.negative_prompt
        return request.negative or ""

    # ---- generation -------------------------------------------------------------
    @property
    def pipeline(self):
        # the weights' content hashes are part of the key: a folder re-written in place (a
        # retrained adapter) must load again, not reuse the old weights under new provenance
        fields = self.provenance_fields()
        key = json.dumps([self.config.cache_key(), fields["model_hash"], fields["controlnet_hashes"],
                          fields["lora_hashes"]])
        if key not in _PIPELINES:
            started = time.perf_counter()
            _PIPELINES[key] = load_pipeline(self.config, self._model_dir, self._controlnet_dirs,
                                            self._lora_paths, log=self.log)
            self.log.info(f"loaded {type(_PIPELINES[key]).__name__} from {self.config.model} "
                          f"in {time.perf_counter() - started:.1f} s")
        return _PIPELINES[key]

    def prepare(self) -> None:
        """Load (or reuse) the pipeline now rather than inside the first batch."""
        _ = self.pipeline

    def generate(self, batch: list[GenerationRequest]) -> list[GeneratedImage]:
        out: list[GeneratedImage] = []
        i = 0
        while i < len(batch):
            chunk = batch[i:i + self.batch_size]
            try:
                out.extend(self._run(chunk))
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                _free_device_memory()
                if len(chunk) == 1:
                    raise GeneratorError(
                        f"out of GPU memory generating one {chunk[0].width}x{chunk[0].height} image with "
                        f"{self.config.model} ({self.config.dtype}): set generator.dtype=float16|bfloat16, "
                        "generator.cpu_offload=true, generator.attention_slicing=true, or a smaller "
                        "width/height"
                    ) from exc
                self.batch_size = max(1, len(chunk) // 2)
                self.log.warning(
                    f"CUDA out of memory at batch {len(chunk)}: retrying with batch {self.batch_size} "
                    "(each image keeps its own seed, but batched kernels round differently, so an image "
                    "may differ by 1/255 on a few pixels from one made at the larger batch; "
                    "provenance.batch_size records the batch used)"
                )
                continue
            i += len(chunk)
        return out

    def _run(self, chunk: list[GenerationRequest]) -> list[GeneratedImage]:
        import torch

        pipe = self.pipeline
        cfg = self.config
        w, h = chunk[0].width, chunk[0].height
        if any((r.width, r.height) != (w, h) for r in chunk):
            raise GeneratorError("a batch must hold one image size; group requests by size")
        per_cn = []
        for spec in cfg.controlnets:
            missing = [r.sample_id for r in chunk if spec.control not in r.controls]
            if missing:
                raise GeneratorError(
                    f"samples {missing[:3]} have no {spec.control!r} control map, which generator."
                    "controlnets needs: re-materialise pose_pool with that control enabled"
                )
            per_cn.append([control_to_image(spec.control, r.controls[spec.control], w, h) for r in chunk])
        kwargs: dict[str, Any] = dict(
            prompt=[r.prompt for r in chunk], height=h, width=w,
            num_inference_steps=cfg.steps, guidance_scale=cfg.guidance, output_type="pil",
            generator=[torch.Generator("cpu").manual_seed(int(r.seed)) for r in chunk],
        )
        scales = [float(c.scale) for c in cfg.controlnets]
        if cfg.family in ("sd15", "sdxl"):
            kwargs["negative_prompt"] = [self._negative(r) for r in chunk]
            # Several ControlNets: one (B, 3, H, W) tensor per ControlNet. (Nested PIL lists
            # are read per *sample* by SD 1.5 and refused by SDXL.)
            kwargs["image"] = per_cn[0] if len(per_cn) == 1 else [_as_batch_tensor(imgs) for imgs in per_cn]
            kwargs["controlnet_conditioning_scale"] = scales[0] if len(scales) == 1 else scales
        elif cfg.family == "sd15-concat":
            # InstructPix2Pix sizes the output from the control image; the control entry's scale
            # is its image guidance (1.0: the control always on, the only way it was trained)
            del kwargs["height"], kwargs["width"]
            kwargs["negative_prompt"] = [self._negative(r) for r in chunk]
            kwargs["image"] = per_cn[0]
            kwargs["image_guidance_scale"] = scales[0]
        elif cfg.family == "flux":
            kwargs["control_image"] = per_cn[0] if len(per_cn) == 1 else per_cn
            kwargs["controlnet_conditioning_scale"] = scales[0] if len(scales) == 1 else scales
        else:  # flux-control: the control LoRA's scale is set on the adapter at load time
            kwargs["control_image"] = per_cn[0]
        started = time.perf_counter()
        images = pipe(**kwargs).images
        seconds = (time.perf_counter() - started) / len(chunk)
        fields = self._fields or self.provenance_fields()
        return [
            GeneratedImage(
                sample_id=r.sample_id, image=img.convert("RGB"), seconds=seconds,
                provenance={**fields, **self.request_provenance(r), "seconds": seconds,
                            "batch_size": len(chunk), "extra_json": "{}"},
            )
            for r, img in zip(chunk, images, strict=True)
        ]

    def reproduce(self, request: GenerationRequest, batch_size: int = 1) -> GeneratedImage:
        """Re-generate one sample exactly as it was made in a batch of `batch_size` (provenance
        column `batch_size`): the batch is filled with copies of the sample."""
        return self._run([request] * max(1, int(batch_size)))[0]


def library_versions() -> dict[str, str]:
    """The torch and diffusers versions that make the images (provenance, not the fingerprint:
    an upgrade keeps verified images, each row keeps the versions that made it)."""
    import diffusers
    import torch

    return {"torch_version": str(torch.__version__), "diffusers_version": str(diffusers.__version__)}


def _lora_file(path: Path, weight_name: str | None) -> Path:
    """What a LoRA entry loads: the file itself, `weight_name` inside a folder, or the folder
    (diffusers then picks its single weight file)."""
    if path.is_file() or not weight_name:
        return path
    file = path / weight_name
    if not file.is_file():
        raise GeneratorError(
            f"LoRA weight_name {weight_name!r} is not a file in {path}: set generator.loras[].weight_name "
            f"to one of {sorted(f.name for f in path.glob('*.safetensors')) or 'its .safetensors files'}"
        )
    return file


def _device_label(device: str) -> str:
    """`cpu`, or `cuda:0 (NVIDIA H100 80GB HBM3)`: which GPU made an image is provenance too."""
    if not device.startswith("cuda"):
        return device
    import torch

    index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def _as_batch_tensor(images):
    import numpy as np
    import torch

    arr = np.stack([np.asarray(img, dtype=np.float32) / 255.0 for img in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _is_oom(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def _free_device_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

"""The rendering baseline: the pose pool's shaded mesh composited on a procedural background.

This is what the method compares diffusion images against (a rendering-based dataset),
and the fast CPU preview generator. Everything random derives from the sample's seed:
the background (solid colour, two-colour gradient or multi-octave value noise) and a
lighting jitter (exposure, colour temperature and a soft directional falloff) applied to
the body pixels, which otherwise come straight from the shaded render.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from pd_assets.generation.generator import GeneratedImage, GenerationRequest, GeneratorError, fit_size

BACKGROUNDS = ("solid", "gradient", "noise")
_VERSION = 1  # bump when the compositing changes: it enters the content hash


@dataclass(frozen=True)
class RenderConfig:
    backgrounds: tuple[str, ...] = BACKGROUNDS
    lighting_jitter: float = 0.25  # 0 = body pixels exactly the shaded render
    device: str = "cpu"


def _value_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 4) -> np.ndarray:
    """Smooth noise in [0, 1]: random grids upsampled bilinearly, summed over octaves."""
    out = np.zeros((h, w), np.float32)
    total = 0.0
    for o in range(octaves):
        cells = 2 ** (o + 2)
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        img = Image.fromarray(grid, mode="F").resize((w, h), Image.BILINEAR)
        amp = 0.5 ** o
        out += amp * np.asarray(img, np.float32)
        total += amp
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / (hi - lo + 1e-6)


def make_background(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """HxWx3 float32 in [0, 255]."""
    c0 = rng.uniform(20, 235, 3).astype(np.float32)
    c1 = rng.uniform(20, 235, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    if kind == "solid":
        return np.broadcast_to(c0, (h, w, 3)).copy()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "gradient":
        s = (np.cos(angle) * xx / max(w - 1, 1) + np.sin(angle) * yy / max(h - 1, 1))
        s = (s - s.min()) / (s.max() - s.min() + 1e-6)
        return c0 + s[..., None] * (c1 - c0)
    if kind == "noise":
        n = _value_noise(rng, h, w)
        return c0 + n[..., None] * (c1 - c0)
    raise GeneratorError(f"render background {kind!r} is not one of {', '.join(BACKGROUNDS)}")


def lighting_gain(rng: np.random.Generator, mask: np.ndarray, jitter: float) -> tuple[np.ndarray, dict[str, Any]]:
    """A per-pixel RGB gain for the body: exposure x colour temperature x directional falloff."""
    h, w = mask.shape
    exposure = float(np.exp(rng.uniform(-1, 1) * 0.5 * jitter))
    temp = rng.uniform(-1, 1) * jitter  # > 0 warm, < 0 cool
    tint = np.array([1 + 0.3 * temp, 1.0, 1 - 0.3 * temp], np.float32)
    angle = float(rng.uniform(0, 2 * np.pi))
    strength = float(rng.uniform(0, 1) * jitter)
    gain = np.full((h, w, 3), exposure, np.float32) * tint
    if strength > 0 and mask.any():
        ys, xs = np.nonzero(mask)
        cx, cy = xs.mean(), ys.mean()
        extent = max(int(np.ptp(xs)), int(np.ptp(ys)), 1)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = (np.cos(angle) * (xx - cx) + np.sin(angle) * (yy - cy)) / extent  # about [-0.5, 0.5]
        gain *= (1.0 + strength * np.clip(d, -0.5, 0.5))[..., None]
    params = {"exposure": exposure, "temperature": float(temp), "light_angle": angle, "light_strength": strength}
    return gain, params


def composite(shaded: np.ndarray, seed: int, config: RenderConfig, width: int, height: int) -> tuple[np.ndarray, dict]:
    """The RGB uint8 image for one sample and the parameters that made it."""
    if shaded is None or shaded.ndim != 3 or shaded.shape[2] != 4:
        raise GeneratorError("the render backend needs the RGBA `shaded` control map of each sample: "
                             "re-materialise pose_pool with the shaded control enabled")
    img = fit_size(Image.fromarray(shaded, "RGBA"), width, height, what="shaded render")
    rgba = np.asarray(img)
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    kind = config.backgrounds[int(rng.integers(len(config.backgrounds)))]
    bg = make_background(rng, kind, height, width)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    body = rgba[..., :3].astype(np.float32)
    gain, light = lighting_gain(rng, rgba[..., 3] > 0, config.lighting_jitter)
    if config.lighting_jitter > 0:
        body = np.clip(body * gain, 0, 255)
    out = alpha * body + (1 - alpha) * bg
    return np.clip(out.round(), 0, 255).astype(np.uint8), {"background": kind, **light}


class RenderGenerator:
    backend = "render"
    required_controls = ("shaded",)

    def __init__(self, config: RenderConfig | None = None, *, batch_size: int = 16, log: Any = None):
        self.config = config or RenderConfig()
        bad = [b for b in self.config.backgrounds if b not in BACKGROUNDS]
        if bad or not self.config.backgrounds:
            raise GeneratorError(f"render backgrounds {bad or '[]'} invalid: use a non-empty subset of {BACKGROUNDS}")
        self.batch_size = batch_size
        self.log = log

    def provenance_fields(self) -> dict[str, Any]:
        settings = {**asdict(self.config), "version": _VERSION}
        settings.pop("device")
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
        return {
            "backend": self.backend, "family": "render", "model_id": f"render-v{_VERSION}",
            "model_hash": digest, "control_adapter": "", "aligned_checkpoint": "",
            "lora_paths": [], "lora_hashes": [], "lora_scales": [],
            "controlnet_ids": [], "controlnet_hashes": [], "control_types": ["shaded"],
            "control_scales": [1.0], "scheduler": "none", "steps": 0, "guidance": 0.0,
            "dtype": "uint8", "variant": "", "device": self.config.device,
            "torch_version": "", "diffusers_version": "",  # numpy and PIL only
        }

    def request_provenance(self, request: GenerationRequest) -> dict[str, Any]:
        return {"prompt": request.prompt, "negative_prompt": request.negative or "", "seed": int(request.seed),
                "width": int(request.width), "height": int(request.height)}

    def prepare(self) -> None:
        """Nothing to load."""

    def generate(self, batch: list[GenerationRequest]) -> list[GeneratedImage]:
        fields = self.provenance_fields()
        out = []
        for req in batch:
            started = time.perf_counter()
            shaded = req.shaded if req.shaded is not None else req.controls.get("shaded")
            arr, params = composite(None if shaded is None else np.asarray(shaded), req.seed,
                                    self.config, req.width, req.height)
            seconds = time.perf_counter() - started
            prov = {**fields, **self.request_provenance(req), "seconds": seconds, "batch_size": 1,
                    "extra_json": json.dumps(params, sort_keys=True)}
            out.append(GeneratedImage(req.sample_id, Image.fromarray(arr, "RGB"), seconds, prov))
        return out

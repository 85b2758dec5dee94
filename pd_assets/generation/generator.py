"""The generator interface: one request per pose sample in, one image with provenance out.

Two backends implement it: `render_backend.RenderGenerator` (the shaded mesh on a
procedural background: the rendering baseline and the CPU preview) and
`diffusers_backend.DiffusersGenerator` (SD 1.5 / SDXL / FLUX with ControlNets and LoRAs).

Provenance is split in two: `provenance_fields()` (the generator's settings: model and its
content hash, LoRAs, scheduler, steps, ...) and `request_provenance(request)` (what the
sample adds: prompt, negative prompt, true seed, size, controls). Both are known before
generating, so a re-launched partition can tell whether an existing image was made with
exactly the settings it would use now (`settings_fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

# Control maps a pose_pool partition can hold (pd_assets/CONTRACTS.md).
POSE_POOL_CONTROLS = ("pncc", "depth", "normals", "parts", "skeleton", "shaded", "mask")
# Provenance keys that describe where/how fast an image was made, not what it shows;
# they are left out of the settings fingerprint. (Library versions are recorded per image
# but do not invalidate verified images: an upgrade does not regenerate a partition.)
_NON_SETTINGS_KEYS = frozenset({"seconds", "device", "batch_size", "extra_json", "sample_id",
                                "torch_version", "diffusers_version"})


class GeneratorError(RuntimeError):
    """A generator cannot be built or run; the message names the setting and what to do."""


@dataclass
class GenerationRequest:
    sample_id: str
    prompt: str
    negative: str
    seed: int
    width: int
    height: int
    controls: dict[str, Image.Image | np.ndarray] = field(default_factory=dict)
    shaded: np.ndarray | None = None  # HxWx4 uint8 RGBA, alpha = person mask


@dataclass
class GeneratedImage:
    sample_id: str
    image: Image.Image  # RGB, width x height of the request
    seconds: float
    provenance: dict[str, Any]


@runtime_checkable
class Generator(Protocol):
    backend: str
    batch_size: int
    required_controls: tuple[str, ...]

    def prepare(self) -> None: ...

    def generate(self, batch: list[GenerationRequest]) -> list[GeneratedImage]: ...

    def provenance_fields(self) -> dict[str, Any]: ...

    def request_provenance(self, request: GenerationRequest) -> dict[str, Any]: ...


def settings_fingerprint(provenance: dict[str, Any]) -> str:
    """sha256 of the settings that determine an image (device, timing and batch left out)."""
    settings = {k: v for k, v in provenance.items() if k not in _NON_SETTINGS_KEYS}
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def expected_provenance(generator: Generator, request: GenerationRequest) -> dict[str, Any]:
    return {**generator.provenance_fields(), **generator.request_provenance(request)}


def to_rgb_array(img: Image.Image | np.ndarray) -> np.ndarray:
    """HxWx3 uint8 from a PIL image or an array (grey, RGB or RGBA; RGBA over black)."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 4:
        a = arr[..., 3:4].astype(np.float32) / 255.0
        arr = (arr[..., :3].astype(np.float32) * a).round()
    return np.ascontiguousarray(arr[..., :3]).astype(np.uint8)


def depth_to_rgb(depth_mm: np.ndarray) -> np.ndarray:
    """A 16-bit depth map (mm, 0 = background) as the 8-bit near-bright map depth ControlNets
    are trained on: inverse depth normalised over the person, background black."""
    d = depth_mm.astype(np.float32)
    fg = d > 0
    out = np.zeros(d.shape, np.float32)
    if fg.any():
        inv = 1.0 / d[fg]
        lo, hi = float(inv.min()), float(inv.max())
        out[fg] = 0.2 + 0.8 * ((inv - lo) / (hi - lo) if hi > lo else 1.0)
    grey = (out * 255.0).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def control_to_image(name: str, value: Image.Image | np.ndarray, width: int, height: int) -> Image.Image:
    """A pose_pool control map as the RGB image a ControlNet takes, at width x height."""
    arr = np.asarray(value)
    if name == "depth" and arr.dtype != np.uint8:
        rgb = depth_to_rgb(arr if arr.ndim == 2 else arr[..., 0])
    elif name == "parts" and arr.ndim == 2:
        rgb = _parts_palette()[arr.astype(np.int64) % 256]
    else:
        rgb = to_rgb_array(arr)
    img = Image.fromarray(rgb, "RGB")
    return fit_size(img, width, height, what=f"control map {name!r}", nearest=name in ("parts", "mask"))


def fit_size(img: Image.Image, width: int, height: int, *, what: str, nearest: bool = False) -> Image.Image:
    """Resize to width x height; refuses to change the aspect ratio (labels would no longer fit)."""
    if img.size == (width, height):
        return img
    w0, h0 = img.size
    if abs(w0 * height - h0 * width) > max(w0, h0):
        raise GeneratorError(
            f"{what} is {w0}x{h0} but the generator makes {width}x{height} images: the aspect "
            "ratios differ, so the labels would not match the image; set generator.width/height "
            f"to a multiple of {w0}x{h0} (or leave them unset to use the pose_pool size)"
        )
    return img.resize((width, height), Image.NEAREST if nearest else Image.BILINEAR)


def _parts_palette() -> np.ndarray:
    rng = np.random.Generator(np.random.PCG64(12345))
    pal = rng.integers(40, 256, size=(256, 3)).astype(np.uint8)
    pal[0] = 0
    return pal

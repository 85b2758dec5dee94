"""The render backend (baseline / CPU preview) and the control-map helpers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pd_assets.generation.generator import (
    GenerationRequest,
    Generator,
    GeneratorError,
    control_to_image,
    depth_to_rgb,
    settings_fingerprint,
)
from pd_assets.generation.render_backend import BACKGROUNDS, RenderConfig, RenderGenerator, composite


def _shaded(size=64, seed=0):
    rng = np.random.default_rng(seed)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[16:56, 24:40, :3] = rng.integers(30, 220, (40, 16, 3))
    rgba[16:56, 24:40, 3] = 255
    rgba[10:16, 28:36, :3], rgba[10:16, 28:36, 3] = 150, 128  # a soft (half-alpha) edge
    return rgba


def _request(seed=7, size=64, shaded=None):
    return GenerationRequest("r0-s0000-000000", "a photo", "blurry", seed, size, size,
                             controls={}, shaded=_shaded(size) if shaded is None else shaded)


def test_render_generator_satisfies_the_protocol():
    assert isinstance(RenderGenerator(), Generator)


def test_same_seed_same_bytes_other_seed_other_background():
    gen = RenderGenerator()
    a, b = gen.generate([_request(7)])[0], gen.generate([_request(7)])[0]
    c = gen.generate([_request(8)])[0]
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert a.image.mode == "RGB" and a.image.size == (64, 64)


def test_body_pixels_are_the_shaded_render_without_jitter():
    shaded = _shaded()
    out, params = composite(shaded, 3, RenderConfig(lighting_jitter=0.0), 64, 64)
    body = shaded[..., 3] == 255
    assert np.array_equal(out[body], shaded[..., :3][body])
    bg = shaded[..., 3] == 0
    assert params["background"] in BACKGROUNDS
    assert not np.array_equal(out[bg], np.zeros_like(out[bg]))  # a background was drawn


def test_lighting_jitter_is_a_smooth_gain_on_the_shaded_render():
    shaded = _shaded()
    body = shaded[..., 3] == 255
    out, params = composite(shaded, 11, RenderConfig(lighting_jitter=1.0), 64, 64)
    ratio = (out[body].astype(np.float64) + 0.5) / (shaded[..., :3][body].astype(np.float64) + 0.5)
    # One gain per channel up to the directional falloff: narrow spread, not a new texture.
    assert np.all(ratio.std(axis=0) < 0.25)
    corr = np.corrcoef(out[body].reshape(-1), shaded[..., :3][body].reshape(-1))[0, 1]
    assert corr > 0.9
    assert params["exposure"] != 1.0


def test_half_alpha_pixels_blend_body_and_background():
    shaded = _shaded()
    out, _ = composite(shaded, 5, RenderConfig(lighting_jitter=0.0, backgrounds=("solid",)), 64, 64)
    bg_colour = out[0, 0].astype(np.float64)
    blended = out[12, 30].astype(np.float64)
    expect = 0.5 * 150 + 0.5 * bg_colour
    assert np.allclose(blended, expect, atol=1.5)


def test_every_background_kind_appears_over_seeds():
    kinds = {composite(_shaded(), s, RenderConfig(), 32, 32)[1]["background"] for s in range(40)}
    assert kinds == set(BACKGROUNDS)


def test_upscales_to_the_configured_size_and_refuses_other_aspects():
    gen = RenderGenerator()
    big = gen.generate([GenerationRequest("x", "p", "n", 1, 128, 128, shaded=_shaded(64))])[0]
    assert big.image.size == (128, 128)
    with pytest.raises(GeneratorError, match="aspect"):
        gen.generate([GenerationRequest("x", "p", "n", 1, 128, 64, shaded=_shaded(64))])


def test_missing_shaded_map_is_a_clear_error():
    req = GenerationRequest("x", "p", "n", 1, 64, 64)
    with pytest.raises(GeneratorError, match="shaded"):
        RenderGenerator().generate([req])


def test_provenance_has_the_required_fields_and_stable_fingerprint():
    gen = RenderGenerator()
    g = gen.generate([_request()])[0]
    for key in ("backend", "model_id", "model_hash", "seed", "prompt", "negative_prompt", "width",
                "height", "scheduler", "steps", "guidance", "device", "dtype", "seconds", "extra_json"):
        assert key in g.provenance, key
    # null in provenance.parquet would fail raw_generations_provenance_complete for every render run
    assert g.provenance["control_adapter"] == ""
    fp = settings_fingerprint(g.provenance)
    again = gen.generate([_request()])[0]
    assert settings_fingerprint(again.provenance) == fp  # seconds differ, fingerprint does not
    other = RenderGenerator(RenderConfig(lighting_jitter=0.5)).generate([_request()])[0]
    assert settings_fingerprint(other.provenance) != fp


def test_control_maps_become_rgb_images():
    depth = np.zeros((8, 8), np.uint16)
    depth[2:6, 2:6] = np.arange(16).reshape(4, 4) + 3000
    rgb = depth_to_rgb(depth)
    assert rgb.shape == (8, 8, 3) and rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[2, 2, 0] > rgb[5, 5, 0]  # nearer is brighter
    img = control_to_image("depth", depth, 16, 16)
    assert isinstance(img, Image.Image) and img.size == (16, 16) and img.mode == "RGB"
    parts = control_to_image("parts", np.array([[0, 1], [2, 3]], np.uint8), 2, 2)
    assert np.asarray(parts)[0, 0].tolist() == [0, 0, 0]
    rgba = control_to_image("shaded", _shaded(64), 8, 8)
    assert rgba.mode == "RGB"

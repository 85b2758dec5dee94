"""The closed-form patch-PCA autoencoder: its math on hand-computed cases, and that a pipeline
folder using it loads through diffusers' `from_pretrained` like any other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pd_assets.generation.patch_autoencoder import PatchPCAAutoencoder, fit_patch_pca


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_constant_patches_have_one_component_along_the_patch_mean():
    # one grey channel, 2x2 patches, every patch constant: all variance lies along
    # (1, 1, 1, 1) / 2, so the first component is that direction and explains everything
    values = np.array([0, 51, 102, 153, 204, 255], np.uint8)
    images = np.repeat(np.repeat(values.reshape(1, 2, 3, 1), 2, axis=1), 2, axis=2)  # (1, 4, 6, 1)
    comps, mean, ratios, variances = fit_patch_pca(images, latent_channels=1, patch_size=2)
    assert torch.allclose(comps, torch.full((1, 4), 0.5), atol=1e-6)
    grey = values.astype(np.float64) / 127.5 - 1
    assert mean.item() == pytest.approx(grey.mean(), abs=1e-6)
    assert ratios[0] == pytest.approx(1.0, abs=1e-9) and ratios[1:].sum() == pytest.approx(0.0, abs=1e-9)
    # the variance of the projection 2 (v - mean) over the six patches
    assert variances[0].item() == pytest.approx(4 * grey.var(), rel=1e-5)
    ae = PatchPCAAutoencoder(patch_size=2, latent_channels=1, in_channels=1)
    ae.set_basis(comps, mean)
    x = _to_tensor(images)
    z = ae.encode(x).latent_dist.mode()
    # the latent of a constant patch v is (4 v - 4 mean) / 2 = 2 (v - mean)
    expected = 2 * (torch.tensor(grey, dtype=torch.float32).reshape(2, 3) - mean.item())
    assert torch.allclose(z[0, 0], expected, atol=1e-5)
    assert torch.allclose(ae.decode(z).sample, x, atol=1e-5)


def test_all_components_reconstruct_exactly_and_truncation_loses_the_dropped_variance():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    comps, mean, ratios, variances = fit_patch_pca(images, latent_channels=48, patch_size=4)
    assert torch.allclose(comps @ comps.T, torch.eye(48), atol=1e-5)  # orthonormal
    assert np.all(np.diff(ratios) <= 1e-12) and ratios.sum() == pytest.approx(1.0)
    full = PatchPCAAutoencoder(latent_channels=48)
    full.set_basis(comps, mean)
    x = _to_tensor(images)
    assert torch.allclose(full(x).sample, x, atol=1e-5)

    k = 10
    part = PatchPCAAutoencoder(latent_channels=k)
    part.set_basis(comps[:k], mean)
    # mean squared error per patch = the variance of the dropped components (the fit's own data)
    err = ((part(x).sample - x) ** 2).sum() / (x.numel() / 48)
    patches = torch.nn.functional.pixel_unshuffle(x.double(), 4).permute(0, 2, 3, 1).reshape(-1, 48)
    centred = patches - mean.double().repeat_interleave(16)
    total_var = float((centred ** 2).sum(dim=1).mean())
    assert float(err) == pytest.approx(total_var * ratios[k:].sum(), rel=1e-3)
    assert float(variances.sum()) == pytest.approx(total_var, rel=1e-4)


def test_whitened_latents_have_unit_variance_and_decode_the_same():
    rng = np.random.default_rng(3)
    # correlated colours, so the components' variances differ widely
    base = rng.integers(0, 256, (8, 4, 4, 1)).repeat(4, axis=1).repeat(4, axis=2)
    images = np.clip(base + rng.integers(-20, 21, (8, 16, 16, 3)), 0, 255).astype(np.uint8)
    comps, mean, _, variances = fit_patch_pca(images, 12)
    assert float(variances[0] / variances[11]) > 10
    plain, white = PatchPCAAutoencoder(latent_channels=12), PatchPCAAutoencoder(latent_channels=12)
    plain.set_basis(comps, mean)
    white.set_basis(comps, mean, variances[:12].sqrt())
    x = _to_tensor(images)
    z = white.encode(x).latent_dist.mode()
    per_channel = z.permute(1, 0, 2, 3).reshape(12, -1)
    # centred on the per-channel mean (what a bias can undo), so the second moment is 1
    assert torch.allclose((per_channel ** 2).mean(dim=1), torch.ones(12), rtol=1e-3)
    assert torch.allclose(white(x).sample, plain(x).sample, atol=1e-5)


def test_fit_is_deterministic_and_refuses_impossible_sizes():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    a, b = fit_patch_pca(images, 8), fit_patch_pca(images.copy(), 8)
    assert all(torch.equal(u, v) for u, v in zip((a[0], a[1], a[3]), (b[0], b[1], b[3]), strict=True))
    with pytest.raises(ValueError, match="exceeds the 48 values"):
        fit_patch_pca(images, 49)
    with pytest.raises(ValueError, match="implies a factor"):
        PatchPCAAutoencoder(patch_size=4, latent_channels=4, block_out_channels=(4, 4))


def test_a_pipeline_with_it_loads_through_from_pretrained(tmp_path):
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionPipeline

    from pd_assets.generation.scratch_model import ScratchModelConfig, build_parts

    cfg = ScratchModelConfig(image_size=32, vae_channels=(16, 16, 16), unet_channels=(32, 32), latent_channels=8,
                             control_input="controlnet")
    parts = build_parts(cfg, tmp_path / "tok")
    vae = parts["vae"]
    assert isinstance(vae, PatchPCAAutoencoder)
    rng = np.random.default_rng(2)
    comps, mean, _, _ = fit_patch_pca(rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), 8)
    vae.set_basis(comps, mean)
    vae.register_to_config(scaling_factor=0.25)
    StableDiffusionPipeline(
        vae=vae, text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["unet"],
        scheduler=parts["scheduler"], safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(tmp_path / "pipe", safe_serialization=True)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        tmp_path / "pipe", controlnet=parts["controlnet"], safety_checker=None, requires_safety_checker=False)
    assert isinstance(pipe.vae, PatchPCAAutoencoder)
    assert pipe.vae_scale_factor == 4 and pipe.vae.config.scaling_factor == 0.25
    assert torch.equal(pipe.vae.encoder.weight, vae.encoder.weight)
    from PIL import Image

    out = pipe("a person", image=Image.new("RGB", (32, 32)), num_inference_steps=2, guidance_scale=1.0,
               output_type="np", generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 32, 32, 3) and np.isfinite(out.images).all()


def test_the_generator_loads_such_a_pipeline_in_a_fresh_process(tmp_path):
    """diffusers only loads component classes from modules already imported: the generator's
    loader must import this one itself (a fresh process has not)."""
    import subprocess
    import sys
    import textwrap

    test_a_pipeline_with_it_loads_through_from_pretrained(tmp_path)
    parts_dir = tmp_path / "cn"
    from pd_assets.generation.scratch_model import ScratchModelConfig, build_controlnet

    build_controlnet(ScratchModelConfig(image_size=32, vae_channels=(16, 16, 16), unet_channels=(32, 32),
                                        latent_channels=8, control_input="controlnet")).save_pretrained(parts_dir)
    code = textwrap.dedent(f"""
        import logging, sys
        from types import SimpleNamespace
        from pathlib import Path
        from pd_assets.generation.pipelines import load_pipeline
        assert "pd_assets.generation.patch_autoencoder" not in sys.modules
        cfg = SimpleNamespace(dtype="float32", variant=None, family="sd15", controlnets=[], scheduler="default",
                              loras=[], cpu_offload=False, device="cpu", attention_slicing=False, compile=False)
        pipe = load_pipeline(cfg, Path({str(tmp_path / "pipe")!r}), [Path({str(parts_dir)!r})], [],
                             log=logging.getLogger())
        print(type(pipe.vae).__name__)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "PatchPCAAutoencoder"


def test_pixel_gains_are_the_component_stds_and_price_a_latent_error_in_pixels():
    # one grey channel, 2x2 patches, two orthonormal components: the patch mean direction and
    # a left/right split; whitened with stds 3 and 0.5
    comps = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, -0.5, 0.5, -0.5]])
    ae = PatchPCAAutoencoder(patch_size=2, latent_channels=2, in_channels=1)
    ae.set_basis(comps, torch.zeros(1), torch.tensor([3.0, 0.5]))
    assert torch.allclose(ae.pixel_gains(), torch.tensor([3.0, 0.5]))
    # a latent error (e0, e1) = (0.2, 0.4) moves the patch by 3 * 0.2 * c0 + 0.5 * 0.4 * c1:
    # squared pixel error 0.6^2 + 0.2^2 = 0.40 = sum gain_k^2 e_k^2 (orthonormal components)
    z = torch.zeros(1, 2, 1, 1)
    e = torch.tensor([0.2, 0.4]).reshape(1, 2, 1, 1)
    moved = ae.decode(z + e).sample - ae.decode(z).sample
    assert float((moved ** 2).sum()) == pytest.approx(0.40, rel=1e-5)

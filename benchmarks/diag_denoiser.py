"""Diagnose a from-scratch generator: one-step clean-image predictions at several noise levels.

Noises validation images to timestep t, lets the saved denoiser + ControlNet predict the clean
image in one step, and writes a grid (rows: the images, then one row per t) with the latent
MSE per t. Good rows at small t but noise at large t mean the model was not trained where
sampling starts (how the zero-weight min-SNR bug was found); good rows everywhere but bad
samples point at the sampler.

    python benchmarks/diag_denoiser.py --model benchmarks/results/control_adapter/model \
        --pose /tmp/adapter_bench/pose_pool/r0/s0009 --images /tmp/adapter_bench/raw_generations/r0/s0009
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True, help="folder with pipeline/ (and controlnet-pncc/ unless concat)")
    ap.add_argument("--pose", type=Path, required=True, help="a pose_pool partition folder (controls)")
    ap.add_argument("--images", type=Path, required=True, help="its raw_generations partition folder (images)")
    ap.add_argument("--timesteps", default="50,200,500,800,950,999")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("denoiser_diagnosis.png"))
    args = ap.parse_args()

    import numpy as np
    import torch
    from diffusers import ControlNetModel, DiffusionPipeline
    from PIL import Image

    import pd_assets.generation.patch_autoencoder  # noqa: F401  (diffusers loads only imported classes)
    from pd_assets.generation.control_input import control_residuals, denoise, encode_control_latents

    pipe = DiffusionPipeline.from_pretrained(args.model / "pipeline", safety_checker=None,
                                             requires_safety_checker=False)
    cn_dir = args.model / "controlnet-pncc"
    controlnets = {"pncc": ControlNetModel.from_pretrained(cn_dir)} if cn_dir.is_dir() else {}
    files = sorted((args.images / "images").glob("*.png"))[: args.n]
    if not files:
        raise SystemExit(f"no images in {args.images / 'images'}: point --images at a raw_generations partition")

    def load(path: Path, scale: float, shift: float) -> torch.Tensor:
        with Image.open(path) as im:
            return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / scale - shift

    images = torch.stack([load(f, 127.5, 1.0) for f in files])
    controls = torch.stack([load(args.pose / "controls" / "pncc" / f.name, 255.0, 0.0) for f in files])
    ids = pipe.tokenizer([""] * len(files), padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt").input_ids
    vae, scale = pipe.vae, pipe.vae.config.scaling_factor
    gen = torch.Generator().manual_seed(0)
    rows = [images]
    with torch.no_grad():
        text = pipe.text_encoder(ids)[0]
        x0 = vae.encode(images).latent_dist.mean * scale
        concat = None if controlnets else encode_control_latents(vae, controls)
        for t in (int(v) for v in args.timesteps.split(",")):
            a = pipe.scheduler.alphas_cumprod[t]
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=gen)
            ts = torch.full((len(files),), t)
            residuals = control_residuals(controlnets, x_t, ts, text, {"pncc": controls})
            v = denoise(pipe.unet, x_t, ts, text, residuals=residuals, control_latents=concat)
            pred = a.sqrt() * x_t - (1 - a).sqrt() * v  # v target: x0 = sqrt(a) x_t - sqrt(1-a) v
            print(f"t={t:4d}  latent MSE of the one-step clean prediction {float(((pred - x0) ** 2).mean()):.4f}")
            rows.append(vae.decode(pred / scale).sample)
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)
    Image.fromarray(((grid.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()).save(args.out)
    print(f"grid (rows: images, then t = {args.timesteps}) written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

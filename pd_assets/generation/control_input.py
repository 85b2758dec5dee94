"""How the control reaches the denoiser, in one place for adapter training and DPO.

Two forms (`ScratchModelConfig.control_input`):
  - controlnet: each ControlNet reads its control map (pixels in [0, 1]) and its residuals
    are added to the denoiser's skip connections (`StableDiffusionControlNetPipeline`);
  - concat: the control map's autoencoder latents (posterior mode, unscaled) are extra input
    channels of the denoiser, as `StableDiffusionInstructPix2PixPipeline` feeds them (the
    design of InstructPix2Pix and FLUX-Control).
"""

from __future__ import annotations

import torch


def control_residuals(controlnets: dict, noisy: torch.Tensor, t: torch.Tensor, enc: torch.Tensor,
                      controls: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor] | None, torch.Tensor | None]:
    """The summed (down, mid) residuals of every ControlNet; (None, None) without ControlNets."""
    down, mid = None, None
    for name, cn in controlnets.items():
        d, m = cn(noisy, t, encoder_hidden_states=enc, controlnet_cond=controls[name], return_dict=False)
        down = d if down is None else [a + b for a, b in zip(down, d, strict=True)]
        mid = m if mid is None else mid + m
    return down, mid


def denoise(unet, noisy: torch.Tensor, t: torch.Tensor, enc: torch.Tensor, *,
            residuals: tuple[list[torch.Tensor] | None, torch.Tensor | None] = (None, None),
            control_latents: torch.Tensor | None = None) -> torch.Tensor:
    """The denoiser's prediction, with ControlNet residuals or concatenated control latents."""
    if control_latents is not None:
        noisy = torch.cat([noisy, control_latents], dim=1)
    return unet(noisy, t, encoder_hidden_states=enc, down_block_additional_residuals=residuals[0],
                mid_block_additional_residual=residuals[1]).sample


@torch.no_grad()
def encode_control_latents(vae, maps: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Control maps (B, 3, H, W) in [0, 1] -> the latents a concat denoiser reads: the
    autoencoder's posterior mode of the map scaled to [-1, 1], not multiplied by the latent
    scale (the InstructPix2Pix pipeline's convention)."""
    out = [vae.encode(maps[i:i + batch] * 2.0 - 1.0).latent_dist.mode() for i in range(0, len(maps), batch)]
    return torch.cat(out)

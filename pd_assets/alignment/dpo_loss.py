"""The Diffusion-DPO loss (Wallace et al. 2024; method.md stage 4), next to its math.

For a winner w and a loser l denoised with the same noise and timestep,

    e(x)  = || target(x) - prediction(x) ||^2          (per sample, mean over pixels)
    delta = (e_theta(w) - e_ref(w)) - (e_theta(l) - e_ref(l))
    L     = -log sigmoid(-beta / 2 * delta)

theta is the trained model (denoiser + DPO LoRA), ref the same network with the LoRA
disabled. L falls when the trained model denoises the winner better (relative to the
reference) than the loser. Logged: the loss, the implicit reward accuracy (share of
pairs with delta < 0) and the reward margin -beta/2 * delta. An optional SFT term adds
`sft_weight * e_theta(w)` (keeps the winner's likelihood from drifting down).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_sample_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|| target - prediction ||^2 averaged over all but the batch dimension."""
    return (prediction.float() - target.float()).pow(2).mean(dim=tuple(range(1, prediction.ndim)))


def dpo_loss(err_theta_w: torch.Tensor, err_ref_w: torch.Tensor, err_theta_l: torch.Tensor,
             err_ref_l: torch.Tensor, beta: float, sft_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean Diffusion-DPO loss over a batch of pairs, and its diagnostics."""
    delta = (err_theta_w - err_ref_w) - (err_theta_l - err_ref_l)
    margin = -0.5 * beta * delta
    loss = -F.logsigmoid(margin)
    if sft_weight:
        loss = loss + sft_weight * err_theta_w
    return loss.mean(), {
        "reward_accuracy": float((delta.detach() < 0).float().mean()),
        "reward_margin": float(margin.detach().mean()),
        "dpo_term": float(-F.logsigmoid(margin.detach()).mean()),
    }

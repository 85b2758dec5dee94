"""Diffusion training targets for epsilon, v and flow-matching models, in one place.

Discrete-time models (SD 1.5 / SDXL family), with a_t = alphas_cumprod[t]:
    x_t = sqrt(a_t) * x0 + sqrt(1 - a_t) * noise
    epsilon target: noise
    v target:       sqrt(a_t) * noise - sqrt(1 - a_t) * x0
Rectified flow (FLUX / SD3 family), with sigma in [0, 1]:
    x_t = (1 - sigma) * x0 + sigma * noise
    flow target:    noise - x0
Both the control-adapter trainer and the DPO loss call these, so a model is trained and
aligned against the same target.
"""

from __future__ import annotations

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "flow")


def _bcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample (B,) tensor shaped to broadcast over `like` (B, C, H, W ...)."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, prediction_type: str,
              alphas_cumprod: torch.Tensor | None = None) -> torch.Tensor:
    """The noisy input x_t. `timesteps` are integer indices into `alphas_cumprod` for epsilon and
    v models, and sigmas in [0, 1] for flow models."""
    if prediction_type == "flow":
        s = _bcast(timesteps, x0)
        return (1.0 - s) * x0 + s * noise
    a = _bcast(_alpha_bar(alphas_cumprod, timesteps), x0)
    return a.sqrt() * x0 + (1.0 - a).sqrt() * noise


def training_target(x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, prediction_type: str,
                    alphas_cumprod: torch.Tensor | None = None) -> torch.Tensor:
    """What the network should output at x_t (see the module docstring)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        a = _bcast(_alpha_bar(alphas_cumprod, timesteps), x0)
        return a.sqrt() * noise - (1.0 - a).sqrt() * x0
    if prediction_type == "flow":
        return noise - x0
    raise ValueError(f"prediction_type={prediction_type!r} is not one of {', '.join(PREDICTION_TYPES)}")


def snr(timesteps: torch.Tensor, prediction_type: str, alphas_cumprod: torch.Tensor | None = None) -> torch.Tensor:
    """Signal-to-noise ratio a_t / (1 - a_t) (flow: ((1 - sigma) / sigma)^2)."""
    if prediction_type == "flow":
        s = timesteps.float().clamp(1e-6, 1.0)
        return ((1.0 - s) / s) ** 2
    a = _alpha_bar(alphas_cumprod, timesteps).float()
    return a / (1.0 - a).clamp_min(1e-12)


def min_snr_weight(timesteps: torch.Tensor, prediction_type: str, gamma: float,
                   alphas_cumprod: torch.Tensor | None = None) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023), expressed for the model's own target:
    epsilon min(snr, g) / snr; v and flow min(snr + 1, g) / (snr + 1).

    Why snr + 1 for v (and flow, whose target noise - x0 weighs like v up to a constant):
    the paper's min(snr, g) / (snr + 1) is 0 at snr = 0, so with a zero-terminal-SNR
    schedule the steps where sampling starts are never trained (measured here: one-step
    predictions good at t <= 500, noise at t = 800, samples from t = 999 unusable).
    A plain v loss weighs the clean-image error by snr + 1; clipping that at g keeps
    min-SNR's point (low-noise steps do not dominate) and weight 1 at snr = 0."""
    s = snr(timesteps, prediction_type, alphas_cumprod)
    if prediction_type == "epsilon":
        return torch.minimum(s, torch.full_like(s, gamma)) / s.clamp_min(1e-12)
    return torch.minimum(s + 1.0, torch.full_like(s, gamma)) / (s + 1.0)


def _alpha_bar(alphas_cumprod: torch.Tensor | None, timesteps: torch.Tensor) -> torch.Tensor:
    if alphas_cumprod is None:
        raise ValueError("epsilon and v_prediction targets need the scheduler's alphas_cumprod")
    return alphas_cumprod.to(timesteps.device)[timesteps.long()]

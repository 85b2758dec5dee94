"""DPO fine-tuning of the denoiser with a LoRA (method.md stage 4), on the shared loop.

What is trained: a peft LoRA on the UNet's attention projections (rank, alpha, targets
configurable). The reference model is the same UNet with the adapter disabled, so no
second copy sits in memory. The ControlNet (the control adapter) and the autoencoder stay
frozen; the ControlNet's residuals are computed once per step and fed to both passes.
Winner and loser share the noise and the timestep (the loss compares their errors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from pd_assets.alignment.dpo_loss import dpo_loss, per_sample_error
from pd_assets.generation.control_input import control_residuals, denoise
from pd_assets.training.loop import LoopConfig, LoopResult, run_loop
from pd_assets.training.targets import add_noise, training_target


@dataclass(frozen=True)
class DpoConfig:
    rank: int = 16
    alpha: int = 16
    targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    beta: float = 2500.0
    lr: float = 1e-4
    steps: int = 1000
    batch: int = 4  # pairs per micro-batch
    grad_accum: int = 4
    sft_weight: float = 0.0
    max_grad_norm: float = 1.0
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    max_seconds: float | None = None
    mixed_precision: str = "no"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["targets"] = list(self.targets)
        return d


@dataclass
class PreferenceTensors:
    """Everything a DPO step needs, cached: scaled latents of winners and losers, the
    controls (float in [0, 1]) and the prompt embeddings of each pair's condition."""
    winners: torch.Tensor
    losers: torch.Tensor
    controls: dict[str, torch.Tensor]
    text: torch.Tensor
    # a concat adapter (no ControlNets): the control's latents, fed as extra denoiser input
    control_latents: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.winners.shape[0])


def add_lora(unet, cfg: DpoConfig) -> None:
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, init_lora_weights=True,
                                target_modules=list(cfg.targets)))


def lora_state(unet) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(unet)


def save_lora(unet, out: Path) -> Path:
    """`out/pytorch_lora_weights.safetensors` in the diffusers format (`load_lora_weights`)."""
    from diffusers import StableDiffusionPipeline

    out.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=lora_state(unet), safe_serialization=True)
    return out / "pytorch_lora_weights.safetensors"


def make_loss_fn(unet, controlnets: dict, scheduler, data: PreferenceTensors, cfg: DpoConfig, device: str):
    pred_type = scheduler.config.prediction_type
    alphas = scheduler.alphas_cumprod.float()
    num_t = scheduler.config.num_train_timesteps

    def loss_fn(step: int, micro: int, gen: torch.Generator):
        idx = torch.randint(0, len(data), (cfg.batch,), generator=gen)
        x0 = torch.cat([data.winners[idx], data.losers[idx]]).to(device)
        noise = torch.randn(data.winners[idx].shape, generator=gen).repeat(2, 1, 1, 1).to(device)
        t = torch.randint(0, num_t, (cfg.batch,), generator=gen).repeat(2).to(device)
        enc = data.text[idx].repeat(2, 1, 1).to(device)
        noisy = add_noise(x0, noise, t, pred_type, alphas)
        with torch.no_grad():  # the control adapter is frozen: one pass serves both models
            controls = {name: data.controls[name][idx].repeat(2, 1, 1, 1).to(device) for name in controlnets}
            residuals = control_residuals(controlnets, noisy, t, enc, controls)
        concat = (data.control_latents[idx].repeat(2, 1, 1, 1).to(device)
                  if data.control_latents is not None else None)
        target = training_target(x0, noise, t, pred_type, alphas)

        def run():
            return denoise(unet, noisy, t, enc, residuals=residuals, control_latents=concat)

        err_theta = per_sample_error(run(), target)
        with torch.no_grad():
            unet.disable_adapters()
            try:
                err_ref = per_sample_error(run(), target)
            finally:
                unet.enable_adapters()
        b = cfg.batch
        return dpo_loss(err_theta[:b], err_ref[:b], err_theta[b:], err_ref[b:], cfg.beta, cfg.sft_weight)

    return loss_fn


def train_dpo(unet, controlnets: dict, scheduler, data: PreferenceTensors, cfg: DpoConfig, work: Path, *,
              device: str = "cpu", log: Callable[[str], None] | None = None) -> LoopResult:
    """Add the LoRA (if not there yet), train it with DPO, resuming from `work`."""
    if not getattr(unet, "peft_config", None):
        add_lora(unet, cfg)
    for cn in controlnets.values():
        cn.requires_grad_(False)
    loop = LoopConfig(steps=cfg.steps, lr=cfg.lr, grad_accum=cfg.grad_accum, max_grad_norm=cfg.max_grad_norm,
                      checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every, seed=cfg.seed,
                      max_seconds=cfg.max_seconds, mixed_precision=cfg.mixed_precision)
    result, _ = run_loop({"unet": unet}, make_loss_fn(unet, controlnets, scheduler, data, cfg, device), loop, work,
                         device=device, log=log)
    return result


@torch.no_grad()
def implicit_reward_accuracy(unet, controlnets: dict, scheduler, data: PreferenceTensors, cfg: DpoConfig,
                             device: str = "cpu", draws: int = 4, seed: int = 12345) -> float:
    """Share of (pair, noise draw) where the trained model prefers the winner more than the
    reference does (delta < 0): the DPO objective's own accuracy, on pairs it did not train on."""
    from pd_assets.training.loop import step_generator

    fn = make_loss_fn(unet, controlnets, scheduler, data, DpoConfig(**{**cfg.as_dict(), "targets": cfg.targets,
                                                                        "batch": len(data)}), device)
    accs = [fn(0, k, step_generator(seed, 0, k))[1]["reward_accuracy"] for k in range(draws)]
    return float(np.mean(accs))

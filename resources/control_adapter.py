"""How the control adapter is trained (stage 3): pair source, base, model size, schedule.

Profiles: `ci` trains a tiny model for a few steps (the asset's wiring, not its quality);
`local` and `local-diffusion` train the benchmark-size model from scratch on the
render-backend pairs of the configured partitions; `gpu` trains ControlNets on the base
named by `PD_ADAPTER_BASE` (an SD-1.5 folder) or from scratch when unset.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from pd_assets import thresholds as T

PAIR_SOURCES = ("partitions", "render", "folder", "webdataset")
# from scratch, run 16's (README: 6e-4, run 19, reached the validation targets sooner but scored
# lower on 192 validation controls at 90 minutes); on a pretrained base a ControlNet is
# fine-tuned from the base's own weights, where the usual rates are ~30x lower
SCRATCH_LEARNING_RATE = 3e-4
PRETRAINED_LEARNING_RATE = 1e-5


class ControlAdapterResource(dg.ConfigurableResource):
    base: str = Field(default="scratch", description="scratch | a diffusers SD-1.5 pipeline folder or hub id")
    controls: list[str] = Field(default=["pncc"], description="pose_pool control maps fed to the adapter (one ControlNet each; concat reads one)")
    control_input: str = Field(
        default="concat",
        description="concat (from scratch, one control: its latents are extra denoiser input channels) | controlnet",
    )
    pair_source: str = Field(default="partitions", description="partitions (raw_generations images) | render (render-backend images made in memory) | folder | webdataset")
    pair_partitions: list[str] = Field(
        default=["r0|s0000"], description="round|shard partitions whose pose_pool controls + raw_generations images train it",
    )
    pair_paths: list[str] = Field(default=[], description="folder (pair_source=folder) or .tar shards (webdataset)")
    min_pairs: int = Field(default=16, ge=1, description="fewer training pairs than this is an error")
    heldout_partition: str = Field(
        default="r0|s0015", description="pose_pool partition whose controls evaluate the adapter (never trained on)",
    )
    autoencoder: str = Field(default="patch-pca", description="patch-pca (closed-form, seconds) | kl (trained)")
    vae_channels: list[int] = Field(default=[32, 64, 128, 256],
                                    description="its length sets the latent down-sampling: 2^(n-1)")
    latent_channels: int = Field(default=32, ge=1)
    unet_channels: list[int] = Field(default=[64, 128, 192])
    ae_steps: int = Field(default=100_000, ge=1)
    ae_minutes: float | None = Field(default=10.0, allow_inf_nan=False, description="autoencoder time budget")
    steps: int = Field(default=1_000_000, ge=1, description="denoiser + ControlNet steps")
    minutes: float | None = Field(default=80.0, allow_inf_nan=False, description="denoiser time budget")
    batch_size: int = Field(default=16, ge=1)
    learning_rate: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="None: 3e-4 from scratch (6e-4 reached the validation targets sooner, README run 19), "
                    "1e-5 on a pretrained base (as diffusers' ControlNet training examples)",
    )
    lr_schedule: str = Field(
        default="constant",
        description="after warm-up: constant | cosine | linear (down to learning_rate * min_lr_ratio at `steps`; "
                    "a run that `minutes` stops first ends part-way down, so set `steps` to what the time buys)",
    )
    min_lr_ratio: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    ema_decay: float | None = Field(default=0.999, allow_inf_nan=False)
    min_snr_gamma: float | None = Field(
        default=1.0, gt=0, allow_inf_nan=False,
        description="min-SNR-gamma weighting of the v-loss (1: the clean-image loss; None: unweighted v-loss)",
    )
    channel_weight_power: float = Field(
        default=0.5, ge=0.0, allow_inf_nan=False,
        description="patch-pca: weight each latent channel's loss by (its pixel gain^2)^power "
                    "(0: all alike; 1: the decoded pixels' MSE)",
    )
    foreground_loss_weight: float = Field(
        default=1.0, ge=1.0, allow_inf_nan=False,
        description="loss weight of the body's latent cells (pixels the controls draw) against 1 on the background "
                    "(each sample's map scaled to mean 1; 1: no spatial weighting)",
    )
    head_loss_weight: float = Field(
        default=1.0, ge=1.0, allow_inf_nan=False,
        description="loss weight of the latent cells over the label's head (from its face keypoints; pose_pool "
                    "pairs only) against 1 on the background (each sample's map scaled to mean 1; 1: none)",
    )
    checkpoint_every: int = Field(default=200, ge=1)
    mixed_precision: str = Field(
        default="auto",
        description="auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 (on a CPU too; time it there with "
                    "benchmarks/bench_train_step.py: no reliable gain on ours, README run 18) | no",
    )
    seed: int = Field(default=0)
    sample_steps: int = Field(default=8, ge=1, description="denoising steps the generator should use")
    guidance: float = Field(default=1.5, allow_inf_nan=False, description="guidance the generator should use")
    image_guidance: float = Field(
        default=3.0, ge=1.0, allow_inf_nan=False,
        description="concat form: the image (control) guidance the generator should use; > 1 needs guidance > 1",
    )
    control_dropout: float = Field(
        default=0.1, ge=0.0, lt=1.0, allow_inf_nan=False,
        description="concat form: share of training samples without the control (what image guidance needs)",
    )
    min_detection_rate: float = Field(default=T.ADAPTER_MIN_DETECTION_RATE, ge=0, le=1)
    min_median_oks: float = Field(default=T.ADAPTER_MIN_MEDIAN_OKS, ge=0, le=1)

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return SCRATCH_LEARNING_RATE if self.base == "scratch" else PRETRAINED_LEARNING_RATE

    def precision_for(self, device: str) -> str:
        """The training loop's mixed_precision on `device` ("cpu", "cuda", "cuda:1", ...)."""
        if self.mixed_precision not in ("auto", "bf16", "no"):
            raise ValueError(f"control_adapter.mixed_precision={self.mixed_precision!r} is not one of auto, bf16, no")
        if self.mixed_precision == "auto":
            return "bf16" if device.startswith("cuda") else "no"
        return self.mixed_precision

    def training_config(self, device: str = "cpu"):
        """The training settings for a run on `device` (which decides `mixed_precision: auto`)."""
        from pd_assets.generation.adapter_training import AdapterTrainingConfig
        from pd_assets.generation.scratch_model import (
            AUTOENCODERS, ScratchModelConfig, check_control_input, check_image_guidance,
        )
        from pd_assets.training.loop import LR_SCHEDULES

        if self.pair_source not in PAIR_SOURCES:
            raise ValueError(f"control_adapter.pair_source={self.pair_source!r} is not one of {', '.join(PAIR_SOURCES)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"control_adapter.lr_schedule={self.lr_schedule!r} is not one of {', '.join(LR_SCHEDULES)}")
        if self.autoencoder not in AUTOENCODERS:
            raise ValueError(f"control_adapter.autoencoder={self.autoencoder!r} is not one of {', '.join(AUTOENCODERS)}")
        try:
            check_control_input(self.control_input, self.base, self.controls)
            check_image_guidance(self.image_guidance, self.guidance, self.control_input, self.control_dropout)
        except ValueError as exc:
            raise ValueError(f"control_adapter.{exc}") from None
        return AdapterTrainingConfig(
            controls=tuple(self.controls), base=self.base,
            model=ScratchModelConfig(autoencoder=self.autoencoder, control_input=self.control_input,
                                     vae_channels=tuple(self.vae_channels), latent_channels=self.latent_channels,
                                     unet_channels=tuple(self.unet_channels), seed=self.seed),
            ae_steps=self.ae_steps, ae_max_seconds=self.ae_minutes * 60 if self.ae_minutes else None,
            steps=self.steps, max_seconds=self.minutes * 60 if self.minutes else None, batch=self.batch_size,
            lr=self.resolved_learning_rate(), lr_schedule=self.lr_schedule, min_lr_ratio=self.min_lr_ratio,
            ema_decay=self.ema_decay, min_snr_gamma=self.min_snr_gamma,
            channel_weight_power=self.channel_weight_power, foreground_loss_weight=self.foreground_loss_weight,
            head_loss_weight=self.head_loss_weight,
            checkpoint_every=self.checkpoint_every,
            seed=self.seed, mixed_precision=self.precision_for(device), sample_steps=self.sample_steps, guidance=self.guidance,
            image_guidance=self.image_guidance, control_dropout=self.control_dropout,
        )

    @classmethod
    def for_profile(cls, profile: str) -> ControlAdapterResource:
        import os

        if profile == "ci":
            return cls(pair_partitions=["r0|s0000"], heldout_partition="r0|s0001", min_pairs=4,
                       vae_channels=[16, 16], latent_channels=8, unet_channels=[32, 32], ae_steps=4, ae_minutes=None, steps=4,
                       minutes=None, batch_size=2, checkpoint_every=2, sample_steps=2,
                       min_detection_rate=0.0, min_median_oks=0.0)
        if profile == "gpu":
            base = os.environ.get("PD_ADAPTER_BASE", "scratch")
            # image guidance belongs to the concat form; ControlNets on a pretrained base run without it
            return cls(base=base, control_input="concat" if base == "scratch" else "controlnet",
                       image_guidance=3.0 if base == "scratch" else 1.0,
                       minutes=None, ae_minutes=None,
                       steps=20_000, ae_steps=5_000, batch_size=16)
        if profile == "local-diffusion":  # the benchmark's settings (benchmarks/bench_control_adapter.py)
            return cls(pair_source="render", pair_partitions=[f"r0|s{i:04d}" for i in range(8)],
                       heldout_partition="r0|s0008")
        return cls()

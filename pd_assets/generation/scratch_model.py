"""A small latent-diffusion generator built from scratch, as ordinary diffusers parts.

When no pretrained base is configured (`control_adapter.base = scratch`), the adapter stage
trains this model on the (control, image) pairs: an autoencoder (f=8, 32 latent channels;
by default the closed-form patch-PCA one of `patch_autoencoder`, or a learned KL one), a
UNet denoiser with cross-attention on its two coarser levels, and a small frozen CLIP
text encoder (the tiny-model builder's). The control enters in one of two forms
(`control_input`, see `control_input.py`):
  - concat (default): the control map's autoencoder latents are extra input channels of
    the denoiser; saved as a `StableDiffusionInstructPix2PixPipeline` folder, which feeds
    them exactly so (generator family `sd15-concat`);
  - controlnet: a ControlNet that reads the control at image resolution, saved as an
    SD-1.5 pipeline folder plus a ControlNet folder (family `sd15`).
Both load through `from_pretrained` like real weights.

Why concat is the default from scratch: the control reaches the first layer at full
strength from step 0 (a ControlNet starts behind zero convolutions), and without the
ControlNet's copy of the encoder a step costs 0.75 s instead of 1.1-1.2 s here, so the
same minutes buy 1.5x the steps (issue 7's benchmark, README). A pretrained base, or
several control maps, use ControlNets: the base is frozen, and each map has its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class ScratchModelConfig:
    image_size: int = 128
    # patch-pca: fit in closed form (seconds, sharp); kl: a learned AutoencoderKL (SD's kind),
    # which minutes of CPU training leave too blurry for the detector (see patch_autoencoder)
    autoencoder: str = "patch-pca"
    # concat: the control's latents are extra input channels of the denoiser (InstructPix2Pix /
    # FLUX-Control design); controlnet: a ControlNet beside the denoiser (see the module doc)
    control_input: str = "concat"
    # 4 levels: 8x down-sampling (128 px -> 16x16 latents); f=8 steps 3.3x faster than f=4 here
    # (0.22 vs 0.73 s) and reached detections f=4 never did in 90 minutes (README, issue 7)
    vae_channels: tuple[int, ...] = (32, 64, 128, 256)
    latent_channels: int = 32  # of the 192 values of an 8x8x3 patch; 32 keep 98.4% of the variance
    unet_channels: tuple[int, ...] = (64, 128, 192)
    layers_per_block: int = 1
    text_hidden: int = 32
    prediction_type: str = "v_prediction"
    seed: int = 0

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.vae_channels) - 1)

    def as_dict(self) -> dict:
        return asdict(self)


AUTOENCODERS = ("patch-pca", "kl")
CONTROL_INPUTS = ("concat", "controlnet")


def check_control_input(control_input: str, base: str, controls) -> None:
    """Refuse a control form that cannot be trained: concat makes the control input channels
    of a denoiser trained from scratch, so it needs base=scratch and exactly one control."""
    if control_input not in CONTROL_INPUTS:
        raise ValueError(f"control_input={control_input!r} is not one of {', '.join(CONTROL_INPUTS)}")
    if control_input == "concat" and (base != "scratch" or len(controls) != 1):
        raise ValueError(
            f"control_input=concat needs base=scratch and one control (got base={base!r}, controls={list(controls)}): "
            "set control_input=controlnet to train ControlNets on a pretrained base or on several control maps"
        )


def check_image_guidance(image_guidance: float, guidance: float, control_input: str, control_dropout: float) -> None:
    """Refuse image guidance that would be silently ignored or subtract an untrained branch:
    InstructPix2Pix applies classifier-free guidance only with guidance > 1, and its "no
    control" branch (zeroed control latents) is only trained with control dropout."""
    if image_guidance == 1.0:
        return
    if control_input != "concat":
        raise ValueError(f"image_guidance={image_guidance:g} applies to control_input=concat only: set it to 1")
    if guidance <= 1.0:
        raise ValueError(f"image_guidance={image_guidance:g} needs guidance > 1 (got {guidance:g}): the "
                         "InstructPix2Pix pipeline applies guidance only then; set guidance to e.g. 1.5")
    if control_dropout <= 0.0:
        raise ValueError(f"image_guidance={image_guidance:g} needs control_dropout > 0: without it the "
                         "no-control branch that guidance subtracts is never trained (e.g. 0.1)")


def build_vae(cfg: ScratchModelConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    if cfg.autoencoder == "patch-pca":
        from pd_assets.generation.patch_autoencoder import PatchPCAAutoencoder

        return PatchPCAAutoencoder(patch_size=2 ** (n - 1), latent_channels=cfg.latent_channels)
    if cfg.autoencoder != "kl":
        raise ValueError(f"autoencoder={cfg.autoencoder!r} is not one of {', '.join(AUTOENCODERS)}")
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=cfg.latent_channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels, layers_per_block=1, norm_num_groups=16,
        sample_size=cfg.image_size, scaling_factor=1.0,
        # no self-attention in the mid block: at 32x32 latents it was half the encoder's cost
        mid_block_add_attention=False,
    )


def _unet_blocks(cfg: ScratchModelConfig) -> dict:
    n = len(cfg.unet_channels)
    # self/cross attention is quadratic in tokens: only on the coarser levels
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1)
    return dict(
        block_out_channels=cfg.unet_channels, layers_per_block=cfg.layers_per_block,
        down_block_types=down, cross_attention_dim=cfg.text_hidden,
        attention_head_dim=8, norm_num_groups=32, in_channels=cfg.latent_channels,
    )


def build_unet(cfg: ScratchModelConfig):
    from diffusers import UNet2DConditionModel

    if cfg.control_input not in CONTROL_INPUTS:
        raise ValueError(f"control_input={cfg.control_input!r} is not one of {', '.join(CONTROL_INPUTS)}")
    n = len(cfg.unet_channels)
    blocks = _unet_blocks(cfg)
    if cfg.control_input == "concat":
        blocks["in_channels"] = 2 * cfg.latent_channels  # noisy latents + the control's latents
    return UNet2DConditionModel(
        **blocks, sample_size=cfg.latent_size, out_channels=cfg.latent_channels,
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
    )


def build_controlnet(cfg: ScratchModelConfig, unet=None):
    from diffusers import ControlNetModel

    down_steps = len(cfg.vae_channels) - 1
    # the conditioning embedding down-samples the control map to the latent size
    embed = tuple(16 * 2 ** i for i in range(down_steps + 1))
    if unet is not None:
        return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=embed)
    return ControlNetModel(**_unet_blocks(cfg), conditioning_embedding_out_channels=embed)


def build_scheduler(cfg: ScratchModelConfig):
    from diffusers import DDIMScheduler

    # zero terminal SNR + trailing timesteps (Lin et al. 2024): sampling starts from pure
    # noise, which matters at this small latent size; needs the v target
    return DDIMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        prediction_type=cfg.prediction_type, rescale_betas_zero_snr=cfg.prediction_type == "v_prediction",
        timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )


def build_text_encoder(cfg: ScratchModelConfig, tmp: Path):
    """The tiny-model builder's byte-level CLIP tokenizer and a small random CLIP text model
    (frozen): prompts are recorded and fed as in production, though this encoder has never
    learned language."""
    from pd_assets.generation.tiny_models import _clip_text_model, _clip_tokenizer

    torch.manual_seed(cfg.seed)
    tok, eos = _clip_tokenizer(tmp, 1000)
    te = _clip_text_model(eos, hidden=cfg.text_hidden)
    te.requires_grad_(False)
    return tok, te


def build_parts(cfg: ScratchModelConfig, tmp: Path) -> dict:
    torch.manual_seed(cfg.seed)
    vae = build_vae(cfg)
    unet = build_unet(cfg)
    controlnet = build_controlnet(cfg) if cfg.control_input == "controlnet" else None
    tok, te = build_text_encoder(cfg, tmp)
    return {"vae": vae, "unet": unet, "controlnet": controlnet, "tokenizer": tok, "text_encoder": te,
            "scheduler": build_scheduler(cfg)}


def save_pipeline(parts: dict, out: Path, control: str = "pncc") -> tuple[Path, Path]:
    """Write `out/pipeline` and, with a ControlNet, `out/controlnet-{control}`, replacing what
    is there; returns the pipeline folder and the folder of the weights that read the control
    (the ControlNet, or the concat denoiser `pipeline/unet`).

    A concat denoiser is saved as a `StableDiffusionInstructPix2PixPipeline`: the diffusers
    pipeline that encodes its `image` with the autoencoder and concatenates those latents to
    the denoiser input, as this model was trained (generator family `sd15-concat`)."""
    from diffusers import StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline

    concat = parts.get("controlnet") is None
    cls = StableDiffusionInstructPix2PixPipeline if concat else StableDiffusionPipeline
    pipe = cls(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["unet"],
        scheduler=parts["scheduler"], safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(out / "pipeline", safe_serialization=True)
    if concat:
        return out / "pipeline", out / "pipeline" / "unet"
    parts["controlnet"].save_pretrained(out / f"controlnet-{control}", safe_serialization=True)
    return out / "pipeline", out / f"controlnet-{control}"

"""Random-weight models at real sizes for benchmarks/bench_gpu.py (and tiny ones for --smoke).

Everything is built from config values written here (no downloads): the SDXL base UNet,
its ControlNet (`ControlNetModel.from_unet`), the SDXL autoencoder and both CLIP text
encoders, and the FLUX.1-dev transformer with its input projection widened from 64 to 128
channels for the control latents, as diffusers' FluxControlPipeline / examples/flux-control
do. Weights are random: the figures are speed and memory, never image quality.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (the values that shape the net)
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816, norm_num_groups=32,
)
# the SDXL autoencoder (sdxl-vae): 8x down-sampling, 4 latent channels, full widths
SDXL_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), sample_size=1024, scaling_factor=0.13025,
)
# CLIP ViT-L/14 (text_encoder) and OpenCLIP ViT-bigG/14 with projection (text_encoder_2)
SDXL_TE1 = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                projection_dim=768, hidden_act="quick_gelu")
SDXL_TE2 = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                projection_dim=1280, hidden_act="gelu")
# black-forest-labs/FLUX.1-dev transformer/config.json
FLUX = dict(
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)

# --smoke: the same architectures, tiny, so every code path runs on a CPU in seconds
TINY_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(32, 64), transformer_layers_per_block=(1, 1), attention_head_dim=(2, 4),
    cross_attention_dim=32, use_linear_projection=True, addition_embed_type="text_time",
    addition_time_embed_dim=8, projection_class_embeddings_input_dim=16 + 6 * 8, norm_num_groups=32,
)
TINY_VAE = dict(SDXL_VAE, layers_per_block=1, norm_num_groups=8, block_out_channels=(16, 16, 32, 32), sample_size=64)
TINY_TE = dict(hidden_size=16, intermediate_size=37, num_attention_heads=2, num_hidden_layers=2, projection_dim=16,
               hidden_act="gelu")
TINY_FLUX = dict(
    patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
    num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=16, guidance_embeds=True,
    axes_dims_rope=(4, 6, 6),
)


@dataclass(frozen=True)
class Sizes:
    """Every model config and tensor size one run uses (real or --smoke)."""
    unet: dict
    vae: dict
    te1: dict
    te2: dict
    flux: dict
    flux_latent_channels: int  # VAE latent channels before FLUX's 2x2 packing (16 -> 64 per token)
    flux_text_len: int  # T5 tokens (512 for FLUX.1-dev)
    clip_len: int = 77

    @property
    def pooled_dim(self) -> int:  # SDXL text_embeds width (text_encoder_2's projection)
        return int(self.te2["projection_dim"])

    @property
    def time_ids_dim(self) -> int:
        return 6


REAL = Sizes(unet=SDXL_UNET, vae=SDXL_VAE, te1=SDXL_TE1, te2=SDXL_TE2, flux=FLUX, flux_latent_channels=16,
             flux_text_len=512)
SMOKE = Sizes(unet=TINY_UNET, vae=TINY_VAE, te1=TINY_TE, te2=TINY_TE, flux=TINY_FLUX, flux_latent_channels=4,
              flux_text_len=8)


@contextlib.contextmanager
def building(device: str, dtype: torch.dtype):
    """Create parameters directly on `device` in `dtype` (a 12B model initialised on a CPU
    would take minutes and twice the memory)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


def sdxl_unet(sizes: Sizes, device: str, dtype: torch.dtype):
    from diffusers import UNet2DConditionModel

    with building(device, dtype):
        return UNet2DConditionModel(**sizes.unet)


def controlnet_from(unet, device: str, dtype: torch.dtype):
    """A ControlNet initialised from the UNet's encoder, as the control adapter is."""
    from diffusers import ControlNetModel

    with building(device, dtype):
        return ControlNetModel.from_unet(unet)


def sdxl_vae(sizes: Sizes, device: str, dtype: torch.dtype):
    from diffusers import AutoencoderKL

    with building(device, dtype):
        return AutoencoderKL(**sizes.vae)


def ddpm_alphas(device: str) -> torch.Tensor:
    """SDXL's training noise schedule (scaled_linear 0.00085..0.012, 1000 steps), epsilon."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    return sched.alphas_cumprod.float().to(device)


def sdxl_text_encoders(sizes: Sizes, tmp: Path, device: str, dtype: torch.dtype):
    """(tokenizer, text_encoder, tokenizer_2, text_encoder_2). The tokenizer is the project's
    offline byte-level CLIP tokenizer; only the encoders' sizes matter for speed."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from pd_assets.generation.tiny_models import _clip_tokenizer

    tok, eos = _clip_tokenizer(tmp / "tok", 49408)
    tok2, _ = _clip_tokenizer(tmp / "tok2", 49408)

    def cfg(values: dict) -> CLIPTextConfig:
        return CLIPTextConfig(vocab_size=49408, max_position_embeddings=sizes.clip_len, bos_token_id=0,
                              eos_token_id=eos, pad_token_id=eos, layer_norm_eps=1e-5, **values)

    with building(device, dtype):
        return tok, CLIPTextModel(cfg(sizes.te1)), tok2, CLIPTextModelWithProjection(cfg(sizes.te2))


def sdxl_added_cond(sizes: Sizes, batch: int, image_px: int, device: str, dtype: torch.dtype) -> dict:
    """SDXL's micro-conditioning: pooled text embedding and (original size, crop, target size)."""
    time_ids = torch.tensor([image_px, image_px, 0, 0, image_px, image_px], device=device, dtype=dtype)
    return {"text_embeds": torch.randn(batch, sizes.pooled_dim, device=device, dtype=dtype),
            "time_ids": time_ids.repeat(batch, 1)}


def flux_control_transformer(sizes: Sizes, device: str, dtype: torch.dtype):
    """FLUX transformer with x_embedder widened to take [noisy latents, control latents]:
    the new input columns start at zero, so the base model is unchanged at init
    (diffusers examples/flux-control/train_control_lora_flux.py; FluxControlPipeline
    loads control LoRAs onto such a widened x_embedder)."""
    from diffusers import FluxTransformer2DModel

    with building(device, dtype):
        model = FluxTransformer2DModel(**sizes.flux)
        old = model.x_embedder
        wide = torch.nn.Linear(old.in_features * 2, old.out_features, bias=old.bias is not None)
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:, :old.in_features].copy_(old.weight)
        if old.bias is not None:
            wide.bias.copy_(old.bias)
    model.x_embedder = wide
    model.register_to_config(in_channels=old.in_features * 2, out_channels=old.in_features)
    return model


def flux_inputs(sizes: Sizes, batch: int, image_px: int, device: str, dtype: torch.dtype) -> dict:
    """Packed latents x0 and control (B, tokens, 4*C), text, pooled, ids and guidance at `image_px`."""
    lat = image_px // 8  # VAE 8x, then 2x2 packing into tokens
    tokens, width = (lat // 2) ** 2, sizes.flux_latent_channels * 4
    img_ids = torch.zeros(lat // 2, lat // 2, 3)
    img_ids[..., 1] += torch.arange(lat // 2)[:, None]
    img_ids[..., 2] += torch.arange(lat // 2)[None, :]
    return {
        "x0": torch.randn(batch, tokens, width, device=device, dtype=dtype),
        "control": torch.randn(batch, tokens, width, device=device, dtype=dtype),
        "encoder_hidden_states": torch.randn(batch, sizes.flux_text_len, sizes.flux["joint_attention_dim"],
                                             device=device, dtype=dtype),
        "pooled_projections": torch.randn(batch, sizes.flux["pooled_projection_dim"], device=device, dtype=dtype),
        "img_ids": img_ids.reshape(-1, 3).to(device=device, dtype=dtype),
        "txt_ids": torch.zeros(sizes.flux_text_len, 3, device=device, dtype=dtype),
        "guidance": torch.full((batch,), 3.5, device=device, dtype=torch.float32),
    }


def flux_forward(model, noisy: torch.Tensor, sigma: torch.Tensor, inp: dict) -> torch.Tensor:
    """One FLUX-Control forward: control latents concatenated on the channel axis; the
    transformer scales the timestep (a sigma in [0, 1]) by 1000 itself."""
    n = noisy.shape[0]
    return model(hidden_states=torch.cat([noisy, inp["control"][:n]], dim=2), timestep=sigma,
                 guidance=inp["guidance"][:n], pooled_projections=inp["pooled_projections"][:n],
                 encoder_hidden_states=inp["encoder_hidden_states"][:n], txt_ids=inp["txt_ids"],
                 img_ids=inp["img_ids"], return_dict=False)[0]


def lora_config(rank: int, targets: list[str]):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=targets)


# FLUX attention projections (double blocks: image and text streams; single blocks: to_q/k/v)
FLUX_CONTROL_LORA_TARGETS = ["x_embedder", "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
                             "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out"]
DPO_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # DpoConfig.targets


def trainable_fp32(model) -> list[torch.nn.Parameter]:
    """The trainable parameters, upcast to fp32 (bf16 frozen base, fp32 adapter + AdamW state)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    return params


def count(params) -> int:
    return int(sum(p.numel() for p in params))

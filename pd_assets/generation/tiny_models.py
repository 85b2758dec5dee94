"""Build tiny diffusion models with random weights, saved like real ones.

Tests and the `ci` profile load them through the same `from_pretrained` path that real
weights use, so the loading, LoRA stacking, seeding and provenance code is exercised
without a model hub. Random weights from a fixed seed: a rebuild gives the same files.

Layout (one folder per family):
    DIR/pipeline/                 the base pipeline (model_index.json, unet|transformer, vae, ...)
    DIR/controlnet-pncc/          a ControlNet for the PNCC control map
    DIR/controlnet-skeleton/      a second ControlNet (for multi-ControlNet tests)
    DIR/_COMPLETE.json            written last; a folder without it is rebuilt

    python -m pd_assets.generation.tiny_models --out DIR [--family sd15|sdxl|flux]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import sys
import time
from pathlib import Path

from pd_assets.storage import COMPLETE_MARKER, atomic_directory, atomic_write_json

FAMILIES = ("sd15", "sdxl", "flux")
TINY_CONTROLS = ("pncc", "skeleton")
DEFAULT_SEED = 0
_BUILD_VERSION = 1  # bump when a config below changes, so old folders are rebuilt


def default_tiny_model_dir(family: str = "sd15") -> Path:
    from resources.paths import models_dir

    return models_dir() / f"tiny-{family}-controlnet"


def is_complete(out: Path, family: str) -> bool:
    marker = Path(out) / COMPLETE_MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info.get("family") == family and info.get("version") == _BUILD_VERSION


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte as a printable unicode character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _clip_tokenizer_files(folder: Path, vocab_size: int) -> int:
    """A byte-level CLIP BPE vocabulary with no merges (one token per character)."""
    chars = list(_bytes_to_unicode().values())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) <= vocab_size
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return vocab["<|endoftext|>"]


def _clip_tokenizer(tmp: Path, vocab_size: int):
    from transformers import CLIPTokenizer

    eos = _clip_tokenizer_files(tmp, vocab_size)
    tok = CLIPTokenizer(vocab=str(tmp / "vocab.json"), merges=str(tmp / "merges.txt"), model_max_length=77)
    return tok, eos


def _clip_text_model(eos_id: int, *, projection: bool = False, hidden: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        bos_token_id=0, eos_token_id=eos_id, pad_token_id=eos_id, hidden_size=hidden,
        intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=1000,
        max_position_embeddings=77, projection_dim=hidden, layer_norm_eps=1e-5,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def _vae(latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    # Four blocks: the same 8x down-sampling as real SD/FLUX VAEs, with tiny widths.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8,
        sample_size=64, **extra,
    )


def _unet_kwargs(cross_attention_dim: int) -> dict:
    return dict(
        block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8,
        in_channels=4,
    )


def _sd_scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading",
    )


def _build_sd(staging: Path, tmp: Path, xl: bool) -> None:
    import torch
    from diffusers import (
        ControlNetModel,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(DEFAULT_SEED)
    tok, eos = _clip_tokenizer(tmp / "tok", 1000)
    te = _clip_text_model(eos)
    vae = _vae()
    if xl:
        tok2, _ = _clip_tokenizer(tmp / "tok2", 1000)
        te2 = _clip_text_model(eos, projection=True)
        extra = dict(
            addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=8 * 6 + 32, transformer_layers_per_block=(1, 1),
        )
        unet = UNet2DConditionModel(
            **_unet_kwargs(64), sample_size=8, out_channels=4,
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), use_linear_projection=True, **extra,
        )
        unet.down_blocks  # noqa: B018 (built)
        pipe = StableDiffusionXLPipeline(
            vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok2,
            unet=unet, scheduler=_sd_scheduler(),
        )
    else:
        extra = {}
        unet = UNet2DConditionModel(
            **_unet_kwargs(32), sample_size=8, out_channels=4,
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        )
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=_sd_scheduler(),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    pipe.save_pretrained(staging / "pipeline", safe_serialization=True)
    for i, control in enumerate(TINY_CONTROLS):
        torch.manual_seed(DEFAULT_SEED + 1 + i)
        cn = ControlNetModel(
            **_unet_kwargs(64 if xl else 32),
            conditioning_embedding_out_channels=(16, 16, 32, 32),
            **({"use_linear_projection": True, **extra} if xl else {}),
        )
        _randomise_zero_convs(cn)
        cn.save_pretrained(staging / f"controlnet-{control}", safe_serialization=True)


def _randomise_zero_convs(model) -> None:
    """ControlNets start with zero output convs (no effect); give them small random weights
    so the control map visibly changes the image, as a trained one does."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "controlnet_" in name and "cond_embedding" not in name and p.abs().sum() == 0:
                p.normal_(0.0, 0.02)


def _t5_tokenizer():
    from transformers import T5Tokenizer

    chars = [chr(c) for c in range(32, 127)]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("▁" + c, -2.5) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def _build_flux(staging: Path, tmp: Path) -> None:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxControlNetModel, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(DEFAULT_SEED)
    tok, eos = _clip_tokenizer(tmp / "tok", 1000)
    te = _clip_text_model(eos)
    tok2 = _t5_tokenizer()
    te2 = T5EncoderModel(T5Config(
        d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=2, vocab_size=len(tok2),
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    ))
    dims = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                axes_dims_rope=[4, 4, 8])
    transformer = FluxTransformer2DModel(**dims, guidance_embeds=True)
    vae = _vae(latent_channels=4, shift_factor=0.0609, scaling_factor=1.5035,
               use_quant_conv=False, use_post_quant_conv=False)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=te, tokenizer=tok,
                        text_encoder_2=te2, tokenizer_2=tok2, transformer=transformer)
    pipe.save_pretrained(staging / "pipeline", safe_serialization=True)
    for i, control in enumerate(TINY_CONTROLS):
        torch.manual_seed(DEFAULT_SEED + 1 + i)
        cn = FluxControlNetModel(**dims, guidance_embeds=True)
        _randomise_zero_convs(cn)
        cn.save_pretrained(staging / f"controlnet-{control}", safe_serialization=True)


def build_tiny_model(out: str | Path | None = None, family: str = "sd15", *, force: bool = False) -> Path:
    """Build (or reuse, when complete) the tiny `family` model under `out`; return `out`."""
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {', '.join(FAMILIES)}")
    out = Path(out) if out is not None else default_tiny_model_dir(family)
    if not force and is_complete(out, family):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers: one builds, the others wait
        if not force and is_complete(out, family):
            return out
        _build_into(out, family)
    return out


def _build_into(out: Path, family: str) -> None:
    started = time.perf_counter()
    with atomic_directory(out) as staging:
        tmp = staging / "_tmp"
        if family == "flux":
            _build_flux(staging, tmp)
        else:
            _build_sd(staging, tmp, xl=(family == "sdxl"))
        shutil.rmtree(tmp, ignore_errors=True)
        atomic_write_json(staging / COMPLETE_MARKER, {
            "family": family, "version": _BUILD_VERSION, "seed": DEFAULT_SEED,
            "controls": list(TINY_CONTROLS), "seconds": round(time.perf_counter() - started, 2),
        })


def build_all(root: str | Path | None = None, families: tuple[str, ...] = FAMILIES) -> list[Path]:
    """Every tiny family under `root` (default models_dir()): what `make setup` builds."""
    return [
        build_tiny_model(Path(root) / f"tiny-{f}-controlnet" if root is not None else None, f)
        for f in families
    ]


def build_tiny_lora(base: str | Path, out: str | Path, *, rank: int = 4, seed: int = 1, std: float = 0.5) -> Path:
    """A random LoRA on the attention projections of the tiny model's denoiser, saved in the
    diffusers format (`pytorch_lora_weights.safetensors`): loads with `load_lora_weights`."""
    import torch
    from diffusers import DiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    base = Path(base)
    pipe = DiffusionPipeline.from_pretrained(base / "pipeline" if (base / "pipeline").is_dir() else base)
    denoiser_name = "transformer" if hasattr(pipe, "transformer") and pipe.transformer is not None else "unet"
    denoiser = getattr(pipe, denoiser_name)
    denoiser.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                    target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in denoiser.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    layers = get_peft_model_state_dict(denoiser)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(out, **{f"{denoiser_name}_lora_layers": layers})
    return out


def build_tiny_flux_control_lora(base: str | Path, out: str | Path, *, rank: int = 4, seed: int = 3) -> Path:
    """A random FLUX control LoRA (Flux Depth/Canny style): a LoRA on `x_embedder` with twice
    the input channels, so `load_lora_weights` widens the transformer to take the packed
    control latents next to the noisy ones (the method's PNCC control LoRA has this shape)."""
    import torch
    from safetensors.torch import save_file

    cfg = json.loads((Path(base) / "pipeline" / "transformer" / "config.json").read_text())
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    gen = torch.Generator().manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({
        "transformer.x_embedder.lora_A.weight": torch.randn(rank, 2 * cfg["in_channels"], generator=gen) * 0.1,
        "transformer.x_embedder.lora_B.weight": torch.randn(inner, rank, generator=gen) * 0.1,
    }, out / "pytorch_lora_weights.safetensors")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="output folder (default: models_dir()/tiny-<family>-controlnet)")
    ap.add_argument("--family", default="sd15", choices=FAMILIES)
    ap.add_argument("--force", action="store_true", help="rebuild even when the folder is complete")
    args = ap.parse_args(argv)
    out = build_tiny_model(args.out, args.family, force=args.force)
    print(f"tiny {args.family} model ready at {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

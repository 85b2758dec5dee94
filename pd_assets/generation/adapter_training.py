"""Control-adapter training (PoseDreamer stage 3): from scratch, or a ControlNet on a base.

`base = scratch` (no pretrained weights, e.g. these CPU machines) trains, with the one
loop of `pd_assets.training.loop`:
  1. the autoencoder: fit in closed form (patch PCA, the default) or trained on the images
     (L1 + a tiny KL term); then its latent scale is fixed;
  2. the UNet denoiser, reading the control's latents as extra input channels (concat,
     the default) or with one ControlNet per control map, jointly, on cached latents,
     with the v target, min-SNR weighting, per-channel loss weights for the linear
     autoencoder's latents, and prompt dropout (so CFG stays possible).
A pretrained SD-family base (`base = <folder or hub id>`) skips 1 and trains only the
ControlNets (`ControlNetModel.from_unet`) with the denoiser, autoencoder and text
encoder frozen. All end as diffusers folders: `pipeline/` (+ `controlnet-{control}/`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pd_assets.generation.adapter_pairs import PairSet
from pd_assets.generation.control_input import control_residuals, denoise
from pd_assets.generation.scratch_model import (
    ScratchModelConfig, build_controlnet, build_parts, check_control_input, save_pipeline,
)
from pd_assets.training.loop import LoopConfig, LoopResult, run_loop
from pd_assets.training.targets import add_noise, min_snr_weight, training_target


@dataclass(frozen=True)
class AdapterTrainingConfig:
    controls: tuple[str, ...] = ("pncc",)
    base: str = "scratch"  # scratch | a diffusers SD-1.5/SDXL folder or hub id
    model: ScratchModelConfig = field(default_factory=ScratchModelConfig)
    ae_steps: int = 800
    ae_batch: int = 16
    ae_crop: int | None = 64  # train the autoencoder on random crops of this size (None: whole images)
    ae_lr: float = 1e-3
    ae_kl_weight: float = 1e-6
    # decode the posterior mean while training the autoencoder: a sampled latent starts with
    # std ~1 (logvar 0), so the decoder learns from noise until the tiny KL term shrinks it
    ae_sample_posterior: bool = False
    ae_max_seconds: float | None = None
    steps: int = 4000
    batch: int = 16
    grad_accum: int = 1
    lr: float = 3e-4  # from scratch; the resource picks 1e-5 on a pretrained base
    warmup_steps: int = 100
    lr_schedule: str = "constant"  # the loop's: constant | cosine | linear over `steps`
    min_lr_ratio: float = 0.0
    # ~1,000-step horizon: right for the 10-25k steps f=8 latents allow (0.999 lagged a 2-3k-step run)
    ema_decay: float | None = 0.999
    # min(snr + 1, gamma) / (snr + 1) on the v-loss; gamma = 1 is the clean-image (x0) loss, which
    # weights the high-noise steps that decide layout and colour as much as the low-noise ones
    min_snr_gamma: float | None = 1.0
    # patch-PCA latents: weight each latent channel's loss by (its pixel gain^2)^power, mean 1.
    # 0: every channel alike (whitened latents: the 3 per-block colour means, 91% of the pixel
    # variance, are 3/32 of the loss, and the samples came out as 8x8 colour blocks); 1: the
    # decoded pixels' MSE (the fine components, 7% of the variance, next to unweighted: blurred
    # bodies, 1/64 detected at 15 min against 24/64 with 0.5); 0.5 between. A learned (kl) or pretrained autoencoder is not linear: its channels stay alike.
    channel_weight_power: float = 0.5
    # the loss weight of latent cells on the body (pixels the controls draw) against 1 on the
    # background, each sample's map scaled to mean 1: the body is ~11% of a 128-px image, and the
    # bodies (not the backgrounds) were what the detector missed (1: no spatial weighting)
    foreground_loss_weight: float = 1.0
    # the same for the cells over the label's head (a disk from its face keypoints; pose_pool
    # pairs only): which way a person faces is read from the head, and on run 9's test images
    # 17 of the 20 detected people seen from behind were read as facing the camera
    head_loss_weight: float = 1.0
    prompt_dropout: float = 0.1
    # concat form: the share of samples trained with the control's latents zeroed, the
    # "no control" branch InstructPix2Pix's image guidance subtracts (0: no image guidance)
    control_dropout: float = 0.1
    max_seconds: float | None = None
    checkpoint_every: int = 200
    log_every: int = 20
    seed: int = 0
    mixed_precision: str = "no"
    # what the generator should run with (recorded with the adapter)
    sample_steps: int = 8
    guidance: float = 1.5
    # concat form: InstructPix2Pix's image guidance (1: none); the generator runs it as the
    # control entry's scale, and the pipeline applies it only with guidance > 1
    image_guidance: float = 3.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["controls"] = list(self.controls)
        return d


@dataclass
class AdapterTrainingResult:
    pipeline_dir: Path
    controlnet_dirs: dict[str, Path]
    stages: dict[str, LoopResult]
    latent_scale: float | None
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def _images_to_tensor(images: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) rows -> float (B, 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(images[idx.numpy()]).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def _controls_to_tensor(maps: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) control maps -> float (B, 3, H, W) in [0, 1], as the pipeline feeds them."""
    return torch.from_numpy(maps[idx.numpy()]).permute(0, 3, 1, 2).float() / 255.0


def fit_autoencoder(vae, pairs: PairSet, cfg: AdapterTrainingConfig, work: Path, device: str,
                    log: Callable[[str], None] | None) -> tuple[LoopResult, float]:
    """Stage 1: a patch-PCA autoencoder is fit in closed form, a KL one trained; returns the
    stage result and the latent scale (1 / std of the training latents)."""
    if cfg.model.autoencoder != "patch-pca":
        return train_autoencoder(vae, pairs, cfg, work, device, log)
    import time

    from pd_assets.generation.patch_autoencoder import fit_patch_pca

    t = time.perf_counter()
    k = vae.config.latent_channels
    components, mean, ratios, variances = fit_patch_pca(pairs.images, k, vae.config.patch_size)
    vae.set_basis(components, mean, variances[:k].sqrt())
    kept = float(ratios[: vae.config.latent_channels].sum())
    with torch.no_grad():
        x = _images_to_tensor(pairs.images, torch.arange(min(len(pairs), 256))).to(device)
        l1 = float((vae(x).sample - x).abs().mean())
    if log:
        log(f"autoencoder: patch PCA, {vae.config.latent_channels} components keep {kept:.2%} of the variance, "
            f"reconstruction L1 {l1:.4f}")
    # the stage's "loss" is its reconstruction L1, as for a trained autoencoder
    result = LoopResult(step=0, seconds=time.perf_counter() - t, losses=[l1], logs=[{"explained_variance": kept}])
    return result, float(1.0 / cached_latents(vae, pairs, work, device).std().clamp_min(1e-6))


def train_autoencoder(vae, pairs: PairSet, cfg: AdapterTrainingConfig, work: Path, device: str,
                      log: Callable[[str], None] | None) -> tuple[LoopResult, float]:
    """Stage 1 for a KL autoencoder: reconstruct the images; returns the loop result and the
    latent scale (1 / std)."""
    n = len(pairs)

    h, w = pairs.images.shape[1:3]
    crop = min(cfg.ae_crop or h, h, w)

    def loss_fn(step: int, micro: int, gen: torch.Generator):
        idx = torch.randint(0, n, (cfg.ae_batch,), generator=gen)
        x = _images_to_tensor(pairs.images, idx)
        # the autoencoder is convolutional: random crops teach it the same local structure
        # for a fraction of the cost of whole images
        y0, x0 = (int(v) for v in torch.randint(0, h - crop + 1, (2,), generator=gen))
        x = x[:, :, y0:y0 + crop, x0:x0 + crop].to(device)
        post = vae.encode(x).latent_dist
        z = post.mean
        if cfg.ae_sample_posterior:
            z = z + post.std * torch.randn(post.mean.shape, generator=gen).to(device)
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        kl = post.kl().mean() / x[0].numel()
        return l1 + cfg.ae_kl_weight * kl, {"l1": float(l1)}

    loop = LoopConfig(steps=cfg.ae_steps, lr=cfg.ae_lr, warmup_steps=min(50, cfg.ae_steps), seed=cfg.seed,
                      checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every,
                      max_seconds=cfg.ae_max_seconds, mixed_precision=cfg.mixed_precision)
    result, _ = run_loop({"vae": vae}, loss_fn, loop, work / "autoencoder", device=device,
                         log=(lambda m: log(f"autoencoder: {m}")) if log else None)
    return result, float(1.0 / cached_latents(vae, pairs, work, device).std().clamp_min(1e-6))


def cached_latents(vae, pairs: PairSet, work: Path, device: str, control: str | None = None) -> torch.Tensor:
    """Unscaled latents of every training image (or of every `control` map), encoded once per
    autoencoder (keyed by its weights) and kept in `work` (safetensors), so a resumed run does
    not encode the pairs again."""
    from safetensors.torch import load_file, save_file

    from pd_assets.storage import atomic_write_bytes

    key = f"{weights_hash(vae)}-{len(pairs)}-{hash_ids(pairs.ids)}" + (f"-{control}" if control else "")
    path = work / f"latents-{key}.safetensors"
    if path.is_file():
        return load_file(str(path))["latents"]
    latents = encode_latents(vae, pairs.images if control is None else pairs.controls[control], device)
    tmp = work / f".latents-{key}.tmp"
    save_file({"latents": latents.contiguous()}, str(tmp))
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink()
    return latents


def weights_hash(module: torch.nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def hash_ids(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]


@torch.no_grad()
def encode_latents(vae, images: np.ndarray, device: str, batch: int = 64) -> torch.Tensor:
    """Deterministic latents (posterior means) of every image, unscaled."""
    out = []
    for start in range(0, len(images), batch):
        idx = torch.arange(start, min(start + batch, len(images)))
        out.append(vae.encode(_images_to_tensor(images, idx).to(device)).latent_dist.mean.cpu())
    return torch.cat(out)


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str], device: str, batch: int = 256) -> torch.Tensor:
    out = []
    for start in range(0, len(prompts), batch):
        ids = tokenizer(prompts[start:start + batch], padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids.to(device)
        out.append(text_encoder(ids)[0].cpu())
    return torch.cat(out)


def channel_loss_weights(pixel_gains: torch.Tensor, power: float) -> torch.Tensor:
    """Per-latent-channel loss weights (gain_k^2)^power, scaled to mean 1 so the loss keeps its
    size (power 0: all 1; power 1: proportional to each channel's share of the pixel MSE)."""
    if not math.isfinite(power) or power < 0:
        raise ValueError(f"channel_weight_power={power} must be a finite number >= 0 (0: every channel alike)")
    g2 = pixel_gains.double().pow(2)
    if not torch.isfinite(g2).all() or (g2 <= 0).any():
        raise ValueError("the autoencoder's pixel gains must be finite and positive: refit the autoencoder")
    w = g2.pow(power)
    return (w / w.mean()).float()


# COCO-17 nose, eyes and ears: where the detector reads which way a person faces
FACE_KEYPOINTS = (0, 1, 2, 3, 4)


def head_disks(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, H, W) bool: a disk over each label's head, centred on the mean of its face keypoints
    (visible or not: a head seen from behind is where its face keypoints project), radius
    0.4 x the distance to the shoulders' midpoint (about half a head), at least 1.2 x the face
    keypoints' spread and 2 px. A head outside the image gives an empty disk."""
    face = keypoints[:, FACE_KEYPOINTS, :2].astype(np.float64)
    centre = face.mean(axis=1)
    shoulders = keypoints[:, (5, 6), :2].astype(np.float64).mean(axis=1)
    spread = np.linalg.norm(face - centre[:, None], axis=-1).max(axis=1)
    radius = np.maximum.reduce([0.4 * np.linalg.norm(shoulders - centre, axis=-1), 1.2 * spread,
                                np.full(len(keypoints), 2.0)])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5  # pixel centres
    d2 = (xs[None] - centre[:, 0, None, None]) ** 2 + (ys[None] - centre[:, 1, None, None]) ** 2
    return d2 <= radius[:, None, None] ** 2


def spatial_loss_weights(controls: dict[str, np.ndarray], keypoints: np.ndarray | None, latent_hw: tuple[int, int],
                         foreground_weight: float = 1.0, head_weight: float = 1.0,
                         chunk: int = 512) -> torch.Tensor | None:
    """(N, 1, h, w) loss weights of the latent cells: 1 + (foreground_weight - 1) x the share of
    a cell's pixels that any control draws (non-zero) + (head_weight - 1) x the share inside
    the label's head disk (`head_disks`), each sample's map scaled to mean 1, so the loss keeps
    its size and only moves weight between regions. None when both weights are 1."""
    for name, w in (("foreground_loss_weight", foreground_weight), ("head_loss_weight", head_weight)):
        if not math.isfinite(w) or w < 1:
            raise ValueError(f"{name}={w} must be a finite number >= 1 (1: no weighting)")
    if foreground_weight == 1 and head_weight == 1:
        return None
    maps = list(controls.values())
    if not maps:
        raise ValueError("spatial loss weights need at least one control map")
    if head_weight != 1 and keypoints is None:
        raise ValueError("head_loss_weight needs the pairs' label keypoints: train on pose_pool pairs "
                         "(pair_source partitions or render), or set head_loss_weight to 1")
    n, h, w = maps[0].shape[:3]
    lh, lw = latent_hw
    if h % lh or w % lw:
        raise ValueError(f"control maps of {w}x{h} do not divide into latent cells of {lw}x{lh}")

    def shares(mask: np.ndarray) -> torch.Tensor:
        return F.avg_pool2d(torch.from_numpy(mask).float()[:, None], kernel_size=(h // lh, w // lw))

    out = []
    for i in range(0, n, chunk):
        cells = torch.ones(min(chunk, n - i), 1, lh, lw)
        if foreground_weight != 1:
            body = np.zeros(cells.shape[:1] + (h, w), dtype=bool)
            for m in maps:
                body |= m[i:i + chunk].max(axis=-1) > 0
            cells += (foreground_weight - 1.0) * shares(body)
        if head_weight != 1:
            cells += (head_weight - 1.0) * shares(head_disks(keypoints[i:i + chunk], h, w))
        out.append(cells / cells.mean(dim=(1, 2, 3), keepdim=True))
    return torch.cat(out)


def train_denoiser(unet, controlnets: dict[str, torch.nn.Module], scheduler, latents: torch.Tensor,
                   text: torch.Tensor, empty_text: torch.Tensor, pairs: PairSet, cfg: AdapterTrainingConfig,
                   work: Path, device: str, log: Callable[[str], None] | None,
                   train_unet: bool = True, control_latents: torch.Tensor | None = None,
                   channel_weights: torch.Tensor | None = None,
                   spatial_weights: torch.Tensor | None = None) -> tuple[LoopResult, Any]:
    """Stage 2: the denoiser (if `train_unet`) and the ControlNets on cached, scaled latents;
    with `control_latents` (concat input) there are no ControlNets: the control's latents are
    concatenated to the noisy latents, as `StableDiffusionInstructPix2PixPipeline` feeds them.
    `channel_weights` (C,) weight each latent channel's squared error, `spatial_weights`
    (N, 1, h, w) each sample's latent cells (None: all alike)."""
    n = latents.shape[0]
    cw = None if channel_weights is None else channel_weights.to(device)[None, :, None, None]
    pred_type = scheduler.config.prediction_type
    alphas = scheduler.alphas_cumprod.float()
    num_t = scheduler.config.num_train_timesteps

    def loss_fn(step: int, micro: int, gen: torch.Generator):
        idx = torch.randint(0, n, (cfg.batch,), generator=gen)
        x0 = latents[idx].to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, num_t, (cfg.batch,), generator=gen)
        drop = torch.rand(cfg.batch, generator=gen) < cfg.prompt_dropout
        enc = torch.where(drop[:, None, None], empty_text.expand(cfg.batch, -1, -1), text[idx]).to(device)
        t_dev = t.to(device)
        noisy = add_noise(x0, noise, t_dev, pred_type, alphas)
        controls = {name: _controls_to_tensor(pairs.controls[name], idx).to(device) for name in controlnets}
        residuals = control_residuals(controlnets, noisy, t_dev, enc, controls)
        concat = control_latents[idx].to(device) if control_latents is not None else None
        if concat is not None and cfg.control_dropout:
            keep = torch.rand(cfg.batch, generator=gen) >= cfg.control_dropout
            concat = concat * keep.to(device=device, dtype=concat.dtype)[:, None, None, None]
        pred = denoise(unet, noisy, t_dev, enc, residuals=residuals, control_latents=concat)
        target = training_target(x0, noise, t_dev, pred_type, alphas)
        err = F.mse_loss(pred.float(), target.float(), reduction="none")
        if cw is not None:
            err = err * cw
        if spatial_weights is not None:
            err = err * spatial_weights[idx].to(device)
        per_sample = err.mean(dim=(1, 2, 3))
        if cfg.min_snr_gamma:
            per_sample = per_sample * min_snr_weight(t_dev, pred_type, cfg.min_snr_gamma, alphas)
        return per_sample.mean(), {}

    modules = {f"controlnet_{k}": v for k, v in controlnets.items()}
    if train_unet:
        modules = {"unet": unet, **modules}
    loop = LoopConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps, lr_schedule=cfg.lr_schedule,
                      min_lr_ratio=cfg.min_lr_ratio, seed=cfg.seed + 1,
                      grad_accum=cfg.grad_accum, ema_decay=cfg.ema_decay, checkpoint_every=cfg.checkpoint_every,
                      log_every=cfg.log_every, max_seconds=cfg.max_seconds, mixed_precision=cfg.mixed_precision)
    result, ema = run_loop(modules, loss_fn, loop, work / "denoiser", device=device,
                           log=(lambda m: log(f"denoiser: {m}")) if log else None)
    if ema is not None:
        from pd_assets.training.loop import trainable_state

        ema.copy_to(trainable_state(modules))
    return result, ema


def train_adapter(pairs: PairSet, cfg: AdapterTrainingConfig, work: Path, out: Path, *, device: str = "cpu",
                  log: Callable[[str], None] | None = None) -> AdapterTrainingResult:
    """Train (resuming from `work` after a kill) and write the diffusers folders into `out`."""
    torch.manual_seed(cfg.seed)
    work.mkdir(parents=True, exist_ok=True)
    check_control_input(cfg.model.control_input, cfg.base, cfg.controls)
    if cfg.head_loss_weight != 1 and pairs.keypoints is None:  # refuse before any training, not after
        raise ValueError(f"head_loss_weight={cfg.head_loss_weight:g} needs the pairs' label keypoints, and "
                         f"{', '.join(pairs.sources) or 'these pairs'} carry none: train on pose_pool pairs "
                         "(pair_source partitions or render), or set head_loss_weight to 1")
    concat = cfg.model.control_input == "concat"
    stages: dict[str, LoopResult] = {}
    if cfg.base == "scratch":
        parts = build_parts(cfg.model, work / "_tokenizer")
        controlnets = {} if concat else {
            c: parts["controlnet"] if i == 0 else build_controlnet(cfg.model) for i, c in enumerate(cfg.controls)}
        vae = parts["vae"].to(device)
        stages["autoencoder"], scale = fit_autoencoder(vae, pairs, cfg, work, device, log)
        vae.register_to_config(scaling_factor=scale)
        train_unet = True
    else:
        parts = _pretrained_parts(cfg.base, device)
        controlnets = {c: build_controlnet(cfg.model, parts["unet"]) for c in cfg.controls}
        vae, scale, train_unet = parts["vae"], None, False
        for m in (parts["unet"], vae, parts["text_encoder"]):
            m.requires_grad_(False)
    vae.requires_grad_(False)
    latents = cached_latents(vae, pairs, work, device) * vae.config.scaling_factor
    # the pipeline concatenates the control's posterior mode, unscaled (InstructPix2Pix convention)
    control_latents = cached_latents(vae, pairs, work, device, control=cfg.controls[0]) if concat else None
    # only a linear (patch-PCA) autoencoder has per-channel pixel gains to weight by
    weights = (channel_loss_weights(vae.pixel_gains(), cfg.channel_weight_power)
               if hasattr(vae, "pixel_gains") and cfg.channel_weight_power else None)
    if weights is not None and log:
        log(f"denoiser: latent channel loss weights (power {cfg.channel_weight_power:g}) from "
            f"{float(weights.max()):.2f} to {float(weights.min()):.3f}")
    spatial = spatial_loss_weights(pairs.controls, pairs.keypoints, tuple(latents.shape[-2:]),
                                   cfg.foreground_loss_weight, cfg.head_loss_weight)
    if spatial is not None and log:
        log(f"denoiser: body cells weighted {cfg.foreground_loss_weight:g}x, head cells {cfg.head_loss_weight:g}x "
            "the background (per-sample mean 1)")
    text = encode_prompts(parts["tokenizer"], parts["text_encoder"].to(device), pairs.prompts, device)
    empty = encode_prompts(parts["tokenizer"], parts["text_encoder"], [""], device)
    unet = parts["unet"].to(device)
    for cn in controlnets.values():
        cn.to(device)
    stages["denoiser"], _ = train_denoiser(unet, controlnets, parts["scheduler"], latents, text, empty, pairs, cfg,
                                           work, device, log, train_unet=train_unet, control_latents=control_latents,
                                           channel_weights=weights, spatial_weights=spatial)
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(cfg.controls))
    pipe_dir, cn_dir = save_pipeline({**parts, "vae": vae, "unet": unet, "controlnet": controlnets.get(first)},
                                     out, first)
    cn_dirs = {first: cn_dir}
    for name, cn in controlnets.items():
        if name != first:
            cn.save_pretrained(out / f"controlnet-{name}", safe_serialization=True)
            cn_dirs[name] = out / f"controlnet-{name}"
    return AdapterTrainingResult(
        pipeline_dir=pipe_dir, controlnet_dirs=cn_dirs, stages=stages, latent_scale=scale,
        seconds=sum(s.seconds for s in stages.values()),
        info={"num_pairs": len(pairs), "image_size": list(pairs.size), "config": cfg.as_dict(),
              "channel_loss_weights": None if weights is None else [round(float(w), 6) for w in weights],
              "family": "sd15-concat" if concat else "sd15"},
    )


def _pretrained_parts(base: str, device: str) -> dict:
    from diffusers import StableDiffusionPipeline

    import pd_assets.generation.patch_autoencoder  # noqa: F401  (a from-scratch base names it)

    try:
        pipe = StableDiffusionPipeline.from_pretrained(base, safety_checker=None, requires_safety_checker=False)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"control_adapter.base={base!r} could not be loaded as an SD-family diffusers pipeline ({exc}): "
            "point it at a local pipeline folder (model_index.json), or use base=scratch"
        ) from exc
    return {"vae": pipe.vae.to(device), "unet": pipe.unet, "text_encoder": pipe.text_encoder,
            "tokenizer": pipe.tokenizer, "scheduler": pipe.scheduler}


def loss_curve_points(result: LoopResult, every: int = 10) -> list[tuple[int, float]]:
    """(step, mean loss over the window) points for the loss-curve image."""
    losses = result.losses
    return [(i + every, float(np.mean(losses[i:i + every]))) for i in range(0, len(losses) - every + 1, every)
            if math.isfinite(float(np.mean(losses[i:i + every])))]

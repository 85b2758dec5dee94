"""The measured sections of benchmarks/bench_gpu.py; each returns a dict of figures.

Losses are the project's: `pd_assets.training.targets` (add_noise, training_target) for the
control adapter, `pd_assets.alignment.dpo_loss` (per_sample_error, dpo_loss) for DPO, with
the DPO LoRA added by `pd_assets.alignment.dpo_training.add_lora`. The optimizer step
mirrors `pd_assets.training.loop.run_loop` (AdamW, accumulation, clipping at 1.0, bf16
autocast on CUDA) without its checkpoint writes, which would dominate a short timing.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import gpu_models as gm
from pd_assets.alignment.dpo_loss import dpo_loss, per_sample_error
from pd_assets.alignment.dpo_training import DpoConfig, add_lora, save_lora
from pd_assets.training.targets import add_noise, training_target


@dataclass
class Ctx:
    args: object  # the parsed command line
    sizes: gm.Sizes
    device: str
    dtype: torch.dtype  # frozen weights and inputs; trainable weights stay fp32

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda" if self.cuda else "cpu", dtype=self.dtype)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.cuda else None

    def randn(self, *shape, dtype=None) -> torch.Tensor:
        return torch.randn(*shape, device=self.device, dtype=dtype or self.dtype)


def _stats(times: list[float]) -> dict:
    med = statistics.median(times)
    return {"median_s": round(med, 4), "mean_s": round(statistics.fmean(times), 4),
            "times_s": [round(t, 4) for t in times]}


def _optimizer_step(ctx: Ctx, loss_fn, params: list, accum: int, lr: float = 1e-5):
    """One optimizer step of `accum` micro-batches (warm-up: one micro-batch), as run_loop does."""
    opt = torch.optim.AdamW(params, lr=lr)

    def step(warm: bool = False) -> float:
        n = 1 if warm else accum
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(n):
            with ctx.autocast():
                loss = loss_fn()
            (loss / n).backward()
            total += float(loss.detach()) / n
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return total

    return step


def _time_steps(ctx: Ctx, step, warmup: int, steps: int) -> dict:
    for _ in range(warmup):
        step(warm=True)
    times, losses = [], []
    for _ in range(steps):
        ctx.sync()
        t = time.perf_counter()
        losses.append(step())
        ctx.sync()
        times.append(time.perf_counter() - t)
    out = _stats(times)
    out.update(steps_per_s=round(1.0 / out["median_s"], 4), last_loss=losses[-1],
               loss_finite=all(math.isfinite(v) for v in losses))
    return out


def _sdxl_batch(ctx: Ctx, b: int, px: int) -> dict:
    s = ctx.sizes
    return {"x0": ctx.randn(b, 4, px // 8, px // 8), "cond": torch.rand(b, 3, px, px, device=ctx.device, dtype=ctx.dtype),
            "enc": ctx.randn(b, s.clip_len, s.unet["cross_attention_dim"]),
            "added": gm.sdxl_added_cond(s, b, px, ctx.device, ctx.dtype)}


def train_controlnet_sdxl(ctx: Ctx) -> dict:
    """1a: ControlNet (fp32 weights, trained) on a frozen SDXL UNet, epsilon target."""
    a = ctx.args
    unet = gm.sdxl_unet(ctx.sizes, ctx.device, ctx.dtype).requires_grad_(False)
    cn = gm.controlnet_from(unet, ctx.device, torch.float32).train()
    if a.sdxl_checkpointing:
        cn.enable_gradient_checkpointing()
        unet.enable_gradient_checkpointing()
    alphas, batch = gm.ddpm_alphas(ctx.device), _sdxl_batch(ctx, a.train_batch, a.image_px)
    x0, b = batch["x0"], a.train_batch

    def loss_fn():
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (b,), device=ctx.device)
        noisy = add_noise(x0, noise, t, "epsilon", alphas)
        down, mid = cn(noisy, t, encoder_hidden_states=batch["enc"], controlnet_cond=batch["cond"],
                       added_cond_kwargs=batch["added"], return_dict=False)
        pred = unet(noisy, t, encoder_hidden_states=batch["enc"], added_cond_kwargs=batch["added"],
                    down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        return F.mse_loss(pred.float(), training_target(x0, noise, t, "epsilon", alphas).float())

    params = [p for p in cn.parameters() if p.requires_grad]
    out = _time_steps(ctx, _optimizer_step(ctx, loss_fn, params, 1), a.warmup, a.train_steps)
    out.update(batch=b, image_px=a.image_px, trainable_params=gm.count(params),
               unet_params=gm.count(unet.parameters()), samples_per_s=round(b * out["steps_per_s"], 3),
               gradient_checkpointing=a.sdxl_checkpointing, peak_gib=ctx.peak_gib())
    return out


def train_control_lora_flux(ctx: Ctx) -> dict:
    """1b: control LoRA (attention projections + widened x_embedder) on FLUX, flow target."""
    a = ctx.args
    model = gm.flux_control_transformer(ctx.sizes, ctx.device, ctx.dtype).requires_grad_(False)
    model.add_adapter(gm.lora_config(a.lora_rank, gm.FLUX_CONTROL_LORA_TARGETS))
    if a.flux_checkpointing:
        model.enable_gradient_checkpointing()
    params = gm.trainable_fp32(model)
    inp = gm.flux_inputs(ctx.sizes, 1, a.image_px, ctx.device, ctx.dtype)
    x0 = inp["x0"]

    def loss_fn():
        noise = torch.randn_like(x0)
        sigma = torch.rand(x0.shape[0], device=ctx.device)
        noisy = add_noise(x0, noise, sigma, "flow")
        pred = gm.flux_forward(model, noisy, sigma, inp)
        return F.mse_loss(pred.float(), training_target(x0, noise, sigma, "flow").float())

    out = _time_steps(ctx, _optimizer_step(ctx, loss_fn, params, 1), a.warmup, a.train_steps)
    out.update(batch=1, image_px=a.image_px, tokens=int(x0.shape[1]), lora_rank=a.lora_rank,
               trainable_params=gm.count(params), transformer_params=gm.count(model.parameters()) - gm.count(params),
               gradient_checkpointing=a.flux_checkpointing, peak_gib=ctx.peak_gib())
    return out


def _dpo_figures(ctx: Ctx, out: dict, params: list) -> dict:
    a = ctx.args
    out = {f"optimizer_step_{k}": v for k, v in out.items()}
    out.update(pairs_per_micro_batch=a.dpo_batch, grad_accum=a.dpo_accum, lora_rank=a.lora_rank,
               micro_batch_s=round(out["optimizer_step_median_s"] / a.dpo_accum, 4),
               pairs_per_s=round(a.dpo_batch * a.dpo_accum / out["optimizer_step_median_s"], 3),
               trainable_params=gm.count(params), peak_gib=ctx.peak_gib())
    return out


def _with_reference(model, run, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Errors of the trained model and of the reference (same network, adapters off, no grad)."""
    err_theta = per_sample_error(run(), target)
    with torch.no_grad():
        model.disable_adapters()
        try:
            err_ref = per_sample_error(run(), target)
        finally:
            model.enable_adapters()
    return err_theta, err_ref


def dpo_sdxl(ctx: Ctx) -> dict:
    """2a: DPO LoRA on the SDXL UNet; the ControlNet (control adapter) frozen, run once per step."""
    a, b, cfg = ctx.args, ctx.args.dpo_batch, DpoConfig(rank=ctx.args.lora_rank, alpha=ctx.args.lora_rank)
    unet = gm.sdxl_unet(ctx.sizes, ctx.device, ctx.dtype)
    cn = gm.controlnet_from(unet, ctx.device, ctx.dtype).requires_grad_(False)
    add_lora(unet, cfg)
    params = gm.trainable_fp32(unet)
    alphas = gm.ddpm_alphas(ctx.device)
    win, lose = _sdxl_batch(ctx, b, a.image_px), ctx.randn(b, 4, a.image_px // 8, a.image_px // 8)
    enc, cond = win["enc"].repeat(2, 1, 1), win["cond"].repeat(2, 1, 1, 1)
    added = {k: v.repeat(2, 1) for k, v in win["added"].items()}
    x0 = torch.cat([win["x0"], lose])

    def loss_fn():
        noise = torch.randn_like(lose).repeat(2, 1, 1, 1)  # winner and loser share noise and t
        t = torch.randint(0, 1000, (b,), device=ctx.device).repeat(2)
        noisy = add_noise(x0, noise, t, "epsilon", alphas)
        with torch.no_grad():
            down, mid = cn(noisy, t, encoder_hidden_states=enc, controlnet_cond=cond, added_cond_kwargs=added,
                           return_dict=False)
        err_theta, err_ref = _with_reference(unet, lambda: unet(
            noisy, t, encoder_hidden_states=enc, added_cond_kwargs=added, down_block_additional_residuals=down,
            mid_block_additional_residual=mid).sample, training_target(x0, noise, t, "epsilon", alphas))
        return dpo_loss(err_theta[:b], err_ref[:b], err_theta[b:], err_ref[b:], cfg.beta)[0]

    out = _time_steps(ctx, _optimizer_step(ctx, loss_fn, params, a.dpo_accum), 1, a.dpo_steps)
    return _dpo_figures(ctx, out, params) | {"image_px": a.image_px}


def dpo_flux(ctx: Ctx) -> dict:
    """2b: DPO LoRA on the control-widened FLUX transformer (the control LoRA taken as fused)."""
    a, b, cfg = ctx.args, ctx.args.dpo_batch, DpoConfig(rank=ctx.args.lora_rank, alpha=ctx.args.lora_rank)
    model = gm.flux_control_transformer(ctx.sizes, ctx.device, ctx.dtype)
    add_lora(model, cfg)
    if a.flux_checkpointing:
        model.enable_gradient_checkpointing()
    params = gm.trainable_fp32(model)
    inp = gm.flux_inputs(ctx.sizes, b, a.image_px, ctx.device, ctx.dtype)
    per_pair = ("control", "encoder_hidden_states", "pooled_projections", "guidance")
    pair_inp = {k: (v.repeat(2, *([1] * (v.ndim - 1))) if k in per_pair else v) for k, v in inp.items()}
    x0 = torch.cat([inp["x0"], torch.randn_like(inp["x0"])])

    def loss_fn():
        noise = torch.randn_like(inp["x0"]).repeat(2, 1, 1)
        sigma = torch.rand(b, device=ctx.device).repeat(2)
        noisy = add_noise(x0, noise, sigma, "flow")
        err_theta, err_ref = _with_reference(model, lambda: gm.flux_forward(model, noisy, sigma, pair_inp),
                                             training_target(x0, noise, sigma, "flow"))
        return dpo_loss(err_theta[:b], err_ref[:b], err_theta[b:], err_ref[b:], cfg.beta)[0]

    out = _time_steps(ctx, _optimizer_step(ctx, loss_fn, params, a.dpo_accum), 1, a.dpo_steps)
    return _dpo_figures(ctx, out, params) | {"image_px": a.image_px, "tokens": int(x0.shape[1]),
                                             "gradient_checkpointing": a.flux_checkpointing}


def _sdxl_pipeline(ctx: Ctx, tmp: Path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLControlNetPipeline

    unet = gm.sdxl_unet(ctx.sizes, ctx.device, ctx.dtype)
    tok, te, tok2, te2 = gm.sdxl_text_encoders(ctx.sizes, tmp, ctx.device, ctx.dtype)
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLControlNetPipeline(
        vae=gm.sdxl_vae(ctx.sizes, ctx.device, ctx.dtype), text_encoder=te, text_encoder_2=te2, tokenizer=tok,
        tokenizer_2=tok2, unet=unet, controlnet=gm.controlnet_from(unet, ctx.device, ctx.dtype), scheduler=sched,
        add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate_sdxl(ctx: Ctx) -> dict:
    """3: SDXL + ControlNet at gen_px / gen_steps: eager, DPO LoRA unfused, fused, compiled."""
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:  # tokenizer and LoRA files
        return _generate_sdxl(ctx, Path(tmp))


def _generate_sdxl(ctx: Ctx, tmp: Path) -> dict:
    from PIL import Image

    a = ctx.args
    pipe = _sdxl_pipeline(ctx, tmp)
    control = Image.fromarray(np.random.default_rng(0).integers(0, 256, (a.gen_px, a.gen_px, 3), dtype=np.uint8))

    def image(seed: int) -> None:
        pipe(prompt="a photo of a person standing in a park", image=control, height=a.gen_px, width=a.gen_px,
             num_inference_steps=a.gen_steps, guidance_scale=a.guidance, output_type="np",
             generator=torch.Generator("cpu").manual_seed(seed))

    def measure() -> dict:
        ctx.reset_peak()
        ctx.sync()
        t = time.perf_counter()
        image(0)  # warm-up (and, compiled, the compilation)
        ctx.sync()
        first = time.perf_counter() - t
        times = []
        for seed in range(1, a.gen_images + 1):
            t = time.perf_counter()
            image(seed)
            ctx.sync()
            times.append(time.perf_counter() - t)
        out = _stats(times)
        out.update(first_image_s=round(first, 3), images_per_s=round(1.0 / out["median_s"], 4),
                   denoise_steps_per_s=round(a.gen_steps / out["median_s"], 3), peak_gib=ctx.peak_gib())
        return out

    out: dict = {"image_px": a.gen_px, "steps": a.gen_steps, "guidance_scale": a.guidance, "batch": 1,
                 "lora_rank": a.lora_rank, "variants": {}}
    variants = out["variants"]
    variants["eager"] = measure()
    add_lora(pipe.unet, DpoConfig(rank=a.lora_rank, alpha=a.lora_rank))  # a DPO LoRA file, loaded as the
    save_lora(pipe.unet, tmp / "dpo")                                     # generator loads aligned weights
    pipe.unet.unload_lora()
    pipe.load_lora_weights(str(tmp / "dpo"), adapter_name="dpo")
    variants["eager_lora_unfused"] = measure()
    pipe.fuse_lora(components=["unet"])
    variants["eager_lora_fused"] = measure()
    if a.compile_backend == "none":
        return out
    pipe.unload_lora_weights()  # the fused weights stay; the peft wrappers go before compiling
    kwargs = {"backend": a.compile_backend} | ({"mode": a.compile_mode} if a.compile_mode != "default" else {})
    pipe.unet.compile(**kwargs)
    try:
        variants["compiled_lora_fused"] = measure()
    except Exception as exc:  # keep the eager figures when only compilation fails
        variants["compiled_lora_fused"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    variants["compiled_lora_fused"]["compile"] = kwargs
    return out


def render_pncc(ctx: Ctx) -> dict:
    """4: a PNCC render of an anny body (pd_assets.poses) on the machine's EGL driver."""
    import bench_render

    from pd_assets.poses.body_models import BodyParams, load_body_model
    from pd_assets.poses.cameras import CameraConfig, sample_camera
    from pd_assets.poses.labels import to_camera
    from pd_assets.poses.pool import renderer_for
    from pd_assets.poses.render import sample_shading

    a, rng = ctx.args, np.random.default_rng(0)
    model = load_body_model("anny")
    renderer = renderer_for(model, a.render_size, a.render_size)
    meshes = model.forward(BodyParams.rest(model.sample_shape(rng, 1)))
    cam = sample_camera(rng, CameraConfig(width=a.render_size, height=a.render_size), meshes.vertices[0],
                        joints=meshes.joints[0])
    verts = to_camera(meshes.vertices[0], cam.R, cam.t)
    shading = sample_shading(rng)
    info = renderer.ctx.info
    gl_renderer = str(info.get("GL_RENDERER", ""))
    return {
        "size": a.render_size, "repeats": a.render_repeats, "vertices": int(model.num_vertices),
        "triangles": int(len(model.faces)), "gl_renderer": gl_renderer, "gl_vendor": str(info.get("GL_VENDOR", "")),
        "gl_version": str(info.get("GL_VERSION", "")), "nvidia": "nvidia" in gl_renderer.lower(),
        "mask_coverage": round(float(renderer.render(verts, cam.K).mask.mean()), 4),
        "pncc_ms": round(bench_render.timed(lambda: renderer.render_pncc(verts, cam.K), a.render_repeats), 3),
        "all_maps_ms": round(bench_render.timed(lambda: renderer.render(verts, cam.K, shading), a.render_repeats), 3),
    }


SECTIONS = {
    "render_pncc": render_pncc,
    "train_controlnet_sdxl": train_controlnet_sdxl,
    "train_control_lora_flux": train_control_lora_flux,
    "generate_sdxl": generate_sdxl,
    "dpo_sdxl": dpo_sdxl,
    "dpo_flux": dpo_flux,
}

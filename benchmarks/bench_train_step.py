"""Seconds per denoiser training step of the from-scratch generator, fp32 against bf16
autocast, and against narrower denoisers, measured in one run through the shared training
loop (`pd_assets/training/loop.py`: AdamW, EMA, clipping, as `control_adapter` trains).

The figures behind issue 7's runs 17 and 18 (README): whether bf16 autocast pays on this CPU
(on ours: 1.22x in one bare timing, 0.97x here later; the host's speed drifts), and what a
narrower denoiser saves per step (it learns far less per step).

    python benchmarks/bench_train_step.py --steps 30
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pd_assets.generation.scratch_model import ScratchModelConfig, build_unet
from pd_assets.training.loop import LoopConfig, run_loop


def seconds_per_step(widths: tuple[int, ...], precision: str, steps: int, warmup: int, batch: int = 16,
                     latent_channels: int = 32, latent_size: int = 16, text_tokens: int = 8) -> float:
    """Mean wall-clock seconds of the steps after `warmup` (steps >= 2), on fixed random latents (the concat
    form: noisy latents + control latents in, v out; what each step costs, not what it learns)."""
    torch.manual_seed(0)
    cfg = ScratchModelConfig(latent_channels=latent_channels, unet_channels=widths)
    unet = build_unet(cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 2 * latent_channels, latent_size, latent_size, generator=g)
    target = torch.randn(batch, latent_channels, latent_size, latent_size, generator=g)
    text = torch.randn(batch, text_tokens, cfg.text_hidden, generator=g)
    stamps: list[float] = []

    def loss_fn(step, micro, gen):
        stamps.append(time.perf_counter())
        t = torch.randint(0, 1000, (batch,), generator=gen)
        pred = unet(x, t, encoder_hidden_states=text).sample
        return F.mse_loss(pred.float(), target), {}

    with tempfile.TemporaryDirectory() as tmp:
        loop = LoopConfig(steps=warmup + steps, lr=3e-4, ema_decay=0.999, checkpoint_every=10**9, log_every=10**9,
                          mixed_precision=precision)
        run_loop({"unet": unet}, loss_fn, loop, Path(tmp) / "ck")
    # step starts only: the final checkpoint the loop writes is not a step
    return (stamps[-1] - stamps[warmup]) / (len(stamps) - 1 - warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--widths", default="64,128,192;32,64,128", help="denoiser widths to time, ';' separated")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch 16, 16x16x32 latents (128 px, f=8)")
    base = None
    for spec in args.widths.split(";"):
        widths = tuple(int(c) for c in spec.split(","))
        for precision in ("no", "bf16"):
            s = seconds_per_step(widths, precision, args.steps, args.warmup)
            base = base or s
            print(f"unet {spec:>12}  {'fp32' if precision == 'no' else 'bf16':>4}: {s:.3f} s/step  "
                  f"({base / s:.2f}x the first row)", flush=True)


if __name__ == "__main__":
    main()

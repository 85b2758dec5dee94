"""One resumable training loop for every stage (autoencoder, control adapter, DPO LoRA).

The caller gives the trainable modules and a `loss_fn(step, micro, generator)` that draws
its own batch and noise from `generator`; the loop seeds that generator from (seed, step,
micro-batch), so a run killed after step k and resumed from its checkpoint replays exactly
the batches and noise of an uninterrupted run and ends with identical weights (CPU).

AdamW, gradient accumulation, gradient-norm clipping, linear warm-up then a constant, cosine
or linear learning rate (a function of the step, so a resumed run follows it exactly), optional EMA of the
weights, bf16 autocast (CUDA, or CPU), periodic atomic safetensors checkpoints, a wall-clock
budget, and progress lines (step, loss, s/step, ETA) through `log`.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pd_assets.training import checkpoints as ckpt

LossFn = Callable[[int, int, torch.Generator], tuple[torch.Tensor, dict[str, float]]]


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    warmup_steps: int = 0
    # after warm-up: constant, or decayed to lr * min_lr_ratio at `steps` (cosine or linear). A
    # run stopped by max_seconds before `steps` ends part-way down: set `steps` to what the budget buys
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.0
    ema_decay: float | None = None
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    mixed_precision: str = "no"  # no | bf16 (autocast, on CUDA or CPU)
    max_seconds: float | None = None  # stop (and checkpoint) once this much training time is spent

    def __post_init__(self) -> None:
        if self.steps < 1 or self.grad_accum < 1:
            raise ValueError(f"steps={self.steps} and grad_accum={self.grad_accum} must be >= 1")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"training {name}={value} must be a finite number >= 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r} is not one of {', '.join(LR_SCHEDULES)}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio} must be between 0 and 1 (a share of lr)")
        if self.mixed_precision not in ("no", "bf16"):
            raise ValueError(f"mixed_precision={self.mixed_precision!r} is not one of no, bf16 "
                             "(fp16 would need loss scaling; bf16 does not)")


LR_SCHEDULES = ("constant", "cosine", "linear")


def scheduled_lr(config: LoopConfig, step: int) -> float:
    """The learning rate of optimizer step `step` (0-based): linear warm-up over warmup_steps,
    then the schedule from lr down to lr * min_lr_ratio at config.steps."""
    warm = min(1.0, (step + 1) / max(config.warmup_steps, 1))
    if config.lr_schedule == "constant":
        return config.lr * warm
    span = max(config.steps - config.warmup_steps, 1)
    progress = min(max((step - config.warmup_steps) / span, 0.0), 1.0)
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if config.lr_schedule == "cosine" else 1.0 - progress
    return config.lr * warm * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * shape)


@dataclass
class LoopResult:
    step: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # one mean loss per optimizer step
    logs: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    checkpoint: Path | None = None
    stopped_by_budget: bool = False

    @property
    def final_loss(self) -> float:
        tail = self.losses[-20:]
        return float(sum(tail) / len(tail)) if tail else float("nan")


def step_generator(seed: int, step: int, micro: int, device: str = "cpu") -> torch.Generator:
    """The random stream of one micro-batch: a function of (seed, step, micro) only."""
    digest = hashlib.sha256(f"{seed}:{step}:{micro}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def trainable_state(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": p for name, m in modules.items() for k, p in m.named_parameters() if p.requires_grad}


class EMA:
    """Exponential moving average of parameters, with the usual warm-up of the decay."""

    def __init__(self, params: dict[str, torch.Tensor], decay: float):
        self.decay = decay
        self.shadow = {k: p.detach().clone().float() for k, p in params.items()}

    def update(self, params: dict[str, torch.Tensor], step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, p in params.items():
                self.shadow[k].mul_(d).add_(p.detach().float(), alpha=1 - d)

    def copy_to(self, params: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(self.shadow[k].to(p.dtype))


def run_loop(modules: dict[str, torch.nn.Module], loss_fn: LossFn, config: LoopConfig, ckpt_dir: Path,
             *, device: str = "cpu", log: Callable[[str], None] | None = None,
             run_info: dict[str, Any] | None = None) -> tuple[LoopResult, EMA | None]:
    """Train until `config.steps` (or `max_seconds`), resuming from the newest checkpoint in
    `ckpt_dir` if there is one. Returns the result and the EMA (None when off)."""
    params = trainable_state(modules)
    if not params:
        raise ValueError("nothing to train: no parameter of the given modules requires grad")
    optimizer = torch.optim.AdamW(list(params.values()), lr=config.lr, betas=config.betas,
                                  weight_decay=config.weight_decay)
    ema = EMA(params, config.ema_decay) if config.ema_decay else None
    result = LoopResult(step=0, seconds=0.0)
    found = ckpt.latest_checkpoint(ckpt_dir)
    if found is not None:
        state = ckpt.load_checkpoint(found)
        _restore(params, state["trainable"], found)
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state["ema"] is not None:
            ema.shadow = {k: v.float() for k, v in state["ema"].items()}
        info = state["info"]
        result.step = result.resumed_from = int(info["step"])
        result.seconds = float(info.get("seconds", 0.0))
        result.losses = list(info.get("losses", []))
        if log:
            log(f"resumed from {found} at step {result.step}")
    for m in modules.values():
        m.train()
    autocast = _autocast(device, config.mixed_precision)
    t_last, steps_since = time.perf_counter(), 0
    while result.step < config.steps:
        if config.max_seconds is not None and result.seconds >= config.max_seconds:
            result.stopped_by_budget = True
            break
        t0 = time.perf_counter()
        lr = scheduled_lr(config, result.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        total, logs = 0.0, {}
        for micro in range(config.grad_accum):
            gen = step_generator(config.seed, result.step, micro)
            with autocast:
                loss, extra = loss_fn(result.step, micro, gen)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss is {loss.item()} at step {result.step}: lower the learning rate "
                    f"(now {config.lr:g}) or enable gradient clipping; the last checkpoint is kept in {ckpt_dir}"
                )
            (loss / config.grad_accum).backward()
            total += float(loss.detach()) / config.grad_accum
            for k, v in extra.items():
                logs[k] = logs.get(k, 0.0) + float(v) / config.grad_accum
        if config.max_grad_norm:
            logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(list(params.values()), config.max_grad_norm))
        optimizer.step()
        result.step += 1
        if ema is not None:
            ema.update(params, result.step)
        result.losses.append(total)
        result.logs.append({"step": result.step, "loss": total, "lr": lr, **logs})
        result.seconds += time.perf_counter() - t0
        steps_since += 1
        if log and (result.step % config.log_every == 0 or result.step == config.steps):
            per_step = (time.perf_counter() - t_last) / steps_since
            eta = per_step * (config.steps - result.step)
            if config.max_seconds is not None:  # a time budget ends the run first
                eta = min(eta, max(config.max_seconds - result.seconds, 0.0))
            extra_txt = " ".join(f"{k} {v:.4g}" for k, v in logs.items())
            log(f"step {result.step}/{config.steps} loss {total:.4f} {extra_txt} {per_step:.2f} s/step "
                f"ETA {eta / 60:.1f} min")
            t_last, steps_since = time.perf_counter(), 0
        if result.step % config.checkpoint_every == 0 or result.step == config.steps:
            result.checkpoint = _save(ckpt_dir, result, params, optimizer, ema, config, run_info)
    if result.stopped_by_budget and (result.checkpoint is None or not result.checkpoint.name.endswith(f"{result.step:07d}")):
        result.checkpoint = _save(ckpt_dir, result, params, optimizer, ema, config, run_info)
    for m in modules.values():
        m.eval()
    return result, ema


def _save(ckpt_dir, result: LoopResult, params, optimizer, ema, config: LoopConfig, run_info) -> Path:
    info = {"seconds": result.seconds, "losses": result.losses, "config": asdict(config), "run": run_info or {}}
    return ckpt.save_checkpoint(ckpt_dir, result.step, params, optimizer.state_dict(), info,
                                ema=ema.shadow if ema is not None else None)


def _restore(params: dict[str, torch.Tensor], saved: dict[str, torch.Tensor], where: Path) -> None:
    missing = sorted(set(params) - set(saved))
    if missing:
        raise ckpt.CheckpointError(
            f"checkpoint {where} lacks {len(missing)} trained tensors (e.g. {missing[0]}): it belongs to "
            "another model or settings; point the run at a fresh checkpoint folder"
        )
    with torch.no_grad():
        for k, p in params.items():
            if saved[k].shape != p.shape:
                raise ckpt.CheckpointError(
                    f"checkpoint {where}: {k} has shape {tuple(saved[k].shape)}, the model {tuple(p.shape)}: "
                    "it belongs to another model size; point the run at a fresh checkpoint folder"
                )
            p.copy_(saved[k])


def _autocast(device: str, mixed_precision: str):
    import contextlib

    if mixed_precision == "no":
        return contextlib.nullcontext()
    # bf16 on CPU too (asked for, not implied): matmuls and convolutions run in bf16; whether that
    # is faster depends on the CPU (benchmarks/bench_train_step.py; README, run 18)
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)

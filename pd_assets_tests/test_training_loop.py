"""The shared training loop: learns, resumes bit-identically after a crash, writes checkpoints atomically."""

from __future__ import annotations

import pytest
import torch

from pd_assets.training import checkpoints as ckpt
from pd_assets.training.loop import LoopConfig, run_loop, scheduled_lr, step_generator

# a fixed tiny regression set: y = x @ w_true
_X = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
_W = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
_Y = _X @ _W


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _loss_fn(model, crash_at: int | None = None):
    def fn(step, micro, gen):
        if crash_at is not None and step == crash_at:
            raise KeyboardInterrupt("simulated kill")
        idx = torch.randint(0, 64, (8,), generator=gen)
        noise = torch.randn(8, 1, generator=gen) * 0.01  # per-step randomness must replay too
        return torch.nn.functional.mse_loss(model(_X[idx]), _Y[idx] + noise), {}
    return fn


CFG = LoopConfig(steps=40, lr=1e-2, grad_accum=2, max_grad_norm=1.0, warmup_steps=5, ema_decay=0.9,
                 checkpoint_every=10, log_every=10, seed=3, lr_schedule="cosine", min_lr_ratio=0.1)


def test_loss_falls_on_a_fixed_tiny_set(tmp_path):
    model = _model()
    cfg = LoopConfig(steps=150, lr=3e-2, warmup_steps=5, checkpoint_every=1000, seed=3)
    result, _ = run_loop({"m": model}, _loss_fn(model), cfg, tmp_path / "ck")
    assert result.step == 150
    assert sum(result.losses[-10:]) / 10 < 0.2 * sum(result.losses[:10]) / 10


def test_killed_run_resumes_to_identical_weights(tmp_path):
    ref = _model()
    ref_result, ref_ema = run_loop({"m": ref}, _loss_fn(ref), CFG, tmp_path / "ref")

    killed = _model()
    with pytest.raises(KeyboardInterrupt):
        run_loop({"m": killed}, _loss_fn(killed, crash_at=25), CFG, tmp_path / "run")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run")] == ["step-0000010", "step-0000020"]
    resumed = _model(seed=99)  # a fresh process: different initial weights, all restored from step 20
    result, ema = run_loop({"m": resumed}, _loss_fn(resumed), CFG, tmp_path / "run")
    assert result.resumed_from == 20 and result.step == 40
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    for k in ref_ema.shadow:
        assert torch.equal(ref_ema.shadow[k], ema.shadow[k])
    assert result.losses == ref_result.losses


def test_checkpoints_are_atomic_and_a_half_written_one_is_ignored(tmp_path):
    model = _model()
    run_loop({"m": model}, _loss_fn(model), LoopConfig(steps=10, checkpoint_every=5, lr=1e-2), tmp_path / "ck")
    # a staging folder left by a kill mid-write is not a checkpoint
    (tmp_path / "ck" / ".step-0000015.staging-deadbeef").mkdir()
    assert ckpt.latest_checkpoint(tmp_path / "ck").name == "step-0000010"
    loaded = ckpt.load_checkpoint(tmp_path / "ck" / "step-0000010")
    assert loaded["info"]["step"] == 10 and set(loaded["trainable"]) == {f"m.{k}" for k, _ in model.named_parameters()}
    (tmp_path / "ck" / "step-0000010" / "optimizer.safetensors").write_bytes(b"garbage")
    with pytest.raises(ckpt.CheckpointError, match="step-0000010.*delete that folder"):
        ckpt.load_checkpoint(tmp_path / "ck" / "step-0000010")


def test_budget_stops_and_checkpoints(tmp_path):
    model = _model()
    result, _ = run_loop({"m": model}, _loss_fn(model), LoopConfig(steps=10_000, lr=1e-2, max_seconds=0.0),
                         tmp_path / "ck")
    assert result.stopped_by_budget and result.step == 0


def test_non_finite_loss_is_a_clear_error(tmp_path):
    model = _model()

    def nan_loss(step, micro, gen):
        return model(_X[:2]).sum() * float("nan"), {}
    with pytest.raises(FloatingPointError, match="learning rate"):
        run_loop({"m": model}, nan_loss, LoopConfig(steps=3), tmp_path / "ck")


def test_step_generator_depends_only_on_seed_step_micro():
    a = torch.rand(3, generator=step_generator(1, 7, 0))
    assert torch.equal(a, torch.rand(3, generator=step_generator(1, 7, 0)))
    assert not torch.equal(a, torch.rand(3, generator=step_generator(1, 8, 0)))
    assert not torch.equal(a, torch.rand(3, generator=step_generator(1, 7, 1)))


@pytest.mark.parametrize("schedule, min_ratio, step, expected", [
    # lr 2, 11 steps, warm-up 1: decay progress (step - 1) / 10
    ("constant", 0.0, 6, 2.0),
    ("cosine", 0.0, 1, 2.0),     # progress 0: cos 0 = 1
    ("cosine", 0.0, 6, 1.0),     # progress 0.5: (1 + cos pi/2) / 2 = 0.5
    ("cosine", 0.0, 11, 0.0),    # progress 1: (1 + cos pi) / 2 = 0
    ("cosine", 0.5, 11, 1.0),    # the floor: lr * min_lr_ratio
    ("linear", 0.1, 6, 1.1),     # 2 * (0.1 + 0.9 * 0.5)
    ("linear", 0.0, 9, 0.4),     # 2 * (1 - 0.8)
    ("linear", 0.0, 50, 0.0),    # past the end: stays at the floor
])
def test_scheduled_lr_hand_computed(schedule, min_ratio, step, expected):
    cfg = LoopConfig(steps=11, lr=2.0, warmup_steps=1, lr_schedule=schedule, min_lr_ratio=min_ratio)
    assert scheduled_lr(cfg, step) == pytest.approx(expected)


def test_warm_up_scales_every_schedule_and_the_loop_uses_it(tmp_path):
    cfg = LoopConfig(steps=12, lr=1.0, warmup_steps=4, lr_schedule="linear", checkpoint_every=100)
    assert scheduled_lr(cfg, 1) == pytest.approx(0.5)  # warm-up 2/4, decay not started
    assert scheduled_lr(cfg, 8) == pytest.approx(0.5)  # warmed up, progress (8 - 4) / 8
    model = _model()
    result, _ = run_loop({"m": model}, _loss_fn(model), cfg, tmp_path / "ck")
    assert [row["lr"] for row in result.logs] == [scheduled_lr(cfg, s) for s in range(12)]
    assert result.logs[-1]["lr"] == pytest.approx(1 / 8)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="lr_schedule"):
        LoopConfig(steps=1, lr_schedule="step")
    with pytest.raises(ValueError, match="min_lr_ratio"):
        LoopConfig(steps=1, min_lr_ratio=1.5)
    with pytest.raises(ValueError, match="lr"):
        LoopConfig(steps=1, lr=float("nan"))
    with pytest.raises(ValueError, match="mixed_precision"):
        LoopConfig(steps=1, mixed_precision="fp8")


@pytest.mark.parametrize("mixed_precision, dtype", [("no", torch.float32), ("bf16", torch.bfloat16)])
def test_bf16_autocast_runs_on_cpu_and_keeps_fp32_weights(tmp_path, mixed_precision, dtype):
    """bf16 is autocast on CPU too (it was silently fp32 there): the forward pass runs in the
    requested dtype, the weights and their update stay fp32, and the loss still falls."""
    model = _model()
    seen = []

    def fn(step, micro, gen):
        idx = torch.randint(0, 64, (8,), generator=gen)
        out = model(_X[idx])
        seen.append(out.dtype)
        return torch.nn.functional.mse_loss(out.float(), _Y[idx]), {}

    cfg = LoopConfig(steps=150, lr=3e-2, warmup_steps=5, checkpoint_every=1000, seed=3, mixed_precision=mixed_precision)
    result, _ = run_loop({"m": model}, fn, cfg, tmp_path / "ck")
    assert set(seen) == {dtype}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sum(result.losses[-10:]) / 10 < 0.2 * sum(result.losses[:10]) / 10

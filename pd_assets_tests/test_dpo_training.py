"""DPO-LoRA training on a tiny from-scratch model with a synthetic preference set."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pd_assets.alignment.dpo_training import DpoConfig, PreferenceTensors, implicit_reward_accuracy, lora_state, train_dpo
from pd_assets.generation.scratch_model import ScratchModelConfig, build_controlnet, build_scheduler, build_unet

CFG = ScratchModelConfig(image_size=32, vae_channels=(16, 16), unet_channels=(32, 32), latent_channels=4)


def _parts(seed: int = 0, control_input: str = "controlnet"):
    torch.manual_seed(seed)
    cfg = dataclasses.replace(CFG, control_input=control_input)
    unet = build_unet(cfg)
    return unet, {"pncc": build_controlnet(cfg, unet)} if control_input == "controlnet" else {}, build_scheduler(cfg)


def _synthetic(n: int, seed: int, control_input: str = "controlnet") -> PreferenceTensors:
    """Winners are bright latents, losers dark ones: a preference the model can learn. A
    concat denoiser reads control latents instead of ControlNet maps."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, CFG.latent_channels, CFG.latent_size, CFG.latent_size)
    data = PreferenceTensors(winners=0.8 + 0.1 * torch.randn(shape, generator=g),
                             losers=-0.8 + 0.1 * torch.randn(shape, generator=g),
                             controls={"pncc": torch.rand(n, 3, CFG.image_size, CFG.image_size, generator=g)},
                             text=torch.randn(n, 77, CFG.text_hidden, generator=g))
    if control_input == "concat":
        return dataclasses.replace(data, controls={}, control_latents=torch.randn(shape, generator=g))
    return data


DPO = DpoConfig(rank=4, alpha=4, beta=2000.0, lr=5e-3, steps=40, batch=4, grad_accum=1, checkpoint_every=10, seed=1)


@pytest.mark.parametrize("control_input", ["controlnet", "concat"])
def test_dpo_learns_a_systematic_preference_and_generalises(tmp_path, control_input):
    unet, cns, sched = _parts(control_input=control_input)
    before = {k: v.clone() for k, v in unet.state_dict().items() if "lora" not in k}
    result = train_dpo(unet, cns, sched, _synthetic(32, 0, control_input), DPO, tmp_path / "work")
    assert result.step == 40
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first - 0.1  # starts at log 2 = 0.693
    held_out = implicit_reward_accuracy(unet, cns, sched, _synthetic(16, 99, control_input), DPO)
    assert held_out >= 0.8
    # only the LoRA was trained: the base denoiser and the ControlNet are untouched
    after = {k.replace(".base_layer", ""): v for k, v in unet.state_dict().items() if "lora" not in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for cn in cns.values() for p in cn.parameters())
    assert any(v.abs().sum() > 0 for k, v in lora_state(unet).items() if "lora_B" in k)


def test_reference_is_the_same_network_with_the_adapter_off(tmp_path):
    unet, cns, sched = _parts()
    train_dpo(unet, cns, sched, _synthetic(8, 0), DpoConfig(**{**DPO.as_dict(), "targets": DPO.targets, "steps": 5}),
              tmp_path / "w")
    x = torch.randn(1, CFG.latent_channels, CFG.latent_size, CFG.latent_size)
    t, enc = torch.tensor([500]), torch.randn(1, 77, CFG.text_hidden)
    fresh, _, _ = _parts()
    with torch.no_grad():
        on = unet(x, t, encoder_hidden_states=enc).sample
        unet.disable_adapters()
        off = unet(x, t, encoder_hidden_states=enc).sample
        unet.enable_adapters()
        base = fresh(x, t, encoder_hidden_states=enc).sample
    assert torch.allclose(off, base, atol=1e-6) and not torch.allclose(on, off, atol=1e-6)


def test_resume_after_a_kill_continues_at_the_same_step_with_identical_weights(tmp_path, monkeypatch):
    cfg = DpoConfig(**{**DPO.as_dict(), "targets": DPO.targets, "steps": 8, "checkpoint_every": 4})
    ref_unet, cns, sched = _parts()
    train_dpo(ref_unet, cns, sched, _synthetic(8, 0), cfg, tmp_path / "ref")

    import pd_assets.alignment.dpo_training as dt

    real = dt.make_loss_fn

    def crashing(*args, **kwargs):
        fn = real(*args, **kwargs)

        def wrapped(step, micro, gen):
            if step == 6:
                raise KeyboardInterrupt("simulated kill")
            return fn(step, micro, gen)
        return wrapped

    unet, cns2, sched2 = _parts()
    monkeypatch.setattr(dt, "make_loss_fn", crashing)
    with pytest.raises(KeyboardInterrupt):
        train_dpo(unet, cns2, sched2, _synthetic(8, 0), cfg, tmp_path / "run")
    monkeypatch.setattr(dt, "make_loss_fn", real)
    resumed, cns3, sched3 = _parts()
    result = train_dpo(resumed, cns3, sched3, _synthetic(8, 0), cfg, tmp_path / "run")
    assert result.resumed_from == 4 and result.step == 8
    ref, got = lora_state(ref_unet), lora_state(resumed)
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)

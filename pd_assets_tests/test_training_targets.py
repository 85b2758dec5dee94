"""Diffusion targets and min-SNR weights against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from pd_assets.training.targets import add_noise, min_snr_weight, snr, training_target

# two timesteps with alphas_cumprod 0.64 and 0.36 (sqrt: 0.8/0.6 and 0.6/0.8)
ALPHAS = torch.tensor([1.0, 0.64, 0.36])
X0 = torch.tensor([[1.0, 2.0], [1.0, 2.0]]).reshape(2, 2, 1, 1)
NOISE = torch.tensor([[0.5, -1.0], [0.5, -1.0]]).reshape(2, 2, 1, 1)
T = torch.tensor([1, 2])


def test_discrete_noising_by_hand():
    x = add_noise(X0, NOISE, T, "epsilon", ALPHAS).flatten().tolist()
    # t=1: 0.8*x0 + 0.6*noise ; t=2: 0.6*x0 + 0.8*noise
    assert x == pytest.approx([0.8 + 0.3, 1.6 - 0.6, 0.6 + 0.4, 1.2 - 0.8])


def test_epsilon_and_v_targets_by_hand():
    assert training_target(X0, NOISE, T, "epsilon", ALPHAS).flatten().tolist() == pytest.approx([0.5, -1.0, 0.5, -1.0])
    v = training_target(X0, NOISE, T, "v_prediction", ALPHAS).flatten().tolist()
    # v = sqrt(a) * noise - sqrt(1 - a) * x0
    assert v == pytest.approx([0.8 * 0.5 - 0.6 * 1, 0.8 * -1 - 0.6 * 2, 0.6 * 0.5 - 0.8 * 1, 0.6 * -1 - 0.8 * 2])


def test_flow_noising_and_target_by_hand():
    sigma = torch.tensor([0.25, 1.0])
    x = add_noise(X0, NOISE, sigma, "flow").flatten().tolist()
    assert x == pytest.approx([0.75 + 0.125, 1.5 - 0.25, 0.5, -1.0])
    assert training_target(X0, NOISE, sigma, "flow").flatten().tolist() == pytest.approx([-0.5, -3.0, -0.5, -3.0])


def test_v_target_recovers_x0_and_noise():
    # x0 = sqrt(a) x_t - sqrt(1-a) v and noise = sqrt(1-a) x_t + sqrt(a) v, for any a
    x_t = add_noise(X0, NOISE, T, "v_prediction", ALPHAS)
    v = training_target(X0, NOISE, T, "v_prediction", ALPHAS)
    a = ALPHAS[T].reshape(-1, 1, 1, 1)
    assert torch.allclose(a.sqrt() * x_t - (1 - a).sqrt() * v, X0, atol=1e-6)
    assert torch.allclose((1 - a).sqrt() * x_t + a.sqrt() * v, NOISE, atol=1e-6)


def test_snr_and_min_snr_weights_by_hand():
    s = snr(T, "epsilon", ALPHAS).tolist()
    assert s == pytest.approx([0.64 / 0.36, 0.36 / 0.64])
    w_eps = min_snr_weight(T, "epsilon", 1.0, ALPHAS).tolist()
    assert w_eps == pytest.approx([1.0 / (0.64 / 0.36), 1.0])  # min(snr, 1) / snr
    # v: min(snr + 1, g) / (snr + 1); snr + 1 = 1 / (1 - a): 1/0.36 and 1/0.64
    w_v = min_snr_weight(T, "v_prediction", 1.0, ALPHAS).tolist()
    assert w_v == pytest.approx([0.36, 0.64])
    assert min_snr_weight(T, "v_prediction", 2.0, ALPHAS).tolist() == pytest.approx([0.72, 1.0])
    # zero terminal SNR (a = 0): the first sampling step keeps the full weight, not 0
    zero_snr = torch.tensor([0.5, 0.0])
    assert min_snr_weight(torch.tensor([1]), "v_prediction", 5.0, zero_snr).item() == pytest.approx(1.0)
    assert snr(torch.tensor([0.5]), "flow").item() == pytest.approx(1.0)


def test_unknown_prediction_type_and_missing_schedule_are_clear():
    with pytest.raises(ValueError, match="prediction_type"):
        training_target(X0, NOISE, T, "sample")
    with pytest.raises(ValueError, match="alphas_cumprod"):
        training_target(X0, NOISE, T, "v_prediction")
    assert math.isfinite(min_snr_weight(torch.tensor([0]), "epsilon", 5.0, ALPHAS).item())

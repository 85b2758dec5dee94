"""The Diffusion-DPO loss, the pair rules and the paired statistics, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pd_assets.alignment.dpo_loss import dpo_loss, per_sample_error
from pd_assets.alignment.paired_stats import compare_paired, oks_error_reduction
from pd_assets.alignment.preferences import PairRule, candidate_score, select_pair


def test_loss_value_by_hand():
    # delta = (0.2 - 0.3) - (0.5 - 0.4) = -0.2 ; margin = -beta/2 * delta = 0.1 * 0.2 * ... with beta = 10: 1.0
    loss, logs = dpo_loss(torch.tensor([0.2]), torch.tensor([0.3]), torch.tensor([0.5]), torch.tensor([0.4]), beta=10.0)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))))  # -log sigmoid(1) = 0.3133
    assert logs["reward_accuracy"] == 1.0 and logs["reward_margin"] == pytest.approx(1.0)
    # equal errors everywhere: the loss is log 2 and the margin 0
    same = torch.tensor([0.3, 0.7])
    loss, logs = dpo_loss(same, same, same, same, beta=5000.0)
    assert loss.item() == pytest.approx(math.log(2.0)) and logs["reward_accuracy"] == 0.0
    # the SFT term adds weight * e_theta(w)
    loss_sft, _ = dpo_loss(torch.tensor([0.2]), torch.tensor([0.3]), torch.tensor([0.5]), torch.tensor([0.4]),
                           beta=10.0, sft_weight=2.0)
    assert loss_sft.item() == pytest.approx(0.31326169 + 0.4, abs=1e-6)


def test_per_sample_error_by_hand():
    pred = torch.zeros(2, 1, 2, 2)
    target = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 2.0, 0.0]).reshape(2, 1, 2, 2)
    assert per_sample_error(pred, target).tolist() == pytest.approx([1.0, 1.0])


def test_gradient_moves_the_model_toward_the_winner():
    # a 1-parameter "denoiser" predicting p for both samples; winner target 1, loser target -1
    p = torch.tensor([0.0], requires_grad=True)
    ref = torch.tensor([0.0])
    e = lambda pred, target: (pred - target) ** 2  # noqa: E731
    loss, _ = dpo_loss(e(p, 1.0), e(ref, 1.0), e(p, -1.0), e(ref, -1.0), beta=1.0)
    loss.backward()
    assert p.grad.item() < 0  # gradient descent increases p: toward the winner's target


def test_pair_rules_gap_floor_and_ties():
    rule = PairRule(min_gap=0.05, min_winner_oks=0.5)
    assert select_pair([0.6, 0.9, 0.1, 0.7], rule) == (1, 2)
    assert select_pair([0.52, 0.5, 0.49], rule) == "OKS gap 0.030 < 0.05"
    assert select_pair([0.4, 0.1], rule) == "best OKS 0.400 < 0.5"
    assert select_pair([0.9], rule) == "fewer than 2 candidates"
    # ties: the lowest index among the best wins, the highest index among the worst loses
    assert select_pair([0.9, 0.2, 0.9, 0.2], rule) == (0, 3)
    assert select_pair([0.0, 0.0, 0.0], PairRule(0.0, 0.0)) == (0, 2)
    assert candidate_score(0.8, genuine=False) == 0.0 and candidate_score(float("nan"), True) == 0.0
    assert candidate_score(0.8, True) == 0.8


def test_error_reduction_and_paired_test_by_hand():
    assert oks_error_reduction(0.874, 0.927) == pytest.approx(1 - 0.073 / 0.126)  # the method's 42 %
    assert oks_error_reduction(0.5, 0.75) == pytest.approx(0.5)
    rng = np.random.Generator(np.random.PCG64(0))
    base = rng.uniform(0.3, 0.7, 128)
    better = compare_paired(base, base + 0.05 + rng.normal(0, 0.01, 128))
    assert better.p_value < 1e-6 and better.ci_low > 0.03 and better.wins == 128
    noise = compare_paired(base, base + rng.normal(0, 0.05, 128))
    assert noise.p_value > 0.01 or noise.ci_low < 0 < noise.ci_high
    same = compare_paired(base, base.copy())
    assert same.p_value == 1.0 and same.mean_diff == 0.0
    with pytest.raises(ValueError, match="paired"):
        compare_paired(base, base[:10])

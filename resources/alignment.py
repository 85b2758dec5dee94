"""How the generator is aligned by DPO (stage 4): conditions, candidates, pair rules, LoRA."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from pd_assets import thresholds as T


class AlignmentResource(dg.ConfigurableResource):
    train_conditions: int = Field(default=256, ge=2, description="alignment conditions that give preference pairs")
    eval_conditions: int = Field(default=128, ge=2, description="held-out conditions for base vs aligned")
    candidates: int = Field(default=4, ge=2, description="K candidates per condition")
    min_oks_gap: float = Field(default=T.DPO_MIN_OKS_GAP, ge=0, le=1, allow_inf_nan=False)
    min_winner_oks: float = Field(default=T.DPO_MIN_WINNER_OKS, ge=0, le=1, allow_inf_nan=False)
    validation_fraction: float = Field(default=0.15, ge=0, lt=1, description="pairs held out to report reward accuracy")
    rank: int = Field(default=16, ge=1)
    alpha: int = Field(default=16, ge=1)
    targets: list[str] = Field(default=["to_q", "to_k", "to_v", "to_out.0"])
    beta: float = Field(default=2500.0, gt=0, allow_inf_nan=False)
    learning_rate: float = Field(default=1e-4, gt=0, allow_inf_nan=False)
    steps: int = Field(default=600, ge=1)
    batch_size: int = Field(default=4, ge=1, description="pairs per micro-batch")
    grad_accum: int = Field(default=4, ge=1)
    sft_weight: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    minutes: float | None = Field(default=45.0, allow_inf_nan=False, description="training time budget")
    seed: int = Field(default=0)
    max_oks_drop: float = Field(default=T.DPO_MAX_OKS_DROP, ge=0, description="blocking check tolerance")

    def dpo_config(self, mixed_precision: str = "no"):
        from pd_assets.alignment.dpo_training import DpoConfig

        return DpoConfig(rank=self.rank, alpha=self.alpha, targets=tuple(self.targets), beta=self.beta,
                         lr=self.learning_rate, steps=self.steps, batch=self.batch_size, grad_accum=self.grad_accum,
                         sft_weight=self.sft_weight, seed=self.seed,
                         max_seconds=self.minutes * 60 if self.minutes else None, mixed_precision=mixed_precision,
                         checkpoint_every=max(1, min(100, self.steps // 4)))

    def pair_rule(self):
        from pd_assets.alignment.preferences import PairRule

        return PairRule(min_gap=self.min_oks_gap, min_winner_oks=self.min_winner_oks)

    @classmethod
    def for_profile(cls, profile: str) -> AlignmentResource:
        if profile == "ci":  # wiring, not quality: relaxed rules so random weights still give pairs
            return cls(train_conditions=4, eval_conditions=3, candidates=2, min_oks_gap=0.0, min_winner_oks=0.0,
                       validation_fraction=0.0, rank=2, alpha=2, steps=2, batch_size=1, grad_accum=1, minutes=None,
                       max_oks_drop=1.0)
        return cls()

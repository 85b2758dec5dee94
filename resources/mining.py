"""How `mined_hard_set` learns difficulty and picks the next round (stage 5 settings).

Predictor defaults are the method's (31 leaves, lr 0.05, depth 8, up to 1000 trees, early
stopping 50, 70/10/20 split); candidate pool, schedule, diversity and duplicate distance
are ours (README, "Mining").
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from pd_assets import thresholds as T


class MiningResource(dg.ConfigurableResource):
    pool_multiple: float = Field(default=20.0, ge=1.0, description="candidates scored = this x the selection size")
    num_selected: int | None = Field(
        default=None, ge=1, description="selected candidates; None = one round (shards x samples_per_shard)")
    hardest_fraction_schedule: list[float] = Field(
        default=[0.3, 0.1],
        description="per mined round (r0, r1, ...): the hardest fraction of the pool the hard picks come "
                    "from; later rounds keep the last entry")
    diversity_share: float = Field(default=0.2, ge=0.0, lt=1.0,
                                   description="share of the selection drawn uniformly from the pool")
    duplicate_distance_deg: float = Field(
        default=T.MINING_DUPLICATE_DISTANCE_DEG, ge=0.0,
        description="skip a candidate whose pose is within this mean joint angle of a selected one (0 = off)")
    spearman_min: float = Field(default=T.MINING_SPEARMAN_MIN, ge=-1.0, le=1.0,
                                description="warning check: held-out Spearman of the predictor")
    num_leaves: int = Field(default=31, ge=2)
    learning_rate: float = Field(default=0.05, gt=0.0)
    max_depth: int = Field(default=8, ge=-1)
    num_boost_round: int = Field(default=1000, ge=1)
    early_stopping_rounds: int = Field(default=50, ge=1)
    min_data_in_leaf: int = Field(default=20, ge=1)
    split: list[float] = Field(default=[0.7, 0.1, 0.2], description="train, validation, test fractions")
    num_threads: int = Field(default=1, ge=1, description="LightGBM threads (1: CPUs here are shared)")
    candidate_batch_size: int = Field(default=64, ge=1, description="candidates posed per body-model call")

    def predictor_settings(self):
        from pd_assets.mining.predictor import PredictorSettings

        if len(self.split) != 3:
            raise ValueError(f"mining.split={self.split!r}: need three fractions (train, validation, test)")
        return PredictorSettings(
            num_leaves=self.num_leaves, learning_rate=self.learning_rate, max_depth=self.max_depth,
            num_boost_round=self.num_boost_round, early_stopping_rounds=self.early_stopping_rounds,
            min_data_in_leaf=self.min_data_in_leaf, split=tuple(self.split), num_threads=self.num_threads,
        )

"""Which body model the pose pool uses: anny (free, default) or SMPL-X (licensed, opt-in)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class BodyModelResource(dg.ConfigurableResource):
    kind: str = Field(default="anny", description="anny (default, Apache-2.0/CC0) | smplx (licensed files)")
    model_path: str | None = Field(
        default=None, description="SMPL-X: folder holding SMPLX_NEUTRAL.npz (your licensed copy)"
    )
    gender: str = Field(default="neutral", description="SMPL-X gender: neutral | male | female")
    num_betas: int = Field(default=10, ge=1, le=300)

    def load(self, device: str = "cpu"):
        from pd_assets.poses.body_models import load_body_model

        return load_body_model(
            self.kind, model_path=self.model_path, device=device,
            gender=self.gender, num_betas=self.num_betas,
        )

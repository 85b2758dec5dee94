"""Which body model the pose pool uses: anny (free, default) or SMPL-X (licensed, opt-in)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, field_validator

from pd_assets.poses.body_models import BODY_MODEL_KINDS


class BodyModelResource(dg.ConfigurableResource):
    kind: str = Field(default="anny", description="anny (default, Apache-2.0/CC0) | smplx (licensed files)")
    model_path: str | None = Field(
        default=None, description="SMPL-X: folder holding SMPLX_NEUTRAL.npz (your licensed copy)"
    )
    gender: str = Field(default="neutral", description="SMPL-X gender: neutral | male | female")
    num_betas: int = Field(default=10, ge=1, le=300)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if isinstance(kind, dg.EnvVar):  # resolved at launch, not here
            return kind
        kind = kind.strip().lower()
        if kind not in BODY_MODEL_KINDS:
            raise ValueError(f"body model {kind!r} (PD_BODY_MODEL / body_model.kind) is not one of "
                             f"{', '.join(BODY_MODEL_KINDS)}")
        return kind

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Fail when the step starts, before any work, if the licensed SMPL-X file is missing."""
        if self.kind == "smplx":
            from pd_assets.poses.smplx_body import resolve_smplx_file

            resolve_smplx_file(self.model_path, self.gender)

    def load(self, device: str = "cpu"):
        from pd_assets.poses.body_models import load_body_model

        return load_body_model(
            self.kind, model_path=self.model_path, device=device,
            gender=self.gender, num_betas=self.num_betas,
        )

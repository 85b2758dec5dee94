"""How the pose pool samples bodies, cameras and prompts (stage 1 settings)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

ALL_CONTROLS = ("pncc", "depth", "normals", "parts", "skeleton", "shaded", "mask")


class PoseSamplingResource(dg.ConfigurableResource):
    samples_per_shard: int = Field(default=64, ge=1, description="samples in one round x shard partition")
    width: int = Field(default=512, ge=32, le=4096)
    height: int = Field(default=512, ge=32, le=4096)
    fov_range_deg: list[float] = Field(default=[35.0, 65.0], description="horizontal field of view range")
    focal_range_px: list[float] | None = Field(default=None, description="absolute focal range; overrides fov")
    distance_range_m: list[float] = Field(
        default=[0.5, 8.0], description="hard camera-distance bounds; framing picks the distance inside them"
    )
    elevation_range_deg: list[float] = Field(default=[-10.0, 30.0])
    azimuth_range_deg: list[float] = Field(default=[-180.0, 180.0])
    roll_range_deg: list[float] = Field(default=[-5.0, 5.0])
    framing_weights: dict[str, float] = Field(default={"full": 0.7, "partial": 0.2, "closeup": 0.1})
    family_weights: dict[str, float] | None = Field(
        default=None, description="pose family weights; None = the sampler's defaults"
    )
    pose_source: str = Field(default="procedural", description="procedural | amass | fits")
    pose_source_paths: list[str] = Field(
        default=[], description="AMASS .npz files/folders (amass) or per-image fit folders (fits)"
    )
    frames_per_sequence: int = Field(default=15, ge=1, description="AMASS frames sampled per sequence")
    prompt_bank_path: str | None = Field(default=None, description="YAML/JSON prompt bank; None = packaged")
    prompt_view: bool = Field(
        default=False, description="prompts state the body's view from the label ('facing the camera', "
                                   "'seen from the side', 'seen from behind'), for text encoders that know "
                                   "those words; false: the bank's prompt alone")
    hair: bool = Field(
        default=True, description="the shaded map (and the render backend's images) draw hair on the back "
                                  "of the head and the crown, the cue that tells a back view from a front "
                                  "view; false: bald heads, as before hair existed")
    controls: list[str] = Field(default=list(ALL_CONTROLS), description=f"subset of {ALL_CONTROLS}")
    draw_from_mined: bool = Field(
        default=True, description="rounds r1+ draw poses, shapes and cameras from mined_hard_set[r-1] "
                                  "(false: every round samples from pose_source at random)")

    def validated_controls(self) -> tuple[str, ...]:
        unknown = sorted(set(self.controls) - set(ALL_CONTROLS))
        if unknown:
            raise ValueError(
                f"pose_sampling.controls has unknown control(s) {unknown}: choose from {list(ALL_CONTROLS)}"
            )
        # the mask is always written: filtering scores silhouettes against it
        return tuple(c for c in ALL_CONTROLS if c in self.controls or c == "mask")

"""Which 2D keypoint detector scores the generated images, and its calibration.

`mediapipe` (default): Pose Landmarker BlazePose-full from the `.task` bundle that
`make setup` builds (`python -m pd_assets.curation.mediapipe_task`), or any official
`pose_landmarker_full.task`. `vitpose`: transformers ViTPose from a local folder or a
hub id (`HF_HUB_OFFLINE` respected).

Environment (read by `for_profile` only): `PD_POSE_TASK` overrides the mediapipe task
path; `PD_KEYPOINT_MODEL` selects ViTPose under the gpu profile.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import re
from pathlib import Path

import dagster as dg
from pydantic import Field

from resources.paths import models_dir

BACKENDS = ("mediapipe", "vitpose")
_CACHE: dict[tuple, object] = {}
log = logging.getLogger(__name__)


def default_task_path() -> Path:
    return models_dir() / "pose_landmarker_full.task"


def _close_all() -> None:
    for detector in _CACHE.values():
        detector.close()
    _CACHE.clear()


atexit.register(_close_all)


class KeypointDetectorResource(dg.ConfigurableResource):
    """2D keypoints (COCO-17), confidences, person count and person masks per image."""

    backend: str = Field(default="mediapipe", description="mediapipe | vitpose")
    task_path: str | None = Field(
        default=None, description="mediapipe .task bundle (default: models_dir()/pose_landmarker_full.task)"
    )
    model: str | None = Field(default=None, description="vitpose: local folder or hub id")
    num_poses: int = Field(default=5, ge=1, le=20, description="mediapipe: most people detected per image")
    min_detection_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    min_presence_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    mask_threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="person mask = probability > this")
    device: str = Field(default="cpu", description="vitpose: torch device")
    batch_size: int = Field(default=16, ge=1, description="vitpose: images per forward pass")
    calibration: str = Field(
        default="auto",
        description="auto (the calibration file next to the model, if present) | none | a JSON path",
    )

    def _key(self) -> tuple:
        return (self.backend, self.resolved_model(), self.num_poses, self.min_detection_confidence,
                self.min_presence_confidence, self.mask_threshold, self.device, self.batch_size)

    def resolved_model(self) -> str:
        if self.backend == "mediapipe":
            return str(Path(self.task_path).expanduser() if self.task_path else default_task_path())
        if self.backend == "vitpose":
            if not self.model:
                raise ValueError("keypoint_detector.backend=vitpose needs keypoint_detector.model "
                                 "(a local folder or hub id, e.g. usyd-community/vitpose-base-simple)")
            return self.model
        raise ValueError(f"keypoint_detector.backend={self.backend!r} is not one of {', '.join(BACKENDS)}")

    def build(self):
        """The detector for this configuration, built once per process and reused."""
        key = self._key()
        if key not in _CACHE:
            from pd_assets.curation.detectors import MediapipeDetector, VitPoseDetector

            if self.backend == "mediapipe":
                _CACHE[key] = MediapipeDetector(
                    self.resolved_model(), num_poses=self.num_poses,
                    min_detection_confidence=self.min_detection_confidence,
                    min_presence_confidence=self.min_presence_confidence,
                    mask_threshold=self.mask_threshold,
                )
            else:
                _CACHE[key] = VitPoseDetector(self.resolved_model(), device=self.device,
                                              batch_size=self.batch_size)
        return _CACHE[key]

    def calibration_path(self) -> Path | None:
        """Where a calibration fitted here for this detector goes (and is read first);
        None when disabled."""
        mode = self.calibration.strip()
        if mode.lower() == "none":
            return None
        if mode.lower() != "auto":
            return Path(mode).expanduser()
        if self.backend == "mediapipe":
            return Path(self.resolved_model()).with_suffix(".calibration.json")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.resolved_model()).strip("_")[-60:]
        digest = hashlib.sha1(self.resolved_model().encode()).hexdigest()[:8]
        return models_dir() / f"vitpose-{slug}-{digest}.calibration.json"

    def load_calibration(self):
        """The `Calibration` to apply, or None (see `resolve_calibration`)."""
        return self.resolve_calibration()[0]

    def resolve_calibration(self):
        """(the `Calibration` to apply or None, what to record about it).

        `auto`: a calibration fitted here (`calibration_path()`), else the one shipped with
        the package for this exact model file (matched by its sha256), else none, with a
        warning: the run then scores uncalibrated. A configured path must exist. The
        second item is the calibration's source, or `none (<why>)`.
        """
        from pd_assets.curation.calibration import Calibration, packaged_calibration_path

        path = self.calibration_path()
        if path is None:
            return None, "none (keypoint_detector.calibration=none)"
        if path.is_file():
            cal = Calibration.load(path)
            return cal, cal.source or str(path)
        if self.calibration.strip().lower() != "auto":
            raise FileNotFoundError(
                f"keypoint calibration not found at {path}: create it with "
                "`python -m pd_assets.curation.calibrate` or set keypoint_detector.calibration=auto|none"
            )
        model_sha = self.build().provenance().get("model_sha256") or ""
        if not model_sha:
            why = (f"no calibration fitted here at {path}, and the {self.backend} model "
                   f"{self.resolved_model()} reports no sha256 to match a packaged one")
        else:
            packaged = packaged_calibration_path(self.backend, model_sha)
            if packaged.is_file():
                cal = Calibration.load(packaged)
                return cal, cal.source or str(packaged)
            why = (f"no calibration fitted here at {path}, and none packaged for this {self.backend} "
                   f"model (sha256 {model_sha[:16]}...; packaged: {_packaged_names(packaged.parent)})")
        log.warning(f"keypoint detector runs uncalibrated: {why}. Fit one with "
                    "`python -m pd_assets.curation.calibrate`, or set keypoint_detector.calibration=none "
                    "to silence this")
        return None, f"none ({why})"

    @classmethod
    def for_profile(cls, profile: str) -> KeypointDetectorResource:
        """local / ci / gpu: mediapipe with the built task; gpu uses ViTPose when
        `PD_KEYPOINT_MODEL` names one (a local folder or hub id)."""
        if profile not in ("local", "ci", "gpu"):
            raise ValueError(f"profile {profile!r} is not one of local, ci, gpu")
        task = os.environ.get("PD_POSE_TASK") or None
        if profile == "gpu" and os.environ.get("PD_KEYPOINT_MODEL"):
            return cls(backend="vitpose", model=os.environ["PD_KEYPOINT_MODEL"], device="cuda", batch_size=32)
        return cls(backend="mediapipe", task_path=task, num_poses=5)


def _packaged_names(folder: Path) -> str:
    names = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    return ", ".join(names) or "none"

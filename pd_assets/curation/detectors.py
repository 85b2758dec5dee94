"""2D keypoint detectors that return COCO-17 keypoints, confidences and person masks.

Two backends behind one small interface (`detect(images, boxes=None)`, `close()`,
`provenance()`):

* `MediapipeDetector`: mediapipe Pose Landmarker, BlazePose-full (33 landmarks mapped
  to COCO-17), up to `num_poses` people per image, one segmentation mask per person.
  The `.task` bundle comes from `python -m pd_assets.curation.mediapipe_task`.
* `VitPoseDetector`: transformers' ViTPose (top-down COCO-17 heatmaps). It has no
  person detector and no mask: it scores the box it is given (the label's bbox, or
  the whole image), so crowding and silhouette IoU are not measured with it.

Images are (H, W, 3) uint8 RGB arrays. Keypoints are float pixel coordinates with the
OpenCV convention (the centre of the top-left pixel is (0, 0)).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pd_assets.curation.native_logs import quiet_native_notices
from pd_assets.hub import hub_offline
from pd_assets.storage import file_sha256

# BlazePose landmark index of each COCO-17 keypoint (environment.md).
BLAZEPOSE_TO_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


class DetectorError(RuntimeError):
    """A detector cannot be built or run; the message names the input and the fix."""


@dataclass
class Detection:
    """What a detector saw in one image (P = number of people found)."""

    keypoints: np.ndarray          # (P, 17, 2) float64, pixels
    confidence: np.ndarray         # (P, 17) float64 in [0, 1]
    presence: np.ndarray           # (P,) float64 in [0, 1], the person-level score
    masks: np.ndarray | None       # (P, H, W) bool, one per person; None if the backend has none
    image_size: tuple[int, int]    # (H, W)

    @property
    def person_count(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def person_mask(self) -> np.ndarray | None:
        """Union of the per-person masks (H, W) bool; None if the backend has no masks."""
        if self.masks is None:
            return None
        if self.person_count == 0:
            return np.zeros(self.image_size, dtype=bool)
        return self.masks.any(axis=0)

    @classmethod
    def empty(cls, image_size: tuple[int, int], with_masks: bool = True) -> Detection:
        h, w = image_size
        return cls(np.zeros((0, 17, 2)), np.zeros((0, 17)), np.zeros(0),
                   np.zeros((0, h, w), dtype=bool) if with_masks else None, (h, w))


def _check_image(i: int, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DetectorError(
            f"image {i} has shape {image.shape} dtype {image.dtype}: pass (H, W, 3) uint8 RGB"
        )
    return np.ascontiguousarray(image)


class MediapipeDetector:
    """mediapipe Pose Landmarker (BlazePose-full); one landmarker per instance, CPU."""

    backend = "mediapipe"

    def __init__(self, task_path: str | os.PathLike, num_poses: int = 5,
                 min_detection_confidence: float = 0.5, min_presence_confidence: float = 0.5,
                 mask_threshold: float = 0.5):
        self.task_path = Path(task_path).expanduser()
        if not self.task_path.is_file():
            raise DetectorError(
                f"mediapipe Pose Landmarker task not found at {self.task_path}: run `make setup` "
                "(or `python -m pd_assets.curation.mediapipe_task`) to build it, or set "
                "keypoint_detector.task_path to an official pose_landmarker_full.task"
            )
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        self.num_poses = int(num_poses)
        self.mask_threshold = float(mask_threshold)
        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.task_path)),
            running_mode=vision.RunningMode.IMAGE,
            num_poses=self.num_poses,
            min_pose_detection_confidence=float(min_detection_confidence),
            min_pose_presence_confidence=float(min_presence_confidence),
            output_segmentation_masks=True,
        )
        try:
            with quiet_native_notices():
                self._landmarker = vision.PoseLandmarker.create_from_options(options)
        except Exception as exc:  # mediapipe raises RuntimeError/ValueError with its own text
            raise DetectorError(
                f"mediapipe could not load {self.task_path} ({exc}): rebuild it with "
                "`python -m pd_assets.curation.mediapipe_task --force`"
            ) from exc
        self._sha256: str | None = None

    def detect(self, images: list[np.ndarray], boxes=None) -> list[Detection]:
        """Detect people in each image; `boxes` is ignored (the landmarker finds its own)."""
        with quiet_native_notices():
            return [self._detect_one(_check_image(i, im)) for i, im in enumerate(images)]

    def _detect_one(self, image: np.ndarray) -> Detection:
        h, w = image.shape[:2]
        mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=image)
        result = self._landmarker.detect(mp_image)
        people = result.pose_landmarks or []
        if not people:
            return Detection.empty((h, w))
        idx = list(BLAZEPOSE_TO_COCO17)
        kps, conf, pres = [], [], []
        for landmarks in people:
            arr = np.array([(lm.x, lm.y, lm.visibility or 0.0, lm.presence or 0.0)
                            for lm in landmarks], dtype=np.float64)[idx]
            # normalised [0, 1] image coordinates -> OpenCV pixel centres
            kps.append(np.stack([arr[:, 0] * w - 0.5, arr[:, 1] * h - 0.5], axis=1))
            conf.append(np.clip(arr[:, 2], 0.0, 1.0))
            pres.append(float(np.clip(arr[:, 3], 0.0, 1.0).mean()))
        masks = np.zeros((len(people), h, w), dtype=bool)
        for p, m in enumerate((result.segmentation_masks or [])[: len(people)]):
            view = np.asarray(m.numpy_view())
            masks[p] = (view[..., 0] if view.ndim == 3 else view) > self.mask_threshold
        return Detection(np.stack(kps), np.stack(conf), np.asarray(pres), masks, (h, w))

    def provenance(self) -> dict:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.task_path)
        return {"backend": self.backend, "model": str(self.task_path), "model_sha256": self._sha256,
                "num_poses": self.num_poses}

    def close(self) -> None:
        if getattr(self, "_landmarker", None) is not None:
            with quiet_native_notices():
                self._landmarker.close()
            self._landmarker = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VitPoseDetector:
    """transformers ViTPose (COCO-17), top-down on a given box per image; batched."""

    backend = "vitpose"

    def __init__(self, model: str, device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 16):
        import torch
        from transformers import VitPoseForPoseEstimation
        from transformers.models.vitpose.image_processing_pil_vitpose import VitPoseImageProcessorPil

        self.model_id = str(model)
        offline = hub_offline()
        try:
            self._processor = VitPoseImageProcessorPil.from_pretrained(self.model_id, local_files_only=offline)
            self._model = VitPoseForPoseEstimation.from_pretrained(
                self.model_id, local_files_only=offline, dtype=getattr(torch, dtype),
            ).to(device).eval()
        except (OSError, ValueError) as exc:
            raise DetectorError(
                f"could not load the ViTPose model {self.model_id!r} ({exc}): give a local folder "
                "saved with save_pretrained (config.json, model.safetensors, "
                "preprocessor_config.json) or a hub id reachable from this machine, or use "
                "keypoint_detector.backend=mediapipe"
            ) from exc
        if int(self._model.config.num_labels) != 17:
            raise DetectorError(
                f"ViTPose model {self.model_id!r} predicts {self._model.config.num_labels} keypoints, "
                "not COCO-17: use a COCO-17 checkpoint (num_labels=17)"
            )
        self._torch = torch
        self.device = device
        self.batch_size = int(batch_size)
        self._experts = int(getattr(self._model.config.backbone_config, "num_experts", 1) or 1)

    def detect(self, images: list[np.ndarray], boxes=None) -> list[Detection]:
        """`boxes`: per image an (x0, y0, x1, y1) person box or None (= the whole image)."""
        images = [_check_image(i, im) for i, im in enumerate(images)]
        boxes = list(boxes) if boxes is not None else [None] * len(images)
        if len(boxes) != len(images):
            raise DetectorError(f"got {len(boxes)} boxes for {len(images)} images: pass one per image")
        out: list[Detection] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            xywh = [[self._xywh(b, im.shape)] for b, im in zip(boxes[start:start + self.batch_size], chunk)]
            inputs = self._processor(chunk, boxes=xywh, return_tensors="pt")
            kwargs = {"pixel_values": inputs["pixel_values"].to(self.device, self._model.dtype)}
            if self._experts > 1:  # ViTPose+ mixture of experts: expert 0 is COCO
                kwargs["dataset_index"] = self._torch.zeros(len(chunk), dtype=self._torch.long, device=self.device)
            with self._torch.no_grad():
                outputs = self._model(**kwargs)
            outputs.heatmaps = outputs.heatmaps.float()
            results = self._processor.post_process_pose_estimation(outputs, boxes=xywh)
            for im, res in zip(chunk, results):
                kp = res[0]["keypoints"].numpy().astype(np.float64)[None]
                sc = np.clip(res[0]["scores"].numpy().astype(np.float64), 0.0, 1.0)[None]
                # one person per box; its presence is the mean keypoint score
                out.append(Detection(kp, sc, np.array([float(sc.mean())]), None, im.shape[:2]))
        return out

    @staticmethod
    def _xywh(box, shape) -> list[float]:
        h, w = shape[:2]
        if box is None:
            return [0.0, 0.0, float(w), float(h)]
        x0, y0, x1, y1 = (float(v) for v in box)
        return [x0, y0, max(x1 - x0, 1.0), max(y1 - y0, 1.0)]

    def provenance(self) -> dict:
        return {"backend": self.backend, "model": self.model_id,
                "model_sha256": getattr(self._model.config, "_commit_hash", None) or ""}

    def close(self) -> None:
        self._model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

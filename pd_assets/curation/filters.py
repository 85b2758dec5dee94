"""The method's multi-stage filter as one pure function over (label, image, detection).

Stages, in order (method.md stage 6, plus our image-quality stage):

1. `crowding`       no person, or more than `max_people` people -> reject
2. `pose_alignment` OKS >= `oks_min`, every confidently detected labelled-visible keypoint
                    within `keypoint_similarity_min` (COCO per-keypoint similarity), and
                    silhouette IoU >= `mask_iou_min`
3. `head_pose`      head yaw / pitch / roll within `head_pose_max_deg` of the label
4. `image_quality`  sharpness, exposure clipping, detector presence within bounds

Stage `readable` comes first: the sample's inputs are broken. Its checks are
`generation` (raw_generations recorded that it made no image, e.g. a missing control
map), `provenance` (no provenance row, or the image's sha256 is not the recorded one: it
may be another run's image), `unreadable` (a corrupt or missing image), `label_mask` (a
missing or corrupt label mask, which would otherwise skip the silhouette test, or a mask
path that leaves the partition) and `label_control` (the pncc map the shard ships is
missing, unreadable, or its path leaves the partition).

Only genuine detections count: a detected "person" with too few keypoints inside the
image (`scores.is_genuine_person`; fewer than `min_keypoints_inside`, or for a label
that is itself partly out of frame `min_inside_fraction_of_label` of its in-image
keypoints) is a hallucination: it is neither matched nor counted toward crowding, and
`hallucinated_people` records how many were dropped.

Every score is computed for every sample whatever fails first, so the index can be
re-thresholded later without re-running the detector; `reject_stage` / `reject_reason`
name the first failure and `failed_checks` lists all of them. Not-measurable scores are
None (null in parquet): IoU without a detector mask (ViTPose) or label mask, head pose
with fewer than 3 usable face keypoints; a None score never rejects (a missing label
mask rejects at `readable` instead). A score that was computed but is not finite (NaN or
inf, e.g. from NaN label keypoints) rejects at its stage with check `non_finite`: no
comparison with a threshold can reject a NaN, so it must never reach one silently.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from pd_assets import thresholds as T
from pd_assets.curation import scores
from pd_assets.curation.calibration import Calibration
from pd_assets.curation.detectors import Detection
from pd_assets.curation.inputs import LabelView, jsonable

STAGES = ("readable", "crowding", "pose_alignment", "head_pose", "image_quality")
# the scores that gate a stage: a non-finite value rejects there (check `non_finite`)
GATING_SCORES = {"oks": "pose_alignment", "min_keypoint_similarity": "pose_alignment",
                 "mask_iou": "pose_alignment", "head_yaw_err_deg": "head_pose",
                 "head_pitch_err_deg": "head_pose", "head_roll_err_deg": "head_pose",
                 "sharpness": "image_quality", "clipped_dark": "image_quality",
                 "clipped_bright": "image_quality", "presence": "image_quality"}


@dataclass(frozen=True)
class FilterThresholds:
    """Every threshold the filter applies; defaults from `pd_assets.thresholds`."""

    min_people: int = T.MIN_PEOPLE
    max_people: int = T.MAX_PEOPLE
    oks_min: float = T.OKS_MIN
    keypoint_similarity_min: float = T.KEYPOINT_SIMILARITY_MIN
    min_keypoints_inside: int = T.MIN_KEYPOINTS_INSIDE
    min_inside_fraction_of_label: float = T.MIN_INSIDE_FRACTION_OF_LABEL
    mask_iou_min: float = T.MASK_IOU_MIN
    head_pose_max_deg: float = T.HEAD_POSE_MAX_DEG
    sharpness_min: float = T.SHARPNESS_MIN
    exposure_clipped_max: float = T.EXPOSURE_CLIPPED_MAX
    presence_min: float = T.PRESENCE_MIN
    keypoint_conf_min: float = T.KEYPOINT_CONF_MIN
    pck_alpha: float = T.PCK_ALPHA

    def as_dict(self) -> dict:
        return asdict(self)


def difficulty_bin(oks_value: float | None) -> str | None:
    """The method's difficulty bins by OKS (method.md stage 5)."""
    if oks_value is None or not math.isfinite(oks_value):
        return None
    for lower, name in T.DIFFICULTY_BINS:
        if oks_value >= lower:
            return name
    return None


def _nan_record(sample_id: str) -> dict:
    return {
        "sample_id": sample_id, "person_count": None, "hallucinated_people": None, "matched_person": None,
        "presence": None, "min_keypoint_similarity": None, "num_confident_keypoints": None,
        "oks": None, "oks_uncalibrated": None, "mask_iou": None, "pck": None,
        "mean_joint_error_px": None, "max_joint_error_px": None, "joint_errors_px": None,
        "head_yaw_err_deg": None, "head_pitch_err_deg": None, "head_roll_err_deg": None,
        "head_angle_err_deg": None, "sharpness": None, "clipped_dark": None, "clipped_bright": None,
        "num_visible_keypoints": None, "det_keypoints2d": None, "det_keypoints2d_calibrated": None,
        "det_confidence": None, "difficulty_bin": None,
    }


def score_sample(label: LabelView, image: np.ndarray | None, detection: Detection | None,
                 label_mask: np.ndarray | None = None, calibration: Calibration | None = None,
                 thresholds: FilterThresholds | None = None, image_error: str | None = None,
                 provenance_error: str | None = None, label_mask_error: str | None = None,
                 generation_error: str | None = None, control_error: str | None = None) -> dict:
    """One index row: every score, `kept`, `reject_stage`, `reject_reason`, `failed_checks`.

    `provenance_error` / `label_mask_error` / `generation_error` / `control_error`: why the
    image is not the recorded one / why the label mask could not be read / why
    raw_generations made no image / why a control map the shard ships (pncc) could not be
    read (`inputs.provenance_error`, `inputs.load_mask`, `inputs.generation_error`,
    `inputs.read_label_control`); each rejects the sample at stage `readable`, after it
    has been scored."""
    th = thresholds or FilterThresholds()
    rec = _nan_record(label.sample_id)
    rec["num_visible_keypoints"] = int(label.visible.sum())
    failures: list[tuple[str, str, str]] = []
    if generation_error:
        failures.append(("readable", "generation", generation_error))
    if provenance_error:
        failures.append(("readable", "provenance", provenance_error))
    if image is None or detection is None:
        failures.append(("readable", "unreadable", image_error or "unreadable image: no image"))
    if label_mask_error:
        failures.append(("readable", "label_mask", label_mask_error))
    if control_error:
        failures.append(("readable", "label_control", control_error))
    if image is None or detection is None:
        return _finish(rec, failures)

    grey = scores.grey(image)
    rec["sharpness"] = scores.sharpness(grey)
    rec["clipped_dark"], rec["clipped_bright"] = scores.exposure_clipping(grey, T.CLIP_LOW_LEVEL, T.CLIP_HIGH_LEVEL)
    detection, rec["hallucinated_people"] = genuine_people(detection, label, th)
    rec["person_count"] = detection.person_count

    if detection.person_count < th.min_people:
        failures.append(("crowding", "no_person", "no person detected"))
    elif detection.person_count > th.max_people:
        failures.append(("crowding", "crowded",
                         f"{detection.person_count} people detected (max {th.max_people})"))

    if detection.person_count > 0:
        _score_person(rec, label, detection, label_mask, calibration, th)

    oks_v, iou = rec["oks"], rec["mask_iou"]
    if detection.person_count > 0 and oks_v is None:
        failures.append(("pose_alignment", "no_visible_keypoints", "label has no visible keypoint to score"))
    elif oks_v is not None and oks_v < th.oks_min:
        failures.append(("pose_alignment", "oks", f"OKS {oks_v:.3f} < {th.oks_min}"))
    worst = rec["min_keypoint_similarity"]
    if worst is not None and worst < th.keypoint_similarity_min:
        failures.append(("pose_alignment", "keypoint",
                         f"a confidently detected keypoint is off (similarity {worst:.3f} < "
                         f"{th.keypoint_similarity_min})"))
    if iou is not None and iou < th.mask_iou_min:
        failures.append(("pose_alignment", "mask_iou", f"silhouette IoU {iou:.3f} < {th.mask_iou_min}"))

    head = {k: rec[f"head_{k}_err_deg"] for k in ("yaw", "pitch", "roll")}
    if all(v is not None for v in head.values()):
        axis, worst = max(head.items(), key=lambda kv: abs(kv[1]))
        if abs(worst) > th.head_pose_max_deg:
            failures.append(("head_pose", "head_pose",
                             f"head {axis} differs by {abs(worst):.1f} deg (max {th.head_pose_max_deg:g})"))

    if rec["sharpness"] < th.sharpness_min:
        failures.append(("image_quality", "sharpness", f"sharpness {rec['sharpness']:.1f} < {th.sharpness_min:g}"))
    clipped = max(rec["clipped_dark"], rec["clipped_bright"])
    if clipped > th.exposure_clipped_max:
        side = "dark" if rec["clipped_dark"] >= rec["clipped_bright"] else "bright"
        failures.append(("image_quality", "exposure",
                         f"{clipped:.0%} of pixels clipped {side} (max {th.exposure_clipped_max:.0%})"))
    if rec["presence"] is not None and rec["presence"] < th.presence_min:
        failures.append(("image_quality", "presence",
                         f"detector presence {rec['presence']:.2f} < {th.presence_min}"))
    for name, stage in GATING_SCORES.items():
        value = rec[name]
        if value is not None and not math.isfinite(value):
            failures.append((stage, "non_finite", f"{name} is {value} (not a finite number): the label or the "
                                                  "image holds NaN/inf values; re-materialise the partition"))
    return _finish(rec, failures)


def _score_person(rec: dict, label: LabelView, det: Detection, label_mask, calibration, th) -> None:
    raw = det.keypoints
    cal = calibration.apply(raw) if calibration is not None else raw
    oks_cal = scores.oks_per_person(cal, label.keypoints2d, label.visible, label.area)
    oks_raw = scores.oks_per_person(raw, label.keypoints2d, label.visible, label.area)
    # the detected person who best matches the label (highest presence if OKS undefined)
    p = int(np.nanargmax(oks_cal)) if np.isfinite(oks_cal).any() else int(np.argmax(det.presence))
    kp, conf = cal[p], det.confidence[p]
    rec.update(matched_person=p, presence=float(det.presence[p]),
               oks=float(oks_cal[p]), oks_uncalibrated=float(oks_raw[p]),
               det_keypoints2d=raw[p].reshape(-1), det_keypoints2d_calibrated=kp.reshape(-1),
               det_confidence=conf)
    errors = scores.joint_errors(kp, label.keypoints2d, label.visible)
    rec["joint_errors_px"] = errors
    if np.isfinite(errors).any():
        rec["mean_joint_error_px"] = float(np.nanmean(errors))
        rec["max_joint_error_px"] = float(np.nanmax(errors))
    rec["pck"] = scores.pck(kp, label.keypoints2d, label.visible, th.pck_alpha * math.sqrt(max(label.area, 0.0)),
                            confidence=conf, min_confidence=th.keypoint_conf_min)
    if det.masks is not None and label_mask is not None and label_mask.shape == det.masks.shape[1:]:
        rec["mask_iou"] = scores.mask_iou(det.masks[p], label_mask)
    # head pose: the raw detected face keypoints against the label's 3D face, moved to the
    # detector's face-keypoint convention when calibrated
    face = list(scores.FACE)
    usable = label.visible[face] & (conf[face] >= th.keypoint_conf_min)
    face3d = label.keypoints3d_cam[face]
    if calibration is not None:
        face3d = calibration.face_model(face3d)
    head = scores.head_orientation_error(raw[p][face], face3d, label.K, usable)
    if usable.sum() < 3:  # not measurable (documented as None), unlike a NaN from bad inputs
        head = dict.fromkeys(head)
    rec.update(head)
    confident = label.visible & (conf >= th.keypoint_conf_min)
    rec["num_confident_keypoints"] = int(confident.sum())
    if confident.any():
        sim = scores.keypoint_similarity(kp, label.keypoints2d, label.area)
        rec["min_keypoint_similarity"] = float(sim[confident].min())


def required_inside(label: LabelView, th: FilterThresholds) -> int:
    """How many of a detection's keypoints must lie inside the image for it to be a person:
    `min_keypoints_inside`, or fewer when the label itself is partly out of frame."""
    label_inside = int(scores.keypoints_inside(label.keypoints2d, label.width, label.height).sum())
    return min(int(th.min_keypoints_inside), max(1, math.ceil(th.min_inside_fraction_of_label * label_inside)))


def genuine_people(det: Detection, label: LabelView, th: FilterThresholds) -> tuple[Detection, int]:
    """The detection without its hallucinated "people", and how many were dropped."""
    if det.person_count == 0:
        return det, 0
    h, w = det.image_size
    keep = np.atleast_1d(scores.is_genuine_person(det.keypoints, w, h, required_inside(label, th)))
    if keep.all():
        return det, 0
    masks = det.masks[keep] if det.masks is not None else None
    return Detection(det.keypoints[keep], det.confidence[keep], det.presence[keep], masks, det.image_size), \
        int((~keep).sum())


def _finish(rec: dict, failures: list[tuple[str, str, str]]) -> dict:
    rec = jsonable(rec)  # NaN -> None, arrays -> lists
    order = {s: i for i, s in enumerate(STAGES)}
    failures = sorted(failures, key=lambda f: order[f[0]])  # stable: keeps order within a stage
    rec["kept"] = not failures
    rec["reject_stage"] = failures[0][0] if failures else None
    rec["reject_reason"] = failures[0][2] if failures else None
    rec["failed_checks"] = [f[1] for f in failures]
    rec["difficulty_bin"] = difficulty_bin(rec["oks"])
    return rec

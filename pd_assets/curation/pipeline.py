"""One partition of curation as a pure function: score every sample, shard the kept ones.

`curate_partition` reads the pose_pool labels and controls and the raw_generations
images of one round x shard, runs the detector in batches, scores every sample with the
multi-stage filter, streams the kept samples into a WebDataset tar and returns the index
rows and preview tiles. The caller (the Dagster asset) stages the output directory and
first checks that raw_generations is not mid-run (`inputs.check_generation_complete`);
each image is then hashed as it is read and compared with its provenance row, so a
sample is never shipped with another run's provenance.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from pd_assets.curation.calibration import Calibration
from pd_assets.curation.filters import FilterThresholds, score_sample
from pd_assets.curation.inputs import (
    LabelView, dumps, encode_jpeg, generation_error, label_file, load_mask, provenance_error, read_image_file,
    read_label_control,
)
from pd_assets.curation.previews import sample_tile
from pd_assets.curation.shards import ShardWriter
from pd_assets.safe_io import store_path
from pd_assets.skeleton import COCO17_KEYPOINTS, SMPL_JOINTS

# label columns copied into every index row (for catalog queries without a join)
INDEX_LABEL_COLUMNS = ("round", "shard", "index", "seed", "body_model", "pose_source", "pose_family",
                       "framing", "prompt_scene_group", "width", "height")
# index columns that describe the run rather than the sample (same value on every row)
INDEX_RUN_COLUMNS = ("calibration",)
CAMERA_CONVENTION = ("OpenCV: x right, y down, z forward; X_cam = R @ X_world + t; "
                     "K = [[fx,0,cx],[0,fy,cy],[0,0,1]]; pixel (u, v), centre of the top-left pixel = (0, 0)")


_F, _I, _S = "Float64", "Int64", "String"
INDEX_SCHEMA = {
    "sample_id": _S, "kept": "Boolean", "reject_stage": _S, "reject_reason": _S, "failed_checks": [_S],
    "person_count": _I, "hallucinated_people": _I, "matched_person": _I, "presence": _F, "oks": _F,
    "oks_uncalibrated": _F,
    "min_keypoint_similarity": _F, "num_confident_keypoints": _I,
    "mask_iou": _F, "pck": _F, "mean_joint_error_px": _F, "max_joint_error_px": _F,
    "joint_errors_px": [_F], "head_yaw_err_deg": _F, "head_pitch_err_deg": _F, "head_roll_err_deg": _F,
    "head_angle_err_deg": _F, "sharpness": _F, "clipped_dark": _F, "clipped_bright": _F,
    "num_visible_keypoints": _I, "det_keypoints2d": [_F], "det_keypoints2d_calibrated": [_F],
    "det_confidence": [_F], "difficulty_bin": _S, "round": _S, "shard": _S, "index": _I, "seed": _I,
    "body_model": _S, "pose_source": _S, "pose_family": _S, "framing": _S, "prompt_scene_group": _S,
    "width": _I, "height": _I, "calibration": _S,
}


def index_frame(records: list[dict]):
    """The index table with a fixed schema (stable across partitions, even all-null columns)."""
    import polars as pl

    def dtype(spec):
        return pl.List(getattr(pl, spec[0])) if isinstance(spec, list) else getattr(pl, spec)

    schema = {name: dtype(spec) for name, spec in INDEX_SCHEMA.items()}
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in records], schema=schema)


@dataclass
class CurationResult:
    records: list[dict]
    shard_keys: list[str]
    kept_tiles: list = field(default_factory=list)
    rejected_tiles: list = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per step; steps overlap
    wall_seconds: float = 0.0

    @property
    def num_kept(self) -> int:
        return len(self.shard_keys)


def _reshape(value, shape):
    if value is None:
        return None
    return np.asarray(value, dtype=np.float64).reshape(shape).tolist()


def label_json(row: dict, provenance: dict | None, record: dict, detector: dict, calibration: str) -> dict:
    """The `{key}.json` of a kept sample: the full label, its provenance and every score."""
    g = row.get
    consumed = {"sample_id", "round", "shard", "index", "seed", "width", "height", "body_model",
                "body_model_hash", "shape", "global_orient", "body_pose", "transl", "K", "R", "t",
                "focal_px", "distance_m", "framing", "joints3d_cam", "keypoints3d_cam", "keypoints2d",
                "keypoints_visible", "bbox_xyxy", "mask_area", "prompt", "negative_prompt",
                "prompt_scene_group", "pose_source", "pose_family"}
    return {
        "sample_id": g("sample_id"), "round": g("round"), "shard": g("shard"), "index": g("index"),
        "seed": g("seed"),
        "image": {"width": g("width"), "height": g("height"), "format": "jpg"},
        "body_model": {"name": g("body_model"), "hash": g("body_model_hash"), "shape": g("shape"),
                       "global_orient": g("global_orient"), "body_pose": _reshape(g("body_pose"), (21, 3)),
                       "transl": g("transl"), "pose_order": list(SMPL_JOINTS[1:])},
        "camera": {"K": _reshape(g("K"), (3, 3)), "R": _reshape(g("R"), (3, 3)), "t": g("t"),
                   "focal_px": g("focal_px"), "distance_m": g("distance_m"), "framing": g("framing"),
                   "convention": CAMERA_CONVENTION},
        "keypoints2d": {"names": list(COCO17_KEYPOINTS), "xy": _reshape(g("keypoints2d"), (17, 2)),
                        "visible": g("keypoints_visible")},
        "keypoints3d_cam": _reshape(g("keypoints3d_cam"), (17, 3)),
        "joints3d_cam": {"names": list(SMPL_JOINTS), "xyz": _reshape(g("joints3d_cam"), (22, 3))},
        "bbox_xyxy": g("bbox_xyxy"), "mask_area": g("mask_area"),
        "prompt": {"prompt": g("prompt"), "negative_prompt": g("negative_prompt"),
                   "scene_group": g("prompt_scene_group")},
        "pose": {"source": g("pose_source"), "family": g("pose_family")},
        "label_extra": {k: v for k, v in row.items() if k not in consumed and not k.startswith("control_")},
        "provenance": provenance,
        "scores": record,
        "detector": {**detector, "calibration": calibration},
    }


def portable_detector_info(info: dict) -> dict:
    """The detector's provenance as shipped in each sample's JSON: a local model file is
    named by its file name (its sha256 identifies it), so the shard's bytes do not depend
    on where the model cache sits on the machine that made it."""
    model = info.get("model")
    if isinstance(model, str) and Path(model).is_absolute():
        return {**info, "model": Path(model).name}
    return dict(info)


def curate_partition(
    labels: list[dict], provenance: dict[str, dict], pool_dir: Path, gen_dir: Path, detector,
    calibration: Calibration | None, thresholds: FilterThresholds, shard_path: Path,
    batch_size: int = 16, include_pncc: bool = True, jpeg_quality: int = 95,
    preview_samples: int = 6, log: Callable[[str], None] | None = None,
    calibration_status: str | None = None,
) -> CurationResult:
    """`provenance`: raw_generations' provenance rows by sample id. `calibration_status`:
    what the index and label JSON say about the calibration (default: its source, or
    "none"); say why when there is none (`KeypointDetectorResource.resolve_calibration`)."""
    rows = sorted(labels, key=lambda r: str(r["sample_id"]))
    det_info = portable_detector_info(detector.provenance())
    cal_name = calibration_status or (calibration.source if calibration is not None else "none")
    t_start = time.perf_counter()
    timings: Counter[str] = Counter()
    records, kept_tiles, rejected_tiles = [], [], []
    detector_failures = 0
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]

    def score_and_write(batch, views, loaded, masks, pnccs, detections, errors) -> None:
        t = time.perf_counter()
        for row, view, (img, err, sha), (mask, mask_err), (pncc, pncc_err), det, det_err in zip(
                batch, views, loaded, masks, pnccs, detections, errors):
            record = provenance.get(view.sample_id)
            rec = score_sample(view, img, det, mask, calibration, thresholds, image_error=err or det_err,
                               provenance_error=provenance_error(record, sha), label_mask_error=mask_err,
                               generation_error=generation_error(record),
                               control_error=pncc_err if include_pncc else None)
            rec.update({k: row.get(k) for k in INDEX_LABEL_COLUMNS}, calibration=cal_name)
            records.append(rec)
            if rec["kept"]:
                files = {"jpg": encode_jpeg(img, jpeg_quality),
                         "json": dumps(label_json(row, record, rec, det_info, cal_name))}
                if include_pncc:
                    files["pncc.png"] = pncc
                writer.add(view.sample_id, files)
            tiles = kept_tiles if rec["kept"] else rejected_tiles
            if len(tiles) < preview_samples:
                tiles.append(sample_tile(img, rec, view.keypoints2d, view.visible))
        timings["score_and_write"] += time.perf_counter() - t

    # Three overlapping steps: decoding the next batch (PIL releases the GIL), detecting
    # this one, and scoring + writing the previous one. One worker each keeps the order:
    # records and tar members follow the sorted sample ids.
    with ShardWriter(shard_path) as writer, ThreadPoolExecutor(max_workers=1) as loader, \
            ThreadPoolExecutor(max_workers=1) as scorer:
        pending = loader.submit(_load_batch, batches[0], pool_dir, gen_dir, include_pncc) if batches else None
        scored = []
        for b, batch in enumerate(batches):
            t0 = time.perf_counter()
            views, loaded, masks, pnccs = pending.result()
            if b + 1 < len(batches):
                pending = loader.submit(_load_batch, batches[b + 1], pool_dir, gen_dir, include_pncc)
            t1 = time.perf_counter()
            detections, errors = _detect(detector, [img for img, _, _ in loaded], views)
            detector_failures += sum(e is not None for e in errors)
            timings["load_wait"] += t1 - t0
            timings["detect"] += time.perf_counter() - t1
            scored.append(scorer.submit(score_and_write, batch, views, loaded, masks, pnccs, detections, errors))
            if log:
                log(f"detected {min((b + 1) * batch_size, len(rows))}/{len(rows)} samples")
        t = time.perf_counter()
        for future in scored:
            future.result()  # re-raises a scoring or writing error
        timings["score_wait"] += time.perf_counter() - t
    if rows and detector_failures == len(rows):
        raise RuntimeError(
            f"the keypoint detector failed on every image of {gen_dir} (first error in the index): "
            "check keypoint_detector's configuration and model files"
        )
    return CurationResult(records, writer.keys, kept_tiles, rejected_tiles, dict(timings),
                          time.perf_counter() - t_start)


def _load_batch(batch: list[dict], pool_dir: Path, gen_dir: Path, include_pncc: bool = True):
    """Label views, images, label masks and pncc bytes of a batch; every path a label names
    resolves inside `pool_dir` or the sample carries the reason it does not."""
    views = [LabelView.from_row(r) for r in batch]
    loaded = [read_image_file(store_path(gen_dir, "images", f"{v.sample_id}.png", what="image path"),
                              (v.width, v.height)) for v in views]
    masks = []
    for r, v in zip(batch, views):
        path, unsafe = label_file(pool_dir, r, "control_mask")
        masks.append((None, f"unreadable label mask: {unsafe}") if unsafe else load_mask(path, (v.width, v.height)))
    pnccs = [read_label_control(pool_dir, r, "control_pncc") if include_pncc else (None, None) for r in batch]
    return views, loaded, masks, pnccs


def _detect(detector, images: list, views: list[LabelView]):
    """Detections for the readable images (None elsewhere), batched; a failing batch is
    retried image by image so one bad input cannot take its neighbours down."""
    idx = [i for i, im in enumerate(images) if im is not None]
    detections: list = [None] * len(images)
    errors: list = [None] * len(images)
    if not idx:
        return detections, errors
    boxes = [views[i].bbox_xyxy for i in idx]
    try:
        for i, det in zip(idx, detector.detect([images[i] for i in idx], boxes=boxes)):
            detections[i] = det
    except Exception:  # retried one by one below, each failure recorded with its reason
        for i, box in zip(idx, boxes):
            try:
                detections[i] = detector.detect([images[i]], boxes=[box])[0]
            except Exception as exc:  # recorded as the sample's reject reason
                errors[i] = f"unreadable image: detector failed ({type(exc).__name__}: {exc})"
    return detections, errors

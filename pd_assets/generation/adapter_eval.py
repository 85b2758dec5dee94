"""How well a generator follows its control: held-out controls in, curation scores out.

The generator runs through the production path (`generate_partition`, as raw_generations
does) on a held-out pose_pool partition, and every image is scored by the curation stage
itself (`curate_partition`: the same detector, calibration, OKS and filter). A detection
counts as a *genuine* person only when at least `min_inside` of its 17 keypoints fall
inside the image: on blurry images mediapipe also returns "people" whose keypoints lie
far outside the frame, which must not count (shared/docs/environment.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pd_assets.thresholds import MIN_KEYPOINTS_INSIDE  # noqa: E402  (re-exported)


def keypoints_inside(det_keypoints2d, width: int, height: int) -> int:
    """How many of the 17 detected keypoints lie inside the image (curation's own rule)."""
    from pd_assets.curation.scores import keypoints_inside as inside

    if det_keypoints2d is None:
        return 0
    return int(inside(np.asarray(det_keypoints2d, dtype=np.float64).reshape(-1, 2), width, height).sum())


@dataclass
class AdapterEvaluation:
    num_images: int
    num_detected: int          # genuine detections (>= MIN_KEYPOINTS_INSIDE keypoints inside)
    detection_rate: float
    oks_mean: float | None     # over genuine detections
    oks_median: float | None
    oks_mean_all: float        # every image, no genuine detection = 0
    pass_rate: float           # kept by the full filter at its default thresholds
    images_per_second: float

    def as_dict(self) -> dict:
        return asdict(self)


def summarise(records: list[dict], seconds: float, min_inside: int = MIN_KEYPOINTS_INSIDE) -> AdapterEvaluation:
    n = len(records)
    genuine = []
    for r in records:
        inside = keypoints_inside(r.get("det_keypoints2d"), int(r["width"]), int(r["height"]))
        genuine.append((r.get("person_count") or 0) > 0 and inside >= min_inside and r.get("oks") is not None)
    oks = np.array([r["oks"] for r, g in zip(records, genuine) if g], dtype=np.float64)
    all_oks = np.array([r["oks"] if g else 0.0 for r, g in zip(records, genuine)], dtype=np.float64)
    return AdapterEvaluation(
        num_images=n, num_detected=int(sum(genuine)), detection_rate=float(sum(genuine) / max(n, 1)),
        oks_mean=float(oks.mean()) if oks.size else None, oks_median=float(np.median(oks)) if oks.size else None,
        oks_mean_all=float(all_oks.mean()) if n else 0.0,
        pass_rate=float(sum(bool(r["kept"]) for r in records) / max(n, 1)),
        images_per_second=float(n / seconds) if seconds > 0 else 0.0,
    )


def score_partition(pose_dir: Path, gen_dir: Path, detector, calibration, thresholds, work: Path) -> list[dict]:
    """Curation records (every score) of a generated partition, without shipping anything."""
    from pd_assets.curation.inputs import read_parquet_rows
    from pd_assets.curation.pipeline import curate_partition

    labels = read_parquet_rows(pose_dir / "labels.parquet", "pose_pool labels", "re-materialise pose_pool")
    prov = {r["sample_id"]: r for r in read_parquet_rows(gen_dir / "provenance.parquet", "provenance",
                                                         "re-generate the evaluation images")}
    work.mkdir(parents=True, exist_ok=True)
    result = curate_partition(labels, prov, pose_dir, gen_dir, detector, calibration, thresholds,
                              shard_path=work / "eval.tar", include_pncc=False)
    return result.records


def evaluate_generator(generator, pose_dir: Path, out_dir: Path, detector, calibration, thresholds, *,
                       round_name: str, shard: str, project_seed: int, log=None) -> tuple[AdapterEvaluation, list[dict]]:
    """Generate the held-out partition `pose_dir` into `out_dir` and score it."""
    from pd_assets.generation.partition import generate_partition

    report = generate_partition(generator, pose_dir, out_dir, round_name=round_name, shard=shard,
                                project_seed=project_seed, image_size=lambda w, h: (w, h), log=log)
    # images kept from an earlier run were not timed: no rate (0) rather than a made-up one
    seconds = report.generate_seconds if report.num_reused == 0 else 0.0
    records = score_partition(pose_dir, out_dir, detector, calibration, thresholds, out_dir / "_scores")
    return summarise(records, seconds), records

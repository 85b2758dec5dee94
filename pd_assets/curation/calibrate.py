"""Fit the keypoint detector's calibration on rendered ground truth (CLI).

Reads pose_pool partitions (exact labels) and, per sample, the render-backend image in
raw_generations when there is one, else the `shaded` control composited on mid-grey.
Runs the configured detector, fits `Calibration` (held-out OKS before/after included),
and writes it where `KeypointDetectorResource(calibration="auto")` looks for it::

    python -m pd_assets.curation.calibrate --root data --partition 'r0|s0000' [--partition ...]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from pd_assets.curation.calibration import Calibration, fit_calibration
from pd_assets.curation.inputs import InputError, LabelView, label_file, load_image
from pd_assets.safe_io import read_label_rows


def render_images(root: Path, round_name: str, shard: str):
    """Yield (LabelView, image) for every sample of one partition that has an image."""
    from PIL import Image

    pool = root / "pose_pool" / round_name / shard
    gen = root / "raw_generations" / round_name / shard
    rows = read_label_rows(pool, f"materialise pose_pool for {round_name}|{shard} on the render backend")
    for row in rows:
        view = LabelView.from_row(row)
        image, _ = load_image(gen / "images" / f"{view.sample_id}.png", (view.width, view.height))
        shaded, unsafe = label_file(pool, row, "control_shaded")
        if unsafe:
            raise InputError(unsafe)
        if image is None and shaded is not None:
            with Image.open(shaded) as im:
                rgba = np.asarray(im.convert("RGBA")).astype(np.float32)
            alpha = rgba[..., 3:4] / 255.0
            image = (rgba[..., :3] * alpha + 128.0 * (1 - alpha)).round().astype(np.uint8)
        if image is not None:
            yield view, image


def detect_on_renders(detector, samples, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Arrays of the best-matching detected person per sample (samples without a detection
    are skipped): pred, confidence, and the label's gt, visible, area, face3d, K."""
    from pd_assets.curation.scores import FACE, oks_per_person

    out: dict[str, list] = {k: [] for k in ("pred", "confidence", "gt", "visible", "area", "face3d", "K")}
    samples = list(samples)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        dets = detector.detect([im for _, im in chunk], boxes=[v.bbox_xyxy for v, _ in chunk])
        for (view, _), det in zip(chunk, dets):
            if det.person_count == 0 or not view.visible.any():
                continue
            p = int(np.nanargmax(oks_per_person(det.keypoints, view.keypoints2d, view.visible, view.area)))
            for key, value in (("pred", det.keypoints[p]), ("confidence", det.confidence[p]),
                               ("gt", view.keypoints2d), ("visible", view.visible), ("area", view.area),
                               ("face3d", view.keypoints3d_cam[list(FACE)]), ("K", view.K)):
                out[key].append(value)
    return {k: np.asarray(v) for k, v in out.items()}


def _samples(root: Path, partitions: list[str]) -> list:
    samples = []
    for key in partitions:
        round_name, shard = key.split("|")
        samples.extend(render_images(root, round_name, shard))
    return samples


def evaluate(detector, calibration: Calibration, root: Path, partitions: list[str]) -> dict:
    """OKS and head-angle error on (held-out) renders, before and after `calibration`."""
    from pd_assets.curation.calibration import _head_summary, _summary
    from pd_assets.curation.scores import oks
    from pd_assets.thresholds import KEYPOINT_CONF_MIN

    samples = _samples(root, partitions)
    d = detect_on_renders(detector, samples)
    n = len(d["pred"])
    before = [oks(d["pred"][i], d["gt"][i], d["visible"][i], d["area"][i]) for i in range(n)]
    after = [oks(calibration.apply(d["pred"][i]), d["gt"][i], d["visible"][i], d["area"][i]) for i in range(n)]
    usable = d["visible"][:, :5] & (d["confidence"][:, :5] >= KEYPOINT_CONF_MIN) if n else np.zeros((0, 5), bool)
    idx = np.arange(n)
    return {
        "partitions": partitions, "samples": len(samples), "detected": n,
        "oks_before": _summary(before), "oks_after": _summary(after),
        "head_err_before": _head_summary(Calibration.identity(), d["pred"], d["face3d"], d["K"], usable, idx),
        "head_err_after": _head_summary(calibration, d["pred"], d["face3d"], d["K"], usable, idx),
    }


def calibrate(detector, root: Path, partitions: list[str], source: str = "") -> Calibration:
    samples = _samples(root, partitions)
    d = detect_on_renders(detector, samples)
    cal = fit_calibration(
        d["pred"], d["gt"], d["visible"], d["area"], backend=detector.backend,
        source=source or f"renders {','.join(partitions)} ({len(samples)} samples)",
        face3d=d["face3d"], K=d["K"], confidence=d["confidence"],
    )
    cal.model_sha256 = str(detector.provenance().get("model_sha256") or "")
    cal.body_model = ",".join(sorted(_body_models(root, partitions)))
    return cal


def _body_models(root: Path, partitions: list[str]) -> set[str]:
    from pd_assets.safe_io import read_parquet_frame

    models: set[str] = set()
    for key in partitions:
        round_name, shard = key.split("|")
        labels = root / "pose_pool" / round_name / shard / "labels.parquet"
        models |= set(read_parquet_frame(labels, "pose_pool labels", f"materialise pose_pool for {key}",
                                         columns=["body_model"])["body_model"].to_list())
    return models


def main(argv: list[str] | None = None) -> int:
    from resources.keypoint_detector import KeypointDetectorResource

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("PD_DATA_ROOT", "data")))
    parser.add_argument("--partition", action="append", required=True, help="round|shard, repeatable")
    parser.add_argument("--backend", default="mediapipe")
    parser.add_argument("--task-path", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--eval-partition", action="append", default=[],
                        help="round|shard of held-out renders to report OKS before/after on, repeatable")
    parser.add_argument("--out", type=Path, default=None, help="default: where calibration=auto looks")
    parser.add_argument("--source", default="", help="a note on what the renders were (kept in the file)")
    args = parser.parse_args(argv)
    resource = KeypointDetectorResource(backend=args.backend, task_path=args.task_path, model=args.model)
    detector = resource.build()
    cal = calibrate(detector, args.root, args.partition, source=args.source)
    if args.eval_partition:
        cal.heldout = evaluate(detector, cal, args.root, args.eval_partition)
    out = args.out or resource.calibration_path()
    cal.save(out)
    print(json.dumps({"path": str(out), "n_fit": cal.n_fit, "n_eval": cal.n_eval,
                      "oks_before": cal.oks_before, "oks_after": cal.oks_after,
                      "head_err_before": cal.head_err_before, "head_err_after": cal.head_err_after,
                      "heldout": cal.heldout}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

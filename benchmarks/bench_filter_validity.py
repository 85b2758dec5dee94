"""How good is the judge: the curation filter's false rejects and false accepts.

On the render backend an image matches its own label by construction, so every
rejection of (image, own label) is a false reject, and every acceptance of (image,
corrupted label) a false accept. One command, same seeds every run:

    .venv/bin/python benchmarks/bench_filter_validity.py [--data-root DIR] [--shards 4]

1. Materialises pose_pool + raw_generations with the `local` profile (render backend,
   512 px, 64 samples a shard) through `dg.materialize`, into a temp dir (or
   `--data-root`, reused when already there): a validation set (r0|s0000..) and a
   disjoint test set (r1|s0000..; other shards, so other seeds). The shipped detector
   calibration was fitted on r3, so neither set overlaps it.
2. Runs the detector once per image (full image); only the scoring differs per label.
3. Scores every image against its own label (positive) and five corrupted labels
   (`pd_assets.curation.label_corruptions`), each reported alone: `mirror` (left/right
   swapped), `other` (another sample's label), `head` (head turned 60-90 deg, re-posed
   and re-projected), `limb` (an arm or leg swung 60-90 deg, re-posed, re-projected),
   `shift` (the label moved by 20 % of its box). A corrupted label counts as a negative
   only when it is visible in the image: some keypoint visible in either label moves by
   >= 10 % of the person scale sqrt(mask area) (the count is printed per type).
4. Prints, per set, false-reject rates on positives (overall, per pose family, per
   framing, per reject stage and check) and false-accept rates per negative type at the
   default thresholds; the trade-off over the OKS threshold; and the filter's
   throughput against bare detector inference on one partition.

Thresholds are chosen on the validation set; the README reports the test set.
`--judge method` scores with the method's thresholds as they were before issue 12 (OKS
0.85, head pose 25 deg, no worst-keypoint check, every detected "person" counted), on
today's code (so with the fix that a face the detector cannot see is not a reject).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from resources.paths import anny_cache_dir  # noqa: E402

os.environ.setdefault("ANNY_CACHE_DIR", str(anny_cache_dir()))

import numpy as np  # noqa: E402

SEED = 20261212  # corruption draws (which other sample, angles, limb, shift direction)
NEGATIVES = ("mirror", "other", "head", "limb", "shift")
VISIBLE_CHANGE = 0.10   # a corruption must move a visible keypoint by >= this x sqrt(area)
TURN_DEG = (60.0, 90.0)
SHIFT_FRACTION = 0.20


def build_sets(root: Path, shards: int) -> dict[str, list[str]]:
    """Materialise the validation (r0) and test (r1) partitions that are not there yet."""
    import dagster as dg

    from pd_assets.generation.assets import GENERATION_ASSETS
    from pd_assets.poses.assets import POSES_ASSETS
    from resources.dataset_store import DatasetStoreResource
    from resources.profiles import resources_for_profile

    sets = {"validation": [f"r0|s{i:04d}" for i in range(shards)],
            "test": [f"r1|s{i:04d}" for i in range(shards)]}
    resources = resources_for_profile("local")
    resources["dataset_store"] = DatasetStoreResource(root=str(root))
    for keys in sets.values():
        for key in keys:
            r, s = key.split("|")
            if (root / "raw_generations" / r / s / "provenance.parquet").is_file():
                continue
            t = time.perf_counter()
            result = dg.materialize([*POSES_ASSETS, *GENERATION_ASSETS], partition_key=key, resources=resources,
                                    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
            if not result.success:
                raise RuntimeError(f"materialising {key} failed")
            print(f"  materialised {key} in {time.perf_counter() - t:.1f} s", flush=True)
    return sets


def load_partition(root: Path, key: str):
    """Label rows, images and label masks of one partition (sorted by sample id)."""
    from pd_assets.curation.inputs import LabelView, label_file, load_image, load_mask
    from pd_assets.safe_io import read_label_rows

    r, s = key.split("|")
    pool, gen = root / "pose_pool" / r / s, root / "raw_generations" / r / s
    rows = sorted(read_label_rows(pool, "run the benchmark again"), key=lambda x: x["sample_id"])
    images, masks = [], []
    for row in rows:
        v = LabelView.from_row(row)
        images.append(load_image(gen / "images" / f"{v.sample_id}.png", (v.width, v.height))[0])
        masks.append(load_mask(label_file(pool, row, "control_mask")[0], (v.width, v.height))[0])
    return rows, images, masks


def corrupted_labels(rows, masks, model, renderer, rng) -> dict[str, list]:
    """Per negative type, per sample: (row, mask) or None when the corruption is not visible."""
    from pd_assets.curation import label_corruptions as lc

    n = len(rows)
    out: dict[str, list] = {}
    out["mirror"] = [lc.mirror_label(r, m) for r, m in zip(rows, masks)]
    others = [(i + int(rng.integers(1, n))) % n for i in range(n)]
    out["other"] = [(rows[j], masks[j]) for j in others]
    out["shift"] = [lc.shifted_label(r, m, SHIFT_FRACTION, float(rng.uniform(0, 2 * math.pi)))
                    for r, m in zip(rows, masks)]
    heads, limbs = [], []
    for r in rows:
        pose = np.asarray(r["body_pose"], np.float64).reshape(21, 3)
        turn = math.radians(rng.uniform(*TURN_DEG)) * (1 if rng.random() < 0.5 else -1)
        heads.append(lc.turn_head(pose, turn))
        vis = np.asarray(r["keypoints_visible"], bool)
        ends = {"left_arm": (7, 9), "right_arm": (8, 10), "left_leg": (13, 15), "right_leg": (14, 16)}
        seen = [k for k, idx in ends.items() if vis[list(idx)].any()] or list(ends)
        limb = seen[int(rng.integers(len(seen)))]
        limbs.append(lc.swing_limb(pose, limb, math.radians(rng.uniform(*TURN_DEG)),
                                   float(rng.uniform(0, 2 * math.pi))))
    out["head"] = lc.reposed_labels(rows, heads, model, renderer)
    out["limb"] = lc.reposed_labels(rows, limbs, model, renderer)
    for kind, items in out.items():
        out[kind] = [item if visible_change(rows[i], item[0]) else None for i, item in enumerate(items)]
    return out


def visible_change(true_row: dict, new_row: dict) -> bool:
    """Does the corrupted label move a keypoint visible in either label by >= VISIBLE_CHANGE
    of the person scale? (Otherwise no image could tell the two apart.)"""
    a = np.asarray(true_row["keypoints2d"], np.float64).reshape(17, 2)
    b = np.asarray(new_row["keypoints2d"], np.float64).reshape(17, 2)
    vis = np.asarray(true_row["keypoints_visible"], bool) | np.asarray(new_row["keypoints_visible"], bool)
    if not vis.any():
        return False
    scale = math.sqrt(max(float(true_row["mask_area"]), 1.0))
    return bool(np.linalg.norm(a - b, axis=1)[vis].max() >= VISIBLE_CHANGE * scale)


def judge_thresholds(kind: str):
    """The filter's thresholds: today's defaults, or the method's filter as it was before
    issue 12 (every detected "person" counts, no worst-keypoint check)."""
    from pd_assets.curation.filters import FilterThresholds

    if kind == "method":
        return FilterThresholds(keypoint_similarity_min=0.0, min_keypoints_inside=0, head_pose_max_deg=25.0)
    return FilterThresholds()


def rate(flags) -> str:
    flags = list(flags)
    if not flags:
        return "   n/a (n=0)"
    return f"{100 * sum(flags) / len(flags):5.1f} % (n={len(flags)})"


def report(name: str, pos: list[dict], neg: dict[str, list[dict]]) -> None:
    print(f"\n== {name}: false rejects on positives (image + its own label) ==")
    print(f"overall             {rate(not r['kept'] for r in pos)}")
    for key in ("pose_family", "framing"):
        groups = defaultdict(list)
        for r in pos:
            groups[r[key]].append(not r["kept"])
        print(f"per {key}: " + "; ".join(f"{g} {100 * sum(v) / len(v):.0f}% ({sum(v)}/{len(v)})"
                                          for g, v in sorted(groups.items())))
    stages = Counter((r["reject_stage"], r["failed_checks"][0]) for r in pos if not r["kept"])
    print("per reject stage (first failure): " + "; ".join(f"{s}/{c} {k}" for (s, c), k in sorted(stages.items())))
    print(f"== {name}: false accepts per negative type ==")
    for kind in NEGATIVES:
        print(f"  {kind:7s} accepted {rate(r['kept'] for r in neg[kind])}")


def tradeoff(name: str, pos: list[dict], neg: dict[str, list[dict]], check: str, score: str, grid) -> None:
    """Re-threshold one score (every other check at its default), from the stored scores."""
    def kept_at(r, thr):
        others = [c for c in r["failed_checks"] if c != check]
        return not others and (r[score] is None or r[score] >= thr) and (check != "oks" or r["oks"] is not None)
    print(f"\n== {name}: trade-off over the {score} threshold (other checks at defaults) ==")
    print(f"{score[:8]:>8s}  false_reject  " + "  ".join(f"FA_{k:6s}" for k in NEGATIVES))
    for thr in grid:
        fr = np.mean([not kept_at(r, thr) for r in pos])
        fas = [np.mean([kept_at(r, thr) for r in neg[k]]) if neg[k] else float("nan") for k in NEGATIVES]
        print(f"{thr:8.2f}  {100 * fr:10.1f} %  " + "  ".join(f"{100 * v:7.1f} %" for v in fas))


def throughput(root: Path, key: str, detector, calibration, thresholds, repeats: int = 2) -> None:
    import polars as pl

    from pd_assets.curation.inputs import load_image
    from pd_assets.curation.pipeline import curate_partition

    r, s = key.split("|")
    pool, gen = root / "pose_pool" / r / s, root / "raw_generations" / r / s
    labels = pl.read_parquet(pool / "labels.parquet").to_dicts()
    prov = {x["sample_id"]: x for x in pl.read_parquet(gen / "provenance.parquet").to_dicts()}
    images = [load_image(gen / "images" / f"{x['sample_id']}.png")[0] for x in labels]
    detector.detect(images[:2])
    bare = full = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        detector.detect(images)
        bare = min(bare, time.perf_counter() - t)
        t = time.perf_counter()
        curate_partition(labels, prov, pool, gen, detector, calibration, thresholds,
                         root / f"bench-{time.monotonic_ns()}.tar", batch_size=16)
        full = min(full, time.perf_counter() - t)
    n = len(images)
    print(f"\n== throughput on {key} ({n} images, best of {repeats}) ==")
    print(f"bare detector inference: {n / bare:6.1f} images/s; whole filter: {n / full:6.1f} images/s; "
          f"filter / bare time = {full / bare:.3f} (overhead {100 * (full - bare) / bare:+.1f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=None, help="reuse/keep the data here (default: temp)")
    parser.add_argument("--shards", type=int, default=4, help="64-sample shards per set (validation, test)")
    parser.add_argument("--judge", choices=("current", "method"), default="current")
    parser.add_argument("--sets", default="validation,test")
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args()
    if args.data_root is None:
        with tempfile.TemporaryDirectory() as tmp:
            run(Path(tmp), args)
    else:
        args.data_root.mkdir(parents=True, exist_ok=True)
        run(args.data_root, args)


def run(root: Path, args) -> None:
    from pd_assets.curation.mediapipe_task import build as build_task
    from pd_assets.poses.body_models import load_body_model
    from pd_assets.poses.pool import renderer_for
    from resources.keypoint_detector import KeypointDetectorResource
    from resources.paths import models_dir

    t0 = time.perf_counter()
    sets = build_sets(root, args.shards)
    print(f"data ready under {root} in {time.perf_counter() - t0:.1f} s")
    build_task(models_dir())
    resource = KeypointDetectorResource.for_profile("local")
    detector = resource.build()
    calibration, cal_status = resource.resolve_calibration()
    print(f"calibration: {cal_status}")
    model = load_body_model("anny")
    from pd_assets.curation.filters import score_sample
    from pd_assets.curation.inputs import LabelView

    thresholds = judge_thresholds(args.judge)
    print(f"judge: {args.judge}: {thresholds.as_dict()}")

    def score(row, image, det, mask):
        rec = score_sample(LabelView.from_row(row), image, det, mask, calibration, thresholds)
        axes = [rec[f"head_{a}_err_deg"] for a in ("yaw", "pitch", "roll")]
        rec["neg_head_err"] = None if None in axes else -max(abs(a) for a in axes)  # for the trade-off
        return rec
    for set_name in args.sets.split(","):
        pos, neg = [], {k: [] for k in NEGATIVES}
        rng = np.random.default_rng([SEED, 0 if set_name == "validation" else 1])
        for key in sets[set_name]:
            rows, images, masks = load_partition(root, key)
            renderer = renderer_for(model, int(rows[0]["width"]), int(rows[0]["height"]))
            t = time.perf_counter()
            detections = detector.detect(images)
            t_det = time.perf_counter() - t
            variants = corrupted_labels(rows, masks, model, renderer, rng)
            t = time.perf_counter()
            for i, (row, image, mask, det) in enumerate(zip(rows, images, masks, detections)):
                rec = score(row, image, det, mask)
                rec.update(pose_family=row["pose_family"], framing=row["framing"])
                pos.append(rec)
                for kind in NEGATIVES:
                    item = variants[kind][i]
                    if item is not None:
                        neg[kind].append(score(item[0], image, det, item[1]))
            print(f"  {set_name} {key}: detect {t_det:.1f} s, score {time.perf_counter() - t:.1f} s", flush=True)
        report(f"{set_name} ({', '.join(sets[set_name])})", pos, neg)
        tradeoff(set_name, pos, neg, "oks", "oks", (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95))
        tradeoff(set_name, pos, neg, "keypoint", "min_keypoint_similarity", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6))
        tradeoff(set_name, pos, neg, "head_pose", "neg_head_err", (-180, -60, -45, -35, -25, -15))
    if not args.no_throughput:
        throughput(root, sets["test"][0], detector, calibration, thresholds)
    detector.close()


if __name__ == "__main__":
    main()

"""What the person detector needs from a generated image (issue 7's diagnosis), on a
benchmark partition of `bench_control_adapter.py` (default: the validation shard r0|s0009).

    python benchmarks/detector_probes.py grey-body            # a grey shaded body on flat grey
    python benchmarks/detector_probes.py pca --factor 8 --channels 24,48,96
    python benchmarks/detector_probes.py mirror --images <generated partition folder>
    python benchmarks/detector_probes.py swap --images <generated partition folder>

- grey-body: each label's own shaded render (pose_pool's `shaded` map), made grey and put on
  a flat grey background: how far a clean, average-looking person gets with the detector.
- pca: the render images through a patch-PCA autoencoder of that factor and channel count.
- mirror: of a generated partition's genuine detections, how many match the label's
  left/right mirror better than the label (the detector guessed the facing wrong), by
  the label's view (front, side, back; `pd_assets/poses/view.py`).
- swap: a generated partition with its background or its body (the label's silhouette)
  replaced by the render backend's, or by flat grey: which of the two costs the detections
  and which the OKS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PD_NUM_SHARDS", "16")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def _detector():
    from resources.keypoint_detector import KeypointDetectorResource

    kd = KeypointDetectorResource.for_profile("local")
    return kd.build(), kd.load_calibration()


def _score(pose_dir: Path, gen_dir: Path, work: Path, detector, calibration):
    from pd_assets.curation.filters import FilterThresholds
    from pd_assets.generation.adapter_eval import score_partition, summarise

    return summarise(score_partition(pose_dir, gen_dir, detector, calibration, FilterThresholds(), work), 0.0)


def _rewrite_images(src: Path, out: Path, transform) -> None:
    """A copy of the generated partition `src` (provenance included) whose images are transformed."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("_scores"))
    for f in sorted((out / "images").glob("*.png")):
        arr = transform(f.stem, np.asarray(Image.open(f).convert("RGB")).astype(np.float32))
        Image.fromarray(arr.clip(0, 255).round().astype(np.uint8)).save(f)


def grey_body(pose_dir: Path, gen_dir: Path, out: Path) -> None:
    def transform(sample_id: str, _img: np.ndarray) -> np.ndarray:
        shaded = np.asarray(Image.open(pose_dir / "controls" / "shaded" / f"{sample_id}.png").convert("RGBA"),
                            dtype=np.float32)
        alpha, lum = shaded[..., 3:4] / 255, shaded[..., :3].mean(-1, keepdims=True)
        return np.repeat(alpha * lum + (1 - alpha) * 128, 3, axis=-1)

    detector, calibration = _detector()
    _rewrite_images(gen_dir, out / "grey_body", transform)
    ev = _score(pose_dir, out / "grey_body", out / "_scores_grey", detector, calibration)
    print(f"grey body on flat grey: detected {ev.num_detected}/{ev.num_images}, median OKS {ev.oks_median}")


def pca(pose_dir: Path, gen_dir: Path, out: Path, train_images: np.ndarray, factor: int, channels: list[int]) -> None:
    import torch

    from pd_assets.generation.patch_autoencoder import PatchPCAAutoencoder, fit_patch_pca

    detector, calibration = _detector()
    for k in channels:
        components, mean, ratios, variances = fit_patch_pca(train_images, k, factor)
        ae = PatchPCAAutoencoder(patch_size=factor, latent_channels=k)
        ae.set_basis(components, mean, variances[:k].sqrt())

        def transform(_sid: str, img: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(img).permute(2, 0, 1)[None] / 127.5 - 1
            with torch.no_grad():
                rec = ae.decode(ae.encode(x).latent_dist.mode()).sample
            return (rec[0].permute(1, 2, 0).clamp(-1, 1).numpy() + 1) * 127.5

        _rewrite_images(gen_dir, out / f"pca_f{factor}_{k}", transform)
        ev = _score(pose_dir, out / f"pca_f{factor}_{k}", out / f"_scores_pca_{k}", detector, calibration)
        print(f"patch PCA f={factor}, {k} channels ({ratios[:k].sum():.2%} of the variance): detected "
              f"{ev.num_detected}/{ev.num_images}, median OKS {ev.oks_median}")


def mirror(pose_dir: Path, gen_dir: Path, out: Path) -> None:
    from pd_assets.curation.filters import FilterThresholds
    from pd_assets.curation.inputs import read_parquet_rows
    from pd_assets.curation.label_corruptions import mirror_label
    from pd_assets.curation.pipeline import curate_partition
    from pd_assets.generation.adapter_eval import MIN_KEYPOINTS_INSIDE, keypoints_inside
    from pd_assets.poses.view import body_view

    detector, calibration = _detector()
    labels = read_parquet_rows(pose_dir / "labels.parquet", "pose_pool labels", "re-materialise pose_pool")
    prov = {r["sample_id"]: r for r in read_parquet_rows(gen_dir / "provenance.parquet", "provenance",
                                                         "re-generate the partition")}
    size = Image.open(next((gen_dir / "images").glob("*.png"))).size
    records = {}
    for name, rows in (("label", labels), ("mirror", [mirror_label(r, np.zeros(1))[0] for r in labels])):
        (out / name).mkdir(parents=True, exist_ok=True)
        result = curate_partition(rows, prov, pose_dir, gen_dir, detector, calibration, FilterThresholds(),
                                  shard_path=out / name / "scores.tar", include_pncc=False)
        records[name] = {r["sample_id"]: r for r in result.records}
    views = {r["sample_id"]: body_view(np.asarray(r["keypoints3d_cam"])) for r in labels}
    against_label, best_of_two, mirrored = [], [], 0
    by_facing: dict[str, list[int]] = {"front": [0, 0, 0], "side": [0, 0, 0], "back": [0, 0, 0]}
    for sid, rec in records["label"].items():
        side = views[sid]
        by_facing[side][0] += 1
        kps = rec["det_keypoints2d"]
        if kps is None or keypoints_inside(kps, *size) < MIN_KEYPOINTS_INSIDE:
            continue
        o, m = rec["oks"] or 0.0, records["mirror"][sid]["oks"] or 0.0
        against_label.append(o)
        best_of_two.append(max(o, m))
        mirrored += m > o
        by_facing[side][1] += 1
        by_facing[side][2] += m > o
    if not against_label:
        print("no genuine detections")
        return
    print(f"{len(against_label)} genuine detections: {mirrored} match the label's mirror better than the label; "
          f"median OKS {np.median(against_label):.3f} against the label, {np.median(best_of_two):.3f} against "
          "the better of label and mirror")
    for side, (n, det, mir) in by_facing.items():
        print(f"  labels in {side} view: {n}, detected {det}, of those mirrored {mir}")


def swap(pose_dir: Path, gen_dir: Path, images: Path, out: Path) -> None:
    detector, calibration = _detector()
    size = Image.open(next((images / "images").glob("*.png"))).size

    def alpha(sid: str) -> np.ndarray:
        shaded = Image.open(pose_dir / "controls" / "shaded" / f"{sid}.png").convert("RGBA").resize(size)
        return np.asarray(shaded, np.float32)[..., 3:4] / 255

    def render(sid: str) -> np.ndarray:
        return np.asarray(Image.open(gen_dir / "images" / f"{sid}.png").convert("RGB").resize(size), np.float32)

    variants = {
        "as generated": lambda sid, img: img,
        "generated body, render background": lambda sid, img: alpha(sid) * img + (1 - alpha(sid)) * render(sid),
        "generated body, grey background": lambda sid, img: alpha(sid) * img + (1 - alpha(sid)) * 128,
        "render body, generated background": lambda sid, img: alpha(sid) * render(sid) + (1 - alpha(sid)) * img,
    }
    for i, (name, transform) in enumerate(variants.items()):
        _rewrite_images(images, out / f"swap_{i}", transform)
        ev = _score(pose_dir, out / f"swap_{i}", out / f"_scores_swap_{i}", detector, calibration)
        print(f"{name}: detected {ev.num_detected}/{ev.num_images}, median OKS {ev.oks_median}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("probe", choices=("grey-body", "pca", "mirror", "swap"))
    ap.add_argument("--root", type=Path, default=Path("/tmp/adapter_bench"), help="bench_control_adapter's --root")
    ap.add_argument("--partition", default="r0|s0009")
    ap.add_argument("--images", type=Path, help="mirror, swap: the generated partition folder to probe")
    ap.add_argument("--factor", type=int, default=8)
    ap.add_argument("--channels", default="24,48,96")
    ap.add_argument("--out", type=Path, default=Path("/tmp/detector_probes"))
    args = ap.parse_args()
    rnd, shard = args.partition.split("|")
    pose_dir, gen_dir = args.root / "pose_pool" / rnd / shard, args.root / "raw_generations" / rnd / shard
    if args.probe == "grey-body":
        grey_body(pose_dir, gen_dir, args.out)
    elif args.probe == "pca":
        from pd_assets.generation.adapter_pairs import pairs_from_partitions

        pairs = pairs_from_partitions(args.root, [("r0", f"s{i:04d}") for i in range(8)], ("pncc",), min_pairs=64)
        pca(pose_dir, gen_dir, args.out, pairs.images, args.factor, [int(c) for c in args.channels.split(",")])
    elif args.images is None:
        ap.error(f"{args.probe} needs --images <generated partition folder>")
    elif args.probe == "mirror":
        mirror(pose_dir, args.images, args.out)
    else:
        swap(pose_dir, gen_dir, args.images, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

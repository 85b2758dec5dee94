"""Control-adapter benchmark: a generator trained from scratch on this machine, scored on
held-out controls by the curation stage (issue 7).

Trains `base=scratch` on render-backend pairs at 128 px (pose_pool r0|s0000.. + their
raw_generations), in segments that resume from the loop's checkpoints, and after each
segment generates the 64 held-out controls (the shard after the training shards) through
the production generator path and scores them: detection rate (a genuine person, >= 12 of
17 keypoints inside the image), OKS mean/median over detections, pass rate at the filter
thresholds. Prints the curve (detection rate against training minutes), seconds per
step, images per second, and the render backend's figures on the same controls (the
ceiling). Writes a contact sheet and the loss curve next to the figures.

    python benchmarks/bench_control_adapter.py --root /tmp/adapter_bench --minutes 90
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import adapter_data  # noqa: E402

LOG = logging.getLogger("bench_control_adapter")


def fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=Path("/tmp/adapter_bench"))
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--per-shard", type=int, default=512)
    ap.add_argument("--minutes", type=float, default=90.0, help="total training budget (autoencoder + denoiser)")
    ap.add_argument("--ae-minutes", type=float, default=10.0)
    ap.add_argument("--eval-at", default="10,20,40,60,80", help="denoiser minutes at which to evaluate")
    ap.add_argument("--stop-when-met", action="store_true",
                    help="stop training at the first evaluation that reaches the issue's targets")
    ap.add_argument("--eval-only", action="store_true",
                    help="no training: evaluate the model the last run saved in OUT/model (a fresh process)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/control_adapter"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    import torch

    from pd_assets.curation.filters import FilterThresholds
    from pd_assets.generation.adapter_eval import evaluate_generator, score_partition, summarise
    from pd_assets.generation.adapter_pairs import pairs_from_partitions
    from pd_assets.generation.adapter_training import AdapterTrainingConfig, train_adapter
    from pd_assets.generation.adapter_report import contact_sheet_for, loss_curve_image
    from resources.generator import ControlNetConfig, GeneratorResource
    from resources.keypoint_detector import KeypointDetectorResource

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.environ.setdefault("PD_NUM_SHARDS", str(max(16, args.shards + 1)))
    train_keys = [f"r0|s{i:04d}" for i in range(args.shards)]
    held = adapter_data.heldout_partition(args.shards)
    adapter_data.materialise(args.root, train_keys, args.per_shard, 128)
    adapter_data.materialise(args.root, [held], 64, 128)
    held_round, held_shard = held.split("|")
    pose_dir = args.root / "pose_pool" / held_round / held_shard
    args.out.mkdir(parents=True, exist_ok=True)

    kd = KeypointDetectorResource.for_profile("local")
    detector, calibration = kd.build(), kd.load_calibration()
    thresholds = FilterThresholds()

    t = time.perf_counter()
    render_records = score_partition(pose_dir, args.root / "raw_generations" / held_round / held_shard, detector,
                                     calibration, thresholds, args.out / "_render_scores")
    ceiling = summarise(render_records, 0.0)
    print(f"render backend (ceiling) on {held}: detected {ceiling.num_detected}/{ceiling.num_images}, "
          f"OKS mean {fmt(ceiling.oks_mean)} median {fmt(ceiling.oks_median)}, pass rate {ceiling.pass_rate:.3f} "
          f"({time.perf_counter() - t:.0f} s to score)", flush=True)

    if args.eval_only:
        gen = GeneratorResource(
            backend="diffusers", model=str(args.out / "model" / "pipeline"), family="sd15", steps=20, guidance=1.0,
            controlnets=[ControlNetConfig(path_or_id=str(args.out / "model" / "controlnet-pncc"), control="pncc")],
            dtype="float32", batch_size=16).build("cpu")
        ev, records = evaluate_generator(gen, pose_dir, args.out / "eval-final", detector, calibration, thresholds,
                                         round_name=held_round, shard=held_shard, project_seed=0, log=LOG)
        contact_sheet_for(pose_dir, args.out / "eval-final", records, n=12).save(args.out / "contact_sheet.png")
        print(f"[final model] detected {ev.num_detected}/{ev.num_images} ({ev.detection_rate:.2f}), OKS mean "
              f"{fmt(ev.oks_mean)} median {fmt(ev.oks_median)}, pass rate {ev.pass_rate:.3f}, "
              f"{ev.images_per_second:.2f} img/s", flush=True)
        detector.close()
        return 0
    pairs = pairs_from_partitions(args.root, [tuple(k.split("|")) for k in train_keys], ("pncc",), min_pairs=64)
    print(f"{len(pairs)} training pairs at {pairs.size[0]}x{pairs.size[1]} from {len(train_keys)} partitions", flush=True)
    work, model_out = args.out / "work", args.out / "model"
    curve = []
    for minutes in [float(m) for m in args.eval_at.split(",")]:
        minutes = min(minutes, args.minutes - args.ae_minutes)
        cfg = AdapterTrainingConfig(ae_steps=100_000, ae_max_seconds=args.ae_minutes * 60, steps=1_000_000,
                                    max_seconds=minutes * 60)
        res = train_adapter(pairs, cfg, work, model_out, log=LOG.info)
        den, ae = res.stages["denoiser"], res.stages["autoencoder"]
        gen = GeneratorResource(
            backend="diffusers", model=str(res.pipeline_dir), family="sd15",
            controlnets=[ControlNetConfig(path_or_id=str(res.controlnet_dirs["pncc"]), control="pncc")],
            steps=cfg.sample_steps, guidance=cfg.guidance, dtype="float32", batch_size=16,
        ).build("cpu")
        eval_dir = args.out / f"eval-{int(minutes):03d}min"
        ev, records = evaluate_generator(gen, pose_dir, eval_dir, detector, calibration, thresholds,
                                         round_name=held_round, shard=held_shard, project_seed=0, log=LOG)
        row = {"denoiser_minutes": den.seconds / 60, "total_minutes": (den.seconds + ae.seconds) / 60,
               "denoiser_steps": den.step, "autoencoder_steps": ae.step,
               "s_per_step": den.seconds / max(den.step, 1), "final_loss": den.final_loss, **ev.as_dict()}
        curve.append(row)
        print(f"[{row['total_minutes']:.1f} min total, {den.step} denoiser steps] detected {ev.num_detected}/"
              f"{ev.num_images} ({ev.detection_rate:.2f}), OKS mean {fmt(ev.oks_mean)} median {fmt(ev.oks_median)}, "
              f"pass rate {ev.pass_rate:.3f}, {row['s_per_step']:.2f} s/step, {ev.images_per_second:.2f} img/s, "
              f"loss {den.final_loss:.4f}", flush=True)
        (args.out / "curve.json").write_text(json.dumps({"ceiling": ceiling.as_dict(), "curve": curve}, indent=1))
        contact_sheet_for(pose_dir, eval_dir, records, n=12).save(args.out / "contact_sheet.png")
        loss_curve_image(den.losses, "denoiser loss (per step)").save(args.out / "loss_curve.png")
        if args.stop_when_met and ev.detection_rate >= 0.5 and (ev.oks_median or 0.0) >= 0.5:
            print("targets reached: training stops here", flush=True)
            break
    final = curve[-1]
    print("\n== control adapter, trained from scratch, 128 px, 64 held-out controls ==")
    print(f"training: autoencoder {final['autoencoder_steps']} steps + denoiser/ControlNet {final['denoiser_steps']} "
          f"steps = {final['total_minutes']:.1f} min; {final['s_per_step']:.2f} s/step (batch 16)")
    print(f"detection rate {final['detection_rate']:.3f} (target >= 0.5); OKS mean {fmt(final['oks_mean'])} "
          f"median {fmt(final['oks_median'])} (target median >= 0.5); pass rate {final['pass_rate']:.3f}; "
          f"{final['images_per_second']:.2f} img/s at inference")
    print(f"ceiling (render backend, same controls): detection {ceiling.detection_rate:.3f}, OKS median "
          f"{fmt(ceiling.oks_median)}, pass rate {ceiling.pass_rate:.3f}")
    print("curve (total training minutes -> detection rate, median OKS):")
    for r in curve:
        print(f"  {r['total_minutes']:6.1f} min  {r['detection_rate']:.3f}  {fmt(r['oks_median'])}")
    detector.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

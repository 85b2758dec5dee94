"""Control-adapter benchmark: a generator trained from scratch on this machine, scored on
held-out controls by the curation stage (issue 7).

Trains `base=scratch` on render-backend pairs at 128 px (pose_pool r0|s0000.. + their
raw_generations), in segments that resume from the loop's checkpoints, and after each
segment generates the 64 validation controls (the shard after the test shard) through the
production generator path and scores them: detection rate (a genuine person, >= 12 of 17
keypoints inside the image), OKS mean/median over detections, pass rate at the filter
thresholds; that curve (detection against training minutes) also decides an early stop.
The 64 test controls (the shard right after the training shards) are generated once, by
the final model, and with it (`--extra-test-shards`, default 2) the shards after the
validation shard, reported per shard and pooled. Prints seconds per step, images per second, and the render backend's
figures on the same controls (the ceiling). Writes a contact sheet and the loss curve.

    python benchmarks/bench_control_adapter.py --root /tmp/adapter_bench --minutes 90

The defaults are the `control_adapter` resource's (f=8 x 32 patch-PCA latents, concat
control, lr 3e-4, clean-image loss, channel weight power 0.5, EMA 0.999, control dropout 0.1,
sampled with 8 steps, guidance 1.5, image guidance 3); the flags reproduce earlier runs.
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
    from pd_assets.training.loop import LR_SCHEDULES

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=Path("/tmp/adapter_bench"))
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--per-shard", type=int, default=512)
    ap.add_argument("--minutes", type=float, default=90.0, help="total training budget (autoencoder + denoiser)")
    ap.add_argument("--autoencoder", default="patch-pca", choices=("patch-pca", "kl"))
    ap.add_argument("--ae-minutes", type=float, default=10.0, help="time budget of a trained (kl) autoencoder")
    ap.add_argument("--control-input", default="concat", choices=("concat", "controlnet"))
    ap.add_argument("--latent-factor", type=int, default=8, choices=(4, 8),
                    help="autoencoder down-sampling: 4 (32x32 latents at 128 px) or 8 (16x16)")
    ap.add_argument("--latent-channels", type=int, default=32)
    ap.add_argument("--unet-channels", default="64,128,192", help="denoiser widths, one per level")
    ap.add_argument("--lr", type=float, default=3e-4, help="run 19: 6e-4")
    ap.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant",
                    help="after warm-up; cosine/linear decay to lr x --min-lr-ratio at --steps")
    ap.add_argument("--min-lr-ratio", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=1_000_000,
                    help="denoiser step limit, and the decay horizon of --lr-schedule (set it to what --minutes buys: "
                         "the time budget still stops the run)")
    ap.add_argument("--mixed-precision", choices=("no", "bf16"), default="no",
                    help="bf16 autocast of the denoiser's training steps (on a CPU with bf16 instructions too)")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--min-snr", type=float, default=1.0,
                    help="min-SNR-gamma loss weighting (0: none, every timestep's v-loss weighted 1)")
    ap.add_argument("--channel-weight-power", type=float, default=0.5,
                    help="patch-PCA latents: loss weight of each channel (its pixel gain^2)^power (0: all alike)")
    ap.add_argument("--foreground-weight", type=float, default=1.0,
                    help="loss weight of the body's latent cells against 1 on the background (1: none)")
    ap.add_argument("--head-weight", type=float, default=1.0,
                    help="loss weight of the latent cells over the label's head against 1 on the background (1: none)")
    ap.add_argument("--control-dropout", type=float, default=0.1,
                    help="concat: share of training samples without the control (what image guidance needs)")
    ap.add_argument("--eval-settings", default="8:1.5:3",
                    help="sampling settings scored at each evaluation, steps:guidance:image_guidance, comma "
                         "separated; the test shard uses the one best on the last validation evaluation")
    ap.add_argument("--eval-at", default="10,20,30,45,60,75,90", help="training minutes at which to evaluate")
    ap.add_argument("--stop-when-met", action="store_true",
                    help="stop training at the first validation evaluation that reaches the issue's targets")
    ap.add_argument("--eval-only", action="store_true",
                    help="no training: score the model the last run saved in OUT/model on the validation shard "
                         "with each --eval-settings, then the best of them on the test shard")
    ap.add_argument("--prompt-view", action="store_true",
                    help="the data's prompts state the body's view (pose_sampling.prompt_view; give a --root of its own: "
                         "materialised partitions are reused as they are)")
    ap.add_argument("--no-hair", action="store_true",
                    help="bald heads (pose_sampling.hair false), the data of runs 1-15; give a --root of its own")
    ap.add_argument("--extra-test-shards", type=int, default=2,
                    help="also score the final model, with the same sampling, on this many further unseen "
                         "shards (after the validation shard), and pooled with the test shard")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/control_adapter"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    import torch

    from pd_assets.curation.filters import FilterThresholds
    from pd_assets.generation.adapter_eval import evaluate_generator, score_partition, summarise
    from pd_assets.generation.adapter_pairs import pairs_from_partitions
    from pd_assets.generation.adapter_report import contact_sheet_for, loss_curve_image
    from pd_assets.generation.adapter_training import AdapterTrainingConfig, train_adapter
    from pd_assets.generation.scratch_model import ScratchModelConfig
    from resources.generator import ControlNetConfig, GeneratorResource
    from resources.keypoint_detector import KeypointDetectorResource

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.environ.setdefault("PD_NUM_SHARDS", str(max(16, args.shards + 2)))
    train_keys = [f"r0|s{i:04d}" for i in range(args.shards)]
    test, val = adapter_data.heldout_partition(args.shards), adapter_data.validation_partition(args.shards)
    adapter_data.materialise(args.root, train_keys, args.per_shard, 128, args.prompt_view, not args.no_hair)
    extra_tests = adapter_data.extra_test_partitions(args.shards, args.extra_test_shards)
    adapter_data.materialise(args.root, [test, val, *extra_tests], 64, 128, args.prompt_view, not args.no_hair)

    def dirs(key: str) -> tuple[Path, Path, str, str]:
        rnd, shard = key.split("|")
        return args.root / "pose_pool" / rnd / shard, args.root / "raw_generations" / rnd / shard, rnd, shard

    args.out.mkdir(parents=True, exist_ok=True)
    kd = KeypointDetectorResource.for_profile("local")
    detector, calibration = kd.build(), kd.load_calibration()
    thresholds = FilterThresholds()

    def evaluate(model_dir: Path, key: str, eval_dir: Path, steps: float, guidance: float, image_guidance: float):
        """Generate and score the partition `key`: (evaluation, curation records)."""
        pose_dir, _, rnd, shard = dirs(key)
        family, reads = adapter_data.model_form(model_dir)
        gen = GeneratorResource(
            backend="diffusers", model=str(model_dir / "pipeline"), family=family, steps=int(steps), guidance=guidance,
            controlnets=[ControlNetConfig(path_or_id=str(reads), control="pncc", scale=image_guidance)],
            dtype="float32", batch_size=16).build("cpu")
        return evaluate_generator(gen, pose_dir, eval_dir, detector, calibration, thresholds,
                                  round_name=rnd, shard=shard, project_seed=0, log=LOG)

    settings = [tuple(float(v) for v in item.split(":")) for item in args.eval_settings.split(",")]

    def setting_name(setting) -> str:
        return f"{int(setting[0])} steps, guidance {setting[1]:g}, image guidance {setting[2]:g}"

    def meets(ev) -> bool:
        return ev.detection_rate >= 0.5 and (ev.oks_median or 0.0) >= 0.5

    def rank(ev) -> tuple:
        # both targets first; else detections that match the label (rate x median OKS), not just any
        return (meets(ev), ev.detection_rate * (ev.oks_median or 0.0))

    best = settings[0]

    def validate(tag: str, row: dict, header: str, trailer: str = ""):
        """Score every sampling setting on the validation shard; returns the best (setting, evaluation)."""
        row.setdefault("settings", {})
        scored = []
        for setting in settings:
            name = f"{tag}-{int(setting[0])}s-g{setting[1]:g}-ig{setting[2]:g}"
            ev, _ = evaluate(model_out, val, args.out / f"eval-val-{name}", int(setting[0]), setting[1], setting[2])
            row["settings"][setting_name(setting)] = ev.as_dict()
            scored.append((rank(ev), setting, ev))
            print(f"[validation, {header}, {setting_name(setting)}] detected {ev.num_detected}/{ev.num_images} "
                  f"({ev.detection_rate:.2f}), OKS mean {fmt(ev.oks_mean)} median {fmt(ev.oks_median)}, pass rate "
                  f"{ev.pass_rate:.3f}, {ev.images_per_second:.2f} img/s{trailer}", flush=True)
        _, chosen, ev = max(scored, key=lambda item: item[0])
        return chosen, ev

    t = time.perf_counter()
    ceilings = {}
    for key in (test, val):
        pose_dir, gen_dir, _, _ = dirs(key)
        ceilings[key] = summarise(score_partition(pose_dir, gen_dir, detector, calibration, thresholds,
                                                  args.out / f"_render_scores_{key.replace('|', '_')}"), 0.0)
    ceiling = ceilings[test]
    print(f"render backend (ceiling) on the test shard {test}: detected {ceiling.num_detected}/{ceiling.num_images}, "
          f"OKS mean {fmt(ceiling.oks_mean)} median {fmt(ceiling.oks_median)}, pass rate {ceiling.pass_rate:.3f}; "
          f"validation {val}: {ceilings[val].num_detected}/{ceilings[val].num_images} "
          f"({time.perf_counter() - t:.0f} s to score)", flush=True)

    model_out = args.out / "model"
    if args.eval_only:  # the saved model's sampling settings, chosen on validation, never on test
        grid: dict = {}
        best, _ = validate("final", grid, "saved model")
        (args.out / "eval_settings.json").write_text(json.dumps(grid, indent=1))
    else:
        pairs = pairs_from_partitions(args.root, [tuple(k.split("|")) for k in train_keys], ("pncc",), min_pairs=64)
        print(f"{len(pairs)} training pairs at {pairs.size[0]}x{pairs.size[1]} from {len(train_keys)} partitions",
              flush=True)
        work, curve = args.out / "work", []
        model_cfg = ScratchModelConfig(
            autoencoder=args.autoencoder, control_input=args.control_input, latent_channels=args.latent_channels,
            vae_channels=(32, 64, 128, 256)[: {4: 3, 8: 4}[args.latent_factor]],
            unet_channels=tuple(int(c) for c in args.unet_channels.split(",")))
        ae_minutes = args.ae_minutes if args.autoencoder == "kl" else 0.0
        for minutes in [float(m) for m in args.eval_at.split(",")]:
            minutes = min(minutes, args.minutes) - ae_minutes
            cfg = AdapterTrainingConfig(model=model_cfg,
                                        ae_steps=100_000, ae_max_seconds=ae_minutes * 60 or None, steps=args.steps,
                                        max_seconds=minutes * 60, lr=args.lr, lr_schedule=args.lr_schedule,
                                        min_lr_ratio=args.min_lr_ratio, ema_decay=args.ema or None,
                                        min_snr_gamma=args.min_snr or None, control_dropout=args.control_dropout,
                                        channel_weight_power=args.channel_weight_power,
                                        foreground_loss_weight=args.foreground_weight,
                                        head_loss_weight=args.head_weight, mixed_precision=args.mixed_precision)
            res = train_adapter(pairs, cfg, work, model_out, log=LOG.info)
            den, ae = res.stages["denoiser"], res.stages["autoencoder"]
            row = {"denoiser_minutes": den.seconds / 60, "total_minutes": (den.seconds + ae.seconds) / 60,
                   "denoiser_steps": den.step, "autoencoder_steps": ae.step,
                   "s_per_step": den.seconds / max(den.step, 1), "final_loss": den.final_loss, "settings": {}}
            best, ev = validate(f"{int(minutes + ae_minutes):03d}min", row,
                                f"{row['total_minutes']:.1f} min total, {den.step} denoiser steps",
                                f", {row['s_per_step']:.2f} s/step, loss {den.final_loss:.4f}")
            row.update(best_setting=setting_name(best), **ev.as_dict())
            curve.append(row)
            (args.out / "curve.json").write_text(json.dumps({"ceiling": ceiling.as_dict(), "curve": curve}, indent=1))
            loss_curve_image(den.losses, "denoiser loss (per step)").save(args.out / "loss_curve.png")
            if args.stop_when_met and meets(ev):
                print("validation targets reached: training stops here", flush=True)
                break
            if den.seconds + ae.seconds >= args.minutes * 60 - 1:
                break
    # the test shard, once, on the final model (never used to stop or tune)
    ev, test_records = evaluate(model_out, test, args.out / "eval-test", *best)
    contact_sheet_for(dirs(test)[0], args.out / "eval-test", test_records, n=12).save(args.out / "contact_sheet.png")
    extra = {}
    for key in extra_tests:  # the same sampling on further unseen shards, then all pooled
        extra[key], records = evaluate(model_out, key, args.out / f"eval-test-{key.replace('|', '_')}", *best)
        test_records = test_records + records
    pooled = summarise(test_records, 0.0) if extra else None
    print("\n== control adapter, trained from scratch, 128 px, 64 held-out test controls ==")
    if not args.eval_only:
        final = curve[-1]
        print(f"training: autoencoder ({args.autoencoder}) {final['autoencoder_steps']} steps + denoiser ({args.control_input}) "
              f"{final['denoiser_steps']} steps = {final['total_minutes']:.1f} min; {final['s_per_step']:.2f} s/step "
              f"(batch 16); latents f={args.latent_factor} x {args.latent_channels} ch, unet {args.unet_channels}")
    print(f"sampling: {setting_name(best)} (the best on the last validation evaluation)")
    print(f"test: detected {ev.num_detected}/{ev.num_images} = {ev.detection_rate:.3f} (target >= 0.5); OKS mean "
          f"{fmt(ev.oks_mean)} median {fmt(ev.oks_median)} (target median >= 0.5); pass rate {ev.pass_rate:.3f}; "
          + (f"{ev.images_per_second:.2f} img/s at inference" if ev.images_per_second
             else "images reused from an earlier run, not timed"))
    for key, e in extra.items():
        print(f"further unseen shard {key}: detected {e.num_detected}/{e.num_images}, OKS median {fmt(e.oks_median)}")
    if pooled is not None:
        print(f"pooled over the {pooled.num_images} test controls of {1 + len(extra)} shards: detected "
              f"{pooled.num_detected}/{pooled.num_images} = {pooled.detection_rate:.3f}, OKS mean {fmt(pooled.oks_mean)} "
              f"median {fmt(pooled.oks_median)}, pass rate {pooled.pass_rate:.3f}")
    print(f"ceiling (render backend, same test controls): detected {ceiling.num_detected}/{ceiling.num_images}, "
          f"OKS median {fmt(ceiling.oks_median)}, pass rate {ceiling.pass_rate:.3f}")
    if not args.eval_only:
        print("validation curve (total training minutes -> detection rate, median OKS):")
        for r in curve:
            print(f"  {r['total_minutes']:6.1f} min  {r['detection_rate']:.3f}  {fmt(r['oks_median'])}  "
                  f"({r['best_setting']})")
        (args.out / "curve.json").write_text(json.dumps({"ceiling": ceiling.as_dict(), "curve": curve,
                                                         "test": ev.as_dict(),
                                                         "further_tests": {k: e.as_dict() for k, e in extra.items()},
                                                         "pooled_test": pooled and pooled.as_dict()}, indent=1))
    detector.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

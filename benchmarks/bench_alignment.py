"""DPO alignment benchmark (issue 8): the control_adapter generator at 128 px, before and after.

Uses a trained control adapter (default: the model `bench_control_adapter.py` wrote), draws
alignment conditions from their own seed namespace (train + held-out eval), generates K
candidates per train condition, scores them with the curation scorer, keeps the method's
pairs, trains the DPO LoRA (time budget), and compares base vs aligned on the held-out
conditions with the same seeds: mean OKS (no genuine person = 0), OKS error reduction,
Wilcoxon p-value and bootstrap CI, detection and pass rates. Writes a before/after sheet.

    python benchmarks/bench_alignment.py --adapter benchmarks/results/control_adapter/model --minutes 45
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
LOG = logging.getLogger("bench_alignment")


def adapter_folder(model_dir: Path, out: Path, steps: int = 20, guidance: float = 1.0,
                   image_guidance: float = 1.0) -> Path:
    """A control_adapter-layout folder (adapter.json) around a benchmark's model folder, with
    the sampling settings the generator should run it with."""
    from adapter_data import model_form
    from pd_assets.storage import atomic_write_json

    vdir = out / "adapter"
    vdir.mkdir(parents=True, exist_ok=True)
    family, reads = model_form(model_dir)
    atomic_write_json(vdir / "adapter.json", {
        "version": "bench-" + model_dir.resolve().parent.name, "family": family,
        "pipeline": str((model_dir / "pipeline").resolve()),
        "controlnets": {"pncc": str(reads.resolve())}, "sample_steps": steps, "guidance": guidance,
        "image_guidance": image_guidance,
    })
    return vdir


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapter", type=Path, default=Path("benchmarks/results/control_adapter/model"))
    ap.add_argument("--train-conditions", type=int, default=256)
    ap.add_argument("--eval-conditions", type=int, default=128)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=45.0)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--beta", type=float, default=2500.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/alignment"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    import numpy as np
    import polars as pl
    import torch

    from pd_assets.alignment.dpo_training import DpoConfig
    from pd_assets.alignment.pipeline import (
        build_preferences, evaluate_alignment, load_adapter_parts, preference_tensors, split_pairs, subset,
        train_alignment,
    )
    from pd_assets.alignment.preference_data import build_conditions
    from pd_assets.alignment.preferences import PairRule
    from pd_assets.curation.filters import FilterThresholds
    from pd_assets.poses.assets import settings_from
    from resources.body_model import BodyModelResource
    from resources.generator import GeneratorResource, LoraConfig
    from resources.keypoint_detector import KeypointDetectorResource
    from resources.pose_sampling import PoseSamplingResource

    torch.set_num_threads(os.cpu_count() or 1)
    args.out.mkdir(parents=True, exist_ok=True)
    vdir = adapter_folder(args.adapter, args.out)
    sampling = PoseSamplingResource(width=128, height=128, controls=["pncc", "shaded", "mask"])
    base = settings_from(sampling)
    t0 = time.perf_counter()
    dirs = build_conditions(lambda n: replace(base, samples_per_shard=n, mined=None), BodyModelResource().load(),
                            args.out, 0, {"train": args.train_conditions, "eval": args.eval_conditions})
    print(f"conditions: {args.train_conditions} train + {args.eval_conditions} held-out ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    kd = KeypointDetectorResource.for_profile("local")
    detector, calibration, th = kd.build(), kd.load_calibration(), FilterThresholds()

    def generator(loras=()):
        return GeneratorResource(backend="diffusers", control_adapter=str(vdir), steps=20, guidance=1.0,
                                 dtype="float32", batch_size=16, loras=list(loras)).build("cpu")

    t0 = time.perf_counter()
    summary = build_preferences(generator(), dirs["train"], args.out, args.k, 0, detector, calibration, th,
                                PairRule(), log=LOG)
    print(f"preferences: {summary['num_pairs']} pairs from {summary['num_conditions']} conditions x {args.k} "
          f"(genuine-person rate {summary['genuine_rate']:.3f}, mean candidate OKS {summary['mean_candidate_oks']:.3f}, "
          f"winner {summary['mean_winner_oks']:.3f} / loser {summary['mean_loser_oks']:.3f}; no pair: "
          f"{summary['no_pair_reasons']}) in {time.perf_counter() - t0:.0f} s", flush=True)

    pairs = pl.read_parquet(args.out / "pairs.parquet")
    train_pairs, val_pairs = split_pairs(pairs, 0.15, 0)
    parts = load_adapter_parts(vdir)
    data = preference_tensors(pairs, args.out, dirs["train"], parts)
    is_val = pairs["condition"].is_in(val_pairs["condition"]).to_numpy()
    cfg = DpoConfig(rank=args.rank, alpha=args.rank, beta=args.beta, lr=args.lr, steps=args.steps,
                    max_seconds=args.minutes * 60, checkpoint_every=50)
    training = train_alignment(parts, subset(data, np.flatnonzero(~is_val)), subset(data, np.flatnonzero(is_val)),
                               cfg, args.out, log=LOG.info)
    print(f"DPO: {training['steps']} steps in {training['seconds'] / 60:.1f} min, final loss {training['final_loss']:.4f}, "
          f"train reward accuracy {training['final_reward_accuracy']:.3f}, validation reward accuracy "
          f"{training['validation_reward_accuracy']}", flush=True)
    ev = evaluate_alignment(generator(), generator([LoraConfig(path=training["lora"])]), dirs["eval"], args.out,
                            detector, calibration, th, project_seed=0, log=LOG)
    (args.out / "results.json").write_text(json.dumps({"preferences": summary, "training": training,
                                                       "evaluation": ev, "config": cfg.as_dict()}, indent=1))
    print("\n== DPO alignment, held-out conditions, same seeds ==")
    print(f"mean OKS (no genuine person = 0): base {ev['oks_base']:.4f} +- {ev['std_base']:.3f} -> aligned "
          f"{ev['oks_aligned']:.4f} +- {ev['std_aligned']:.3f}; OKS error reduction {ev['oks_error_reduction']:.3f} "
          f"(target >= 0.25)")
    print(f"paired: mean diff {ev['mean_diff']:+.4f} (95% CI {ev['ci_low']:+.4f} .. {ev['ci_high']:+.4f}), Wilcoxon "
          f"p = {ev['p_value']:.3g} (target < 0.01), wins/losses {ev['wins']}/{ev['losses']} of {ev['n']}")
    print(f"mean OKS over detected: base {ev['oks_detected_base']} -> aligned {ev['oks_detected_aligned']}")
    print(f"detection rate {ev['detection_rate_base']:.3f} -> {ev['detection_rate_aligned']:.3f}; pass rate "
          f"{ev['pass_rate_base']:.3f} -> {ev['pass_rate_aligned']:.3f}")
    detector.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dagster wiring of stage 4: `dpo_preferences`, `aligned_checkpoint` and its blocking check."""

from dataclasses import replace
from pathlib import Path

import dagster as dg

from pd_assets.executors import gpu_op_tags
from pd_assets.generation.assets import GPU_POOL
from pd_assets.previews import markdown_image
from pd_assets.storage import atomic_write_json, partition_lock
from resources.alignment import AlignmentResource
from resources.body_model import BodyModelResource
from resources.compute import ComputeResource
from resources.dataset_store import DatasetStoreResource
from resources.generator import ControlNetConfig, GeneratorResource, LoraConfig
from resources.keypoint_detector import KeypointDetectorResource
from resources.pose_sampling import PoseSamplingResource


def _adapter(dataset_store: DatasetStoreResource):
    from pd_assets.generation.adapter_store import resolve_adapter

    try:
        return resolve_adapter("latest", dataset_store.root_path())
    except FileNotFoundError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc


def _versions(alignment: AlignmentResource, adapter_version: str, sampling: PoseSamplingResource, seed: int):
    from pd_assets.alignment.pipeline import settings_hash

    prefs = settings_hash("dpo_preferences", adapter_version, seed, sampling.width, sampling.height,
                          alignment.train_conditions, alignment.eval_conditions, alignment.candidates,
                          alignment.min_oks_gap, alignment.min_winner_oks)
    aligned = settings_hash("aligned_checkpoint", prefs, alignment.dpo_config().as_dict(),
                            alignment.validation_fraction)
    return prefs, aligned


def _generator(adapter_dir: Path, report: dict, compute: ComputeResource, loras: list[LoraConfig] | None = None):
    return GeneratorResource(
        backend="diffusers", control_adapter=str(adapter_dir), steps=report["sample_steps"],
        guidance=report["guidance"], dtype="bfloat16" if compute.torch_device().startswith("cuda") else "float32",
        loras=loras or [],
    ).build(compute.torch_device(), batch_size=compute.batch_size)


@dg.asset(key="dpo_preferences", group_name="alignment", kinds={"pytorch", "parquet"}, deps=["control_adapter"],
          pool=GPU_POOL, op_tags=gpu_op_tags(1))
def dpo_preferences(context: dg.AssetExecutionContext, alignment: AlignmentResource, compute: ComputeResource,
                    body_model: BodyModelResource, pose_sampling: PoseSamplingResource,
                    dataset_store: DatasetStoreResource, keypoint_detector: KeypointDetectorResource
                    ) -> dg.MaterializeResult:
    """K candidates per alignment condition from the newest passed control adapter, scored
    by the curation scorer, and the winner/loser pairs kept by the method's rules. The
    conditions come from their own seed namespace: never dataset samples."""
    from pd_assets.alignment.pipeline import PREFERENCES_DIR, build_preferences
    from pd_assets.alignment.preference_data import NoPairsError, build_conditions
    from pd_assets.curation.filters import FilterThresholds
    from pd_assets.poses.assets import settings_from

    adapter_dir, adapter = _adapter(dataset_store)
    version, _ = _versions(alignment, adapter["version"], pose_sampling, compute.seed)
    out = dataset_store.root_path() / PREFERENCES_DIR / version
    base = settings_from(pose_sampling)
    with partition_lock(dataset_store.root_path(), "dpo_preferences", version, timeout_s=60.0):
        dirs = build_conditions(lambda n: replace(base, samples_per_shard=n, mined=None), body_model.load(device=compute.torch_device()), out, compute.seed,
                                {"train": alignment.train_conditions, "eval": alignment.eval_conditions})
        try:
            summary = build_preferences(_generator(adapter_dir, adapter, compute), dirs["train"], out,
                                        alignment.candidates, compute.seed, keypoint_detector.build(),
                                        keypoint_detector.load_calibration(), FilterThresholds(),
                                        alignment.pair_rule(), log=context.log)
        except NoPairsError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
        atomic_write_json(out / "report.json", {"version": version, "control_adapter": adapter["version"],
                                                "candidates": alignment.candidates, **summary})
    return dg.MaterializeResult(metadata={
        "version": version, "control_adapter": adapter["version"], "path": dg.MetadataValue.path(str(out)),
        "num_conditions": summary["num_conditions"], "num_pairs": summary["num_pairs"],
        "conditions_without_pair": dg.MetadataValue.json(summary["no_pair_reasons"] or {"none": 0}),
        "genuine_person_rate": round(summary["genuine_rate"], 3),
        "mean_candidate_oks": round(summary["mean_candidate_oks"], 3),
        "mean_winner_oks": round(summary["mean_winner_oks"], 3), "mean_loser_oks": round(summary["mean_loser_oks"], 3),
    })


@dg.asset(key="aligned_checkpoint", group_name="alignment", kinds={"pytorch", "safetensors"},
          deps=["dpo_preferences"], pool=GPU_POOL, op_tags=gpu_op_tags(1))
def aligned_checkpoint(context: dg.AssetExecutionContext, alignment: AlignmentResource, compute: ComputeResource,
                       pose_sampling: PoseSamplingResource, dataset_store: DatasetStoreResource,
                       keypoint_detector: KeypointDetectorResource) -> dg.MaterializeResult:
    """A DPO LoRA on the control adapter's denoiser (adapter frozen; reference = LoRA off),
    trained on dpo_preferences, with held-out OKS before and after (same seeds) and a
    paired significance test. raw_generations stacks it with `generator.aligned=latest`."""
    import numpy as np
    import polars as pl

    from pd_assets.alignment.pipeline import (
        ALIGNED_DIR, PREFERENCES_DIR, evaluate_alignment, load_adapter_parts, preference_tensors, split_pairs, subset,
        train_alignment, write_report,
    )
    from pd_assets.curation.filters import FilterThresholds
    from pd_assets.storage import file_sha256

    adapter_dir, adapter = _adapter(dataset_store)
    prefs_version, version = _versions(alignment, adapter["version"], pose_sampling, compute.seed)
    prefs = dataset_store.root_path() / PREFERENCES_DIR / prefs_version
    if not (prefs / "report.json").is_file():
        raise dg.Failure(f"dpo_preferences {prefs_version} for the current control adapter is not materialised "
                         f"({prefs}): materialise dpo_preferences first", allow_retries=False)
    out = dataset_store.root_path() / ALIGNED_DIR / version
    device = compute.torch_device()
    with partition_lock(dataset_store.root_path(), "aligned_checkpoint", version, timeout_s=60.0):
        pairs = pl.read_parquet(prefs / "pairs.parquet")
        train_pairs, val_pairs = split_pairs(pairs, alignment.validation_fraction, alignment.seed)
        parts = load_adapter_parts(adapter_dir, device)
        data = preference_tensors(pairs, prefs, prefs / "conditions" / "train", parts, device)
        is_val = pairs["condition"].is_in(val_pairs["condition"]).to_numpy()
        cfg = alignment.dpo_config("bf16" if device.startswith("cuda") else "no")
        training = train_alignment(parts, subset(data, np.flatnonzero(~is_val)),
                                   subset(data, np.flatnonzero(is_val)) if is_val.any() else None, cfg, out,
                                   device=device, log=context.log.info)
        detector, calibration = keypoint_detector.build(), keypoint_detector.load_calibration()
        evaluation = evaluate_alignment(
            _generator(adapter_dir, adapter, compute),
            _generator(adapter_dir, adapter, compute, [LoraConfig(path=training["lora"])]),
            prefs / "conditions" / "eval", out, detector, calibration, FilterThresholds(),
            project_seed=compute.seed, log=context.log)
        report = {"version": version, "control_adapter": adapter["version"], "dpo_preferences": prefs_version,
                  "num_pairs": pairs.height, "num_train_pairs": train_pairs.height, "num_val_pairs": val_pairs.height,
                  "config": cfg.as_dict(), "training": training, "evaluation": evaluation,
                  "lora_sha256": file_sha256(training["lora"])}
        write_report(out, report)
    ev = evaluation
    from PIL import Image

    with Image.open(out / "training_curve.png") as curve:
        curve_md = markdown_image(curve.convert("RGB"), "DPO loss")
    return dg.MaterializeResult(metadata={
        "version": version, "path": dg.MetadataValue.path(str(out)), "num_pairs": pairs.height,
        "oks_base": round(ev["oks_base"], 4), "oks_aligned": round(ev["oks_aligned"], 4),
        "oks_error_reduction": round(ev["oks_error_reduction"], 4), "p_value": float(f"{ev['p_value']:.3g}"),
        "detection_rate_base": round(ev["detection_rate_base"], 3),
        "detection_rate_aligned": round(ev["detection_rate_aligned"], 3),
        "pass_rate_base": round(ev["pass_rate_base"], 3), "pass_rate_aligned": round(ev["pass_rate_aligned"], 3),
        "final_reward_accuracy": training["final_reward_accuracy"] if training["final_reward_accuracy"] is not None else "none",
        "validation_reward_accuracy": training["validation_reward_accuracy"]
        if training["validation_reward_accuracy"] is not None else "none",
        "steps": training["steps"], "train_seconds": training["seconds"], "lora_sha256": report["lora_sha256"],
        "training_curve": dg.MetadataValue.md(curve_md),
    })


def evaluate_not_worse(oks_base: float, oks_aligned: float, max_drop: float) -> tuple[bool, str]:
    drop = oks_base - oks_aligned
    if drop > max_drop:
        return False, f"held-out mean OKS fell by {drop:.4f} (base {oks_base:.4f} -> {oks_aligned:.4f}) > {max_drop}"
    return True, f"held-out mean OKS {oks_base:.4f} -> {oks_aligned:.4f} (allowed drop {max_drop})"


@dg.asset_check(asset="aligned_checkpoint", blocking=True,
                description="Aligned generator not worse than the base on held-out OKS beyond a tolerance")
def aligned_not_worse(context: dg.AssetCheckExecutionContext, alignment: AlignmentResource,
                      dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    from pd_assets.alignment.pipeline import ALIGNED_DIR
    from pd_assets.generation.adapter_store import latest_materialized_report, mark_passed

    vdir, report = latest_materialized_report(context.instance, ALIGNED_DIR, dataset_store.root_path(), "report.json")
    ev = report["evaluation"]
    ok, why = evaluate_not_worse(ev["oks_base"], ev["oks_aligned"], alignment.max_oks_drop)
    if ok:
        mark_passed(vdir, why)
    return dg.AssetCheckResult(passed=ok, description=why, metadata={
        "oks_base": ev["oks_base"], "oks_aligned": ev["oks_aligned"], "p_value": ev["p_value"],
        "max_oks_drop": alignment.max_oks_drop})


ALIGNMENT_ASSETS = [dpo_preferences, aligned_checkpoint]
ALIGNMENT_CHECKS = [aligned_not_worse]

"""DPO alignment end to end, pure of Dagster: preferences, training, before/after evaluation.

    aligned_checkpoint/{version}/
        work/                        DPO checkpoints (resume after a kill)
        lora/pytorch_lora_weights.safetensors   the DPO LoRA (diffusers format)
        eval/{base,aligned}/         held-out generations, same seeds, scored
        evaluation.parquet           per held-out condition: base and aligned OKS
        training_curve.png, report.json (written last)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from pd_assets.alignment.dpo_training import DpoConfig, PreferenceTensors, implicit_reward_accuracy, save_lora, train_dpo
from pd_assets.alignment.paired_stats import compare_paired
from pd_assets.alignment.preference_data import (
    candidate_table, generate_candidates, pair_table, require_pairs,
)
from pd_assets.generation.adapter_eval import score_partition, summarise
from pd_assets.storage import atomic_write_bytes, atomic_write_json

PREFERENCES_DIR = "dpo_preferences"
ALIGNED_DIR = "aligned_checkpoint"


def settings_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_parquet(path: Path, df: pl.DataFrame) -> None:
    import io

    buf = io.BytesIO()
    df.write_parquet(buf)
    atomic_write_bytes(path, buf.getvalue())


def build_preferences(generator, train_dir: Path, out: Path, k: int, project_seed: int, detector, calibration,
                      thresholds, rule, log=None) -> dict[str, Any]:
    """K scored candidates per training condition and the pairs they give (resumable)."""
    cand_dirs = generate_candidates(generator, train_dir, out, k, project_seed, log=log)
    records, provenance = [], []
    for cdir in cand_dirs:
        records.append(score_partition(train_dir, cdir, detector, calibration, thresholds, cdir / "_scores"))
        provenance.append({r["sample_id"]: r for r in pl.read_parquet(cdir / "provenance.parquet").to_dicts()})
    candidates = candidate_table(records, provenance)
    pairs, reasons = pair_table(candidates, rule)
    require_pairs(pairs, candidates, reasons, rule)
    write_parquet(out / "candidates.parquet", candidates)
    write_parquet(out / "pairs.parquet", pairs)
    return {"num_conditions": int(candidates["condition"].n_unique()), "num_candidates": candidates.height,
            "num_pairs": pairs.height, "no_pair_reasons": dict(reasons),
            "genuine_rate": float(candidates["genuine"].mean()), "mean_candidate_oks": float(candidates["score"].mean()),
            "mean_winner_oks": float(pairs["oks_winner"].mean()), "mean_loser_oks": float(pairs["oks_loser"].mean())}


def load_adapter_parts(adapter_dir: Path, device: str = "cpu") -> dict:
    """The adapter's pipeline components (denoiser, ControlNets, autoencoder, text encoder);
    `concat_control` names the control a concat denoiser reads (None with ControlNets)."""
    from diffusers import ControlNetModel, DiffusionPipeline

    import pd_assets.generation.patch_autoencoder  # noqa: F401  (diffusers loads only imported classes)
    from pd_assets.generation.adapter_store import read_report
    from pd_assets.generation.pipelines import quiet_loading

    report = read_report(adapter_dir)
    concat = report.get("family") == "sd15-concat"
    with quiet_loading():  # e.g. "Expected types for vae": the from-scratch autoencoder is not an AutoencoderKL
        # the class model_index.json names: a plain SD pipeline, or InstructPix2Pix for a concat denoiser
        pipe = DiffusionPipeline.from_pretrained(adapter_dir / report["pipeline"], safety_checker=None,
                                                 requires_safety_checker=False)
        cns = {} if concat else {c: ControlNetModel.from_pretrained(adapter_dir / rel).to(device)
                                 for c, rel in report["controlnets"].items()}
    return {"pipe": pipe, "unet": pipe.unet.to(device), "vae": pipe.vae.to(device), "controlnets": cns,
            "concat_control": next(iter(report["controlnets"])) if concat else None,
            "scheduler": pipe.scheduler, "tokenizer": pipe.tokenizer, "text_encoder": pipe.text_encoder.to(device),
            "report": report}


def preference_tensors(pairs: pl.DataFrame, prefs_dir: Path, train_dir: Path, parts: dict,
                       device: str = "cpu") -> PreferenceTensors:
    """Encode winners and losers once (autoencoder means x scale), with controls and prompts."""
    from PIL import Image

    from pd_assets.generation.adapter_training import encode_latents, encode_prompts
    from pd_assets.generation.control_input import encode_control_latents
    from pd_assets.generation.generator import control_to_image
    from pd_assets.safe_io import read_label_rows, resolve_inside

    labels = {r["sample_id"]: r for r in read_label_rows(train_dir, "materialise dpo_preferences again")}

    def image(k: int, cid: str) -> np.ndarray:
        with Image.open(prefs_dir / "candidates" / f"k{k}" / "images" / f"{cid}.png") as im:
            return np.asarray(im.convert("RGB"))

    rows = pairs.to_dicts()
    winners = np.stack([image(r["winner_k"], r["condition"]) for r in rows])
    losers = np.stack([image(r["loser_k"], r["condition"]) for r in rows])
    scale = parts["vae"].config.scaling_factor
    controls = {}
    concat = parts.get("concat_control")
    for name in [*parts["controlnets"], *([concat] if concat else [])]:
        maps = []
        for r in rows:
            label = labels[r["condition"]]
            with Image.open(resolve_inside(train_dir, label[f"control_{name}"], what=f"control_{name}")) as im:
                maps.append(np.asarray(control_to_image(name, np.asarray(im), winners.shape[2], winners.shape[1])))
        controls[name] = torch.from_numpy(np.stack(maps)).permute(0, 3, 1, 2).float() / 255.0
    text = encode_prompts(parts["tokenizer"], parts["text_encoder"], [labels[r["condition"]]["prompt"] or ""
                                                                        for r in rows], device)
    control_latents = encode_control_latents(parts["vae"], controls.pop(concat).to(device)) if concat else None
    return PreferenceTensors(winners=encode_latents(parts["vae"], winners, device) * scale,
                             losers=encode_latents(parts["vae"], losers, device) * scale, controls=controls, text=text,
                             control_latents=control_latents)


def split_pairs(pairs: pl.DataFrame, fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, validation) pairs, split by condition with a fixed seed."""
    if fraction <= 0 or pairs.height < 4:
        return pairs, pairs.head(0)
    rng = np.random.Generator(np.random.PCG64(seed))
    order = rng.permutation(pairs.height)
    n_val = max(1, int(round(fraction * pairs.height)))
    val = np.zeros(pairs.height, bool)
    val[order[:n_val]] = True
    return pairs.filter(pl.Series(~val)), pairs.filter(pl.Series(val))


def subset(data: PreferenceTensors, idx: np.ndarray) -> PreferenceTensors:
    t = torch.as_tensor(idx, dtype=torch.long)
    return PreferenceTensors(winners=data.winners[t], losers=data.losers[t],
                             controls={k: v[t] for k, v in data.controls.items()}, text=data.text[t],
                             control_latents=None if data.control_latents is None else data.control_latents[t])


def train_alignment(parts: dict, data: PreferenceTensors, val: PreferenceTensors | None, cfg: DpoConfig, out: Path,
                    *, device: str = "cpu", log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the DPO LoRA (resuming from out/work) and write it to out/lora."""
    from pd_assets.generation.adapter_report import loss_curve_image

    result = train_dpo(parts["unet"], parts["controlnets"], parts["scheduler"], data, cfg, out / "work",
                       device=device, log=log)
    lora_file = save_lora(parts["unet"], out / ".lora-staging")
    final = out / "lora"
    final.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(final / lora_file.name, lora_file.read_bytes())
    lora_file.unlink()
    (out / ".lora-staging").rmdir()
    loss_curve_image(result.losses, "DPO loss").save(out / "training_curve.png")
    logs = result.logs[-20:]
    val_acc = (implicit_reward_accuracy(parts["unet"], parts["controlnets"], parts["scheduler"], val, cfg, device)
               if val is not None and len(val) else None)
    return {"steps": result.step, "seconds": round(result.seconds, 1), "final_loss": result.final_loss,
            "final_reward_accuracy": float(np.mean([entry.get("reward_accuracy", np.nan) for entry in logs])) if logs else None,
            "validation_reward_accuracy": val_acc, "stopped_by_budget": result.stopped_by_budget,
            "lora": str(final / lora_file.name)}


def condition_scores(eval_dir: Path, gen_dir: Path, detector, calibration, thresholds) -> tuple[pl.DataFrame, Any]:
    from pd_assets.alignment.preferences import candidate_score
    from pd_assets.generation.adapter_eval import keypoints_inside
    from pd_assets.thresholds import MIN_KEYPOINTS_INSIDE

    records = score_partition(eval_dir, gen_dir, detector, calibration, thresholds, gen_dir / "_scores")
    rows = []
    for r in records:
        genuine = (r.get("person_count") or 0) > 0 and keypoints_inside(
            r.get("det_keypoints2d"), int(r["width"]), int(r["height"])) >= MIN_KEYPOINTS_INSIDE
        rows.append({"condition": r["sample_id"], "score": candidate_score(r.get("oks"), genuine),
                     "kept": bool(r["kept"]), "genuine": bool(genuine)})
    return pl.DataFrame(rows).sort("condition"), summarise(records, 0.0)


def evaluate_alignment(base_gen, aligned_gen, eval_dir: Path, out: Path, detector, calibration, thresholds, *,
                       project_seed: int, log=None) -> dict[str, Any]:
    """Base vs aligned on the held-out conditions with the same seeds; paired statistics."""
    from pd_assets.alignment.preference_data import CONDITION_SPLITS
    from pd_assets.generation.partition import generate_partition

    round_name, shard = CONDITION_SPLITS["eval"]
    tables, summaries = {}, {}
    for name, gen in (("base", base_gen), ("aligned", aligned_gen)):
        generate_partition(gen, eval_dir, out / "eval" / name, round_name=round_name, shard=shard,
                           project_seed=project_seed, image_size=lambda w, h: (w, h), log=log)
        tables[name], summaries[name] = condition_scores(eval_dir, out / "eval" / name, detector, calibration,
                                                         thresholds)
    joined = tables["base"].join(tables["aligned"], on="condition", suffix="_aligned")
    write_parquet(out / "evaluation.parquet", joined)
    cmp = compare_paired(joined["score"].to_numpy(), joined["score_aligned"].to_numpy())
    b, a = summaries["base"], summaries["aligned"]
    return {**cmp.as_dict(),
            "oks_base": cmp.mean_base, "oks_aligned": cmp.mean_aligned, "oks_error_reduction": cmp.error_reduction,
            "oks_detected_base": b.oks_mean, "oks_detected_aligned": a.oks_mean,
            "detection_rate_base": b.detection_rate, "detection_rate_aligned": a.detection_rate,
            "pass_rate_base": b.pass_rate, "pass_rate_aligned": a.pass_rate}


def write_report(out: Path, report: dict[str, Any]) -> None:
    atomic_write_json(out / "report.json", report)

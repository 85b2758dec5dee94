"""One control-adapter version end to end: pairs -> training -> held-out evaluation -> report.

Pure of Dagster: the asset calls `build_adapter_version` under a lock and turns the
returned report into metadata. Re-running the same settings on the same pairs resumes the
unfinished version (checkpoints in `work/`) or reuses the finished one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pd_assets.generation.adapter_pairs import (
    PairSet, pairs_from_folder, pairs_from_partitions, pairs_from_render, pairs_from_webdataset,
)
from pd_assets.generation.adapter_store import REPORT, adapter_version, read_report, version_dir
from pd_assets.storage import atomic_directory, atomic_write_json, file_sha256


@dataclass
class AdapterBuild:
    version: str
    vdir: Path
    report: dict[str, Any]
    reused: bool


def load_pairs(source: str, root: Path, partitions: list[str], paths: list[str], controls: tuple[str, ...],
               min_pairs: int, *, project_seed: int = 0) -> PairSet:
    from pd_assets.partitions import split_key

    if source == "partitions":
        return pairs_from_partitions(root, [split_key(k) for k in partitions], controls, min_pairs)
    if source == "render":
        from pd_assets.generation.render_backend import RenderConfig, RenderGenerator

        return pairs_from_render(root, [split_key(k) for k in partitions], controls, RenderGenerator(RenderConfig()),
                                 project_seed, min_pairs)
    if not paths:
        raise ValueError(f"control_adapter.pair_source={source} needs control_adapter.pair_paths")
    if source == "folder":
        return pairs_from_folder(Path(paths[0]), controls, min_pairs)
    return pairs_from_webdataset([Path(p) for p in paths], controls, min_pairs)


def weights_hashes(model_dir: Path) -> dict[str, str]:
    """sha256 of every weight file written, by path relative to the model folder."""
    return {str(p.relative_to(model_dir)): file_sha256(p) for p in sorted(Path(model_dir).rglob("*.safetensors"))}


def build_adapter_version(pairs: PairSet, cfg, root: Path, heldout_pose_dir: Path, heldout_key: str, *,
                          generator_for: Callable[[Path, dict, str], Any], evaluate: Callable[..., Any],
                          device: str = "cpu", log: Callable[[str], None] | None = None,
                          provenance: dict[str, Any] | None = None) -> AdapterBuild:
    """Train (or resume, or reuse) the version of `cfg` on `pairs`, evaluate it on the held-out
    pose_pool partition, and write `adapter.json` last."""
    from pd_assets.generation.adapter_report import contact_sheet_for, loss_curve_image
    from pd_assets.generation.adapter_training import train_adapter

    version = adapter_version(cfg.as_dict(), pairs)
    vdir = version_dir(root, version)
    if (vdir / REPORT).is_file():
        return AdapterBuild(version, vdir, read_report(vdir), reused=True)
    started = time.perf_counter()
    model_dir = vdir / "model"
    with atomic_directory(model_dir) as staging:
        result = train_adapter(pairs, cfg, vdir / "work", staging, device=device, log=log)
        # where each control is read: a ControlNet folder, or the concat denoiser pipeline/unet
        control_rel = {name: Path("model") / p.relative_to(staging) for name, p in result.controlnet_dirs.items()}
    family = result.info["family"]
    controlnets = {name: str(vdir / rel) for name, rel in control_rel.items()}
    generator = generator_for(model_dir / "pipeline", controlnets, family)
    evaluation, records = evaluate(generator, heldout_pose_dir, vdir / "eval")
    contact_sheet_for(heldout_pose_dir, vdir / "eval", records).save(vdir / "contact_sheet.png")
    loss_curve_image(result.stages["denoiser"].losses, "denoiser loss" if family == "sd15-concat"
                     else "denoiser + ControlNet loss").save(vdir / "loss_curve.png")
    stages = {name: {"steps": s.step, "seconds": round(s.seconds, 1), "final_loss": s.final_loss,
                     "stopped_by_budget": s.stopped_by_budget} for name, s in result.stages.items()}
    report = {
        "version": version, "base": cfg.base, "family": family, "controls": list(cfg.controls),
        "pipeline": "model/pipeline", "controlnets": {k: rel.as_posix() for k, rel in control_rel.items()},
        "sample_steps": cfg.sample_steps, "guidance": cfg.guidance, "image_guidance": cfg.image_guidance,
        "num_pairs": len(pairs), "pair_sources": pairs.sources, "image_size": list(pairs.size),
        "config": cfg.as_dict(), "stages": stages, "latent_scale": result.latent_scale,
        "channel_loss_weights": result.info.get("channel_loss_weights"),
        "train_seconds": round(result.seconds, 1), "wall_seconds": round(time.perf_counter() - started, 1),
        "heldout_partition": heldout_key, "evaluation": evaluation.as_dict(),
        "weights_sha256": weights_hashes(model_dir), **(provenance or {}),
    }
    atomic_write_json(vdir / REPORT, report)
    return AdapterBuild(version, vdir, report, reused=False)

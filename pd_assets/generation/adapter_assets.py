"""Dagster wiring of the control adapter (stage 3 training): `control_adapter` and its check."""


import dagster as dg

from pd_assets.generation.adapter_build import build_adapter_version, load_pairs
from pd_assets.executors import gpu_op_tags
from pd_assets.generation.adapter_store import REPORT, control_scale, latest_materialized_report, mark_passed
from pd_assets.generation.assets import GPU_POOL
from pd_assets.partitions import split_key
from pd_assets.previews import markdown_image
from pd_assets.storage import partition_lock
from resources.compute import ComputeResource
from resources.control_adapter import ControlAdapterResource
from resources.dataset_store import DatasetStoreResource
from resources.generator import ControlNetConfig, GeneratorResource
from resources.keypoint_detector import KeypointDetectorResource


def _image_md(path, alt: str) -> str:
    from PIL import Image

    with Image.open(path) as img:
        return markdown_image(img.convert("RGB"), alt, max_side=768)


@dg.asset(
    key="control_adapter",
    group_name="generation",
    kinds={"pytorch", "diffusers", "safetensors"},
    deps=["pose_pool", "raw_generations"],
    pool=GPU_POOL,
    op_tags=gpu_op_tags(1),
)
def control_adapter(
    context: dg.AssetExecutionContext,
    control_adapter: ControlAdapterResource,
    compute: ComputeResource,
    dataset_store: DatasetStoreResource,
    keypoint_detector: KeypointDetectorResource,
) -> dg.MaterializeResult:
    """The generator's control adapter, trained on (control map, image) pairs: ControlNets
    on a pretrained SD base, or (base=scratch) a small latent-diffusion model trained from
    nothing that reads the control as extra denoiser input channels (or a ControlNet).
    Evaluated on held-out pose_pool controls by the curation scorer; raw_generations uses it with `generator.control_adapter=latest`."""
    from pd_assets.curation.filters import FilterThresholds
    from pd_assets.generation.adapter_eval import evaluate_generator

    cfg = control_adapter.training_config(compute.torch_device())
    root = dataset_store.root_path()
    held_round, held_shard = split_key(control_adapter.heldout_partition)
    if control_adapter.pair_source in ("partitions", "render") and control_adapter.heldout_partition in control_adapter.pair_partitions:
        raise dg.Failure(f"control_adapter.heldout_partition {control_adapter.heldout_partition} is also a training "
                         "partition: pick a pose_pool partition that is not in pair_partitions", allow_retries=False)
    held_dir = dataset_store.partition_dir("pose_pool", held_round, held_shard)
    if not (held_dir / "labels.parquet").is_file():
        raise dg.Failure(f"the held-out pose_pool partition {control_adapter.heldout_partition} is not materialised "
                         f"({held_dir}): materialise pose_pool for it first", allow_retries=False)
    pairs = load_pairs(control_adapter.pair_source, root, control_adapter.pair_partitions,
                       control_adapter.pair_paths, tuple(control_adapter.controls), control_adapter.min_pairs,
                       project_seed=compute.seed)
    context.log.info(f"{len(pairs)} training pairs at {pairs.size[0]}x{pairs.size[1]} from {', '.join(pairs.sources)}")
    detector = keypoint_detector.build()
    calibration = keypoint_detector.load_calibration()

    def generator_for(pipeline_dir, controlnets, family):
        return GeneratorResource(
            backend="diffusers", model=str(pipeline_dir), family=family, steps=cfg.sample_steps,
            guidance=cfg.guidance, dtype="float32" if not compute.torch_device().startswith("cuda") else "bfloat16",
            controlnets=[ControlNetConfig(path_or_id=p, control=c, scale=control_scale(family, cfg.image_guidance))
                         for c, p in controlnets.items()],
        ).build(compute.torch_device(), batch_size=compute.batch_size, log=context.log)

    def evaluate(generator, pose_dir, out_dir):
        return evaluate_generator(generator, pose_dir, out_dir, detector, calibration, FilterThresholds(),
                                  round_name=held_round, shard=held_shard, project_seed=compute.seed, log=context.log)

    with partition_lock(root, "control_adapter", "train", timeout_s=60.0):
        build = build_adapter_version(
            pairs, cfg, root, held_dir, control_adapter.heldout_partition, generator_for=generator_for,
            evaluate=evaluate, device=compute.torch_device(), log=context.log.info,
            provenance={"project_seed": compute.seed, "detector": detector.provenance()},
        )
    r, ev = build.report, build.report["evaluation"]
    context.log.info(f"control adapter {build.version} ({'reused' if build.reused else 'trained'}): detection "
                     f"{ev['detection_rate']:.3f}, median OKS {ev['oks_median']}, pass rate {ev['pass_rate']:.3f}")
    return dg.MaterializeResult(metadata={
        "version": build.version,
        "reused": build.reused,
        "path": dg.MetadataValue.path(str(build.vdir)),
        "num_pairs": r["num_pairs"],
        "pair_sources": ", ".join(r["pair_sources"]),
        "steps": {k: v["steps"] for k, v in r["stages"].items()},
        "train_seconds": dg.MetadataValue.float(r["train_seconds"]),
        "final_loss": dg.MetadataValue.float(round(r["stages"]["denoiser"]["final_loss"], 5)),
        "heldout_partition": r["heldout_partition"],
        "detection_rate": dg.MetadataValue.float(round(ev["detection_rate"], 3)),
        "oks_median": dg.MetadataValue.float(round(ev["oks_median"], 3)) if ev["oks_median"] is not None else "none",
        "oks_mean": dg.MetadataValue.float(round(ev["oks_mean"], 3)) if ev["oks_mean"] is not None else "none",
        "pass_rate": dg.MetadataValue.float(round(ev["pass_rate"], 3)),
        "images_per_second": dg.MetadataValue.float(round(ev["images_per_second"], 3)),
        "weights_sha256": dg.MetadataValue.json(r["weights_sha256"]),
        "loss_curve": dg.MetadataValue.md(_image_md(build.vdir / "loss_curve.png", "loss curve")),
        "contact_sheet": dg.MetadataValue.md(
            "control | image | image with label keypoints (green) and detected ones (magenta)\n\n"
            + _image_md(build.vdir / "contact_sheet.png", "held-out generations")),
    })


def evaluate_adapter_floors(evaluation: dict, min_detection_rate: float, min_median_oks: float) -> tuple[bool, str]:
    """Whether a held-out evaluation meets the floors, and why not."""
    rate, median = evaluation["detection_rate"], evaluation["oks_median"]
    if rate < min_detection_rate:
        return False, f"detection rate {rate:.3f} < {min_detection_rate}"
    if min_median_oks > 0 and (median is None or median < min_median_oks):
        return False, f"median OKS {median} < {min_median_oks}"
    return True, f"detection rate {rate:.3f} >= {min_detection_rate}, median OKS {median} >= {min_median_oks}"


@dg.asset_check(asset="control_adapter", blocking=True,
                description="Held-out detection rate and median OKS above the configured floors")
def control_adapter_meets_floors(context: dg.AssetCheckExecutionContext, control_adapter: ControlAdapterResource,
                                 dataset_store: DatasetStoreResource) -> dg.AssetCheckResult:
    vdir, report = latest_materialized_report(context.instance, "control_adapter", dataset_store.root_path(), REPORT)
    version = vdir.name
    ok, why = evaluate_adapter_floors(report["evaluation"], control_adapter.min_detection_rate,
                                      control_adapter.min_median_oks)
    if ok:
        mark_passed(vdir, why)
    return dg.AssetCheckResult(passed=ok, description=why, metadata={
        "version": version, "detection_rate": report["evaluation"]["detection_rate"],
        "oks_median": report["evaluation"]["oks_median"] if report["evaluation"]["oks_median"] is not None else "none",
        "min_detection_rate": control_adapter.min_detection_rate, "min_median_oks": control_adapter.min_median_oks,
    })


ADAPTER_ASSETS = [control_adapter]
ADAPTER_CHECKS = [control_adapter_meets_floors]

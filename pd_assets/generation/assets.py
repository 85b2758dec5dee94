"""raw_generations: one image per pose sample (PoseDreamer stage 3, the generator)."""


import dagster as dg
from PIL import Image

from pd_assets.executors import gpu_op_tags, k8s_gpu_tags  # noqa: F401 (k8s_gpu_tags: re-exported)
from pd_assets.generation.partition import PartitionReport, generate_partition
from pd_assets.generation.store import PosePoolMissingError
from pd_assets.metadata import tidy
from pd_assets.partitions import round_shard_partitions, split_key
from pd_assets.previews import markdown_image
from pd_assets.storage import partition_lock
from resources.compute import ComputeResource
from resources.dataset_store import DatasetStoreResource
from resources.generator import GeneratorResource

GPU_POOL = "gpu"


def _preview_markdown(report: PartitionReport, width: int = 480) -> str:
    """The contact sheet inline (shared `markdown_image`), with the path of the full-size PNG."""
    with Image.open(report.preview_path) as img:
        sheet = img.convert("RGB")
    return f"{markdown_image(sheet, 'raw_generations preview', max_side=width)}\n\n`{report.preview_path}`"


def _failures_markdown(reports: list[PartitionReport], show: int = 10) -> str:
    failures = [(sid, err) for r in reports for sid, err in r.failures.items()]
    if not failures:
        return "none"
    lines = [f"- `{sid}`: {err}" for sid, err in failures[:show]]
    if len(failures) > show:
        lines.append(f"- ... and {len(failures) - show} more (provenance.parquet, column `error`)")
    return "\n".join(lines)


@dg.asset(
    key="raw_generations",
    group_name="generation",
    # kinds are fixed when the asset is defined, and the backend is the generator resource's
    # choice (render: numpy/PIL; diffusers: PyTorch): only what holds for both is listed
    kinds={"python", "parquet"},
    partitions_def=round_shard_partitions,
    deps=["pose_pool"],
    pool=GPU_POOL,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=4),
    op_tags=gpu_op_tags(1),  # a GPU per step on Kubernetes and on Dask (pd_assets/executors.py)
)
def raw_generations(
    context: dg.AssetExecutionContext,
    generator: GeneratorResource,
    compute: ComputeResource,
    dataset_store: DatasetStoreResource,
) -> dg.MaterializeResult:
    """One generated image per pose_pool sample, with provenance (model and weight hashes,
    LoRAs, true seed, scheduler, steps, guidance, prompt, size, device) and a contact
    sheet. Resumable: verified images of an earlier run are kept, the rest made. A sample
    whose control map is missing or unsafe gets no image and a provenance `error` (the
    whole partition fails instead under `generator.strict`); timings are metadata only.
    The backend (render, or diffusers on PyTorch) is the `generator` resource's; the
    `generator` metadata entry names the one that made each materialisation."""
    gen = generator.build(compute.torch_device(), compute.dtype, batch_size=compute.batch_size, log=context.log,
                          store_root=dataset_store.root_path())
    reports: list[PartitionReport] = []
    for key in context.partition_keys:
        round_name, shard = split_key(key)
        pose_dir = dataset_store.partition_dir("pose_pool", round_name, shard)
        try:
            # images are written in place (resumable): one run per partition at a time
            with partition_lock(dataset_store.root_path(), "raw_generations", round_name, shard):
                report = generate_partition(
                    gen, pose_dir, dataset_store.partition_dir("raw_generations", round_name, shard),
                    round_name=round_name, shard=shard, project_seed=compute.seed,
                    image_size=generator.image_size, log=context.log, strict=generator.strict,
                )
        except PosePoolMissingError as exc:
            raise dg.Failure(
                description=(f"pose_pool partition {key} is missing ({exc}): materialise pose_pool for "
                             f"partition {key} first, then raw_generations"),
                allow_retries=False,
            ) from exc
        context.log.info(f"{key}: {report.num_images} samples ({report.num_generated} generated, "
                         f"{report.num_reused} reused, {report.num_failed} failed) at "
                         f"{report.images_per_second:.2f} images/s")
        reports.append(report)
    generated = sum(r.num_generated for r in reports)
    seconds = sum(r.generate_seconds for r in reports)
    first = reports[0]
    return dg.MaterializeResult(metadata=tidy({
        "num_images": sum(r.num_images for r in reports),
        "num_generated": generated,
        "num_reused": sum(r.num_reused for r in reports),
        # samples with no image (a missing or unsafe control map): provenance `error` says why
        "num_failed": sum(r.num_failed for r in reports),
        "failed": dg.MetadataValue.md(_failures_markdown(reports)),
        "images_per_second": float(generated / seconds) if seconds > 0 else 0.0,
        "generate_seconds": float(seconds),
        "generator": generator.describe(),
        "model_hash": gen.provenance_fields()["model_hash"],
        "partitions": [str(k) for k in context.partition_keys],
        # a backfill run may cover several partitions; this metadata is shared by all of them
        "num_images_by_partition": {str(k): r.num_images for k, r in zip(context.partition_keys, reports, strict=True)},
        "path": dg.MetadataValue.path(str(first.out_dir)),
        "provenance": dg.MetadataValue.path(str(first.provenance_path)),
        "preview": dg.MetadataValue.md(_preview_markdown(first)),
    }))


GENERATION_ASSETS = [raw_generations]

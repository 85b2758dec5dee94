"""Dagster wiring of stage 5: the `mined_hard_set` asset (one partition per round)."""

import dagster as dg

from pd_assets.mining import mined_set as layout
from pd_assets.mining.pipeline import SelectionSettings, mine_round, write_mined_set
from pd_assets.mining.training_data import load_round
from pd_assets.partitions import round_partitions, shard_partitions
from pd_assets.poses.assets import settings_from
from pd_assets.previews import markdown_image
from pd_assets.storage import atomic_directory, clean_partition_leftovers, partition_lock
from resources.body_model import BodyModelResource
from resources.compute import ComputeResource
from resources.dataset_store import DatasetStoreResource
from resources.mining import MiningResource
from resources.pose_sampling import PoseSamplingResource

ALL_SHARDS_OF_ROUND = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="round")


def _float_or_null(value) -> dg.MetadataValue:
    return dg.MetadataValue.null() if value is None else dg.MetadataValue.float(float(value))


@dg.asset(
    key="mined_hard_set",
    group_name="mining",
    partitions_def=round_partitions,
    deps=[dg.AssetDep("filtered_shards", partition_mapping=ALL_SHARDS_OF_ROUND)],
    kinds={"python", "lightgbm", "parquet"},
    pool="cpu",
)
def mined_hard_set(
    context: dg.AssetExecutionContext,
    mining: MiningResource,
    compute: ComputeResource,
    body_model: BodyModelResource,
    pose_sampling: PoseSamplingResource,
    dataset_store: DatasetStoreResource,
) -> dg.MaterializeResult:
    """The hard poses that seed the next round, and the difficulty predictor that chose them.

    Learns OKS (no person = 0) from every scored sample of the round's filtered_shards
    (kept and rejected) with LightGBM, draws a candidate pool (`pool_multiple` x the
    selection) with the round's pose sampler and camera settings under their own seeds,
    and selects by the curriculum: the hardest fraction of the schedule, a random share
    for diversity, near-duplicate poses removed. `pose_pool` of the next round reads
    `selected.parquet` from the dataset store (not a Dagster dependency: Dagster refuses
    cycles) and records this set's sha256 in every label.
    """
    round_name = context.partition_key
    root = dataset_store.root_path()
    shards = shard_partitions.get_partition_keys()
    count = mining.num_selected or len(shards) * pose_sampling.samples_per_shard
    table = load_round(root, round_name, shards)
    model = body_model.load(device=compute.torch_device())
    selection = SelectionSettings(
        count=count, pool_multiple=mining.pool_multiple,
        hardest_fraction_schedule=tuple(mining.hardest_fraction_schedule),
        diversity_share=mining.diversity_share, duplicate_distance_deg=mining.duplicate_distance_deg)
    result = mine_round(table, round_name, layout.round_index(round_name), model,
                        settings_from(pose_sampling), mining.predictor_settings(), selection,
                        compute.seed, batch_size=mining.candidate_batch_size, log=context.log.info)
    final_dir = layout.mined_dir(root, round_name)
    with partition_lock(root, "mined_hard_set", round_name):
        for leftover in clean_partition_leftovers(final_dir):
            context.log.warning(f"removed leftover of an interrupted run: {leftover}")
        with atomic_directory(final_dir) as staging:
            report = write_mined_set(result, staging, extra={
                "shards": shards, "project_seed": compute.seed, "body_model": model.name,
                "settings": {**mining.model_dump(), "num_selected": count},
            })
    image = (final_dir / layout.IMPORTANCE_NAME)
    return dg.MaterializeResult(metadata={
        "num_selected": report["num_selected"],
        "num_candidates": report["num_candidates"],
        "predictor_spearman": _float_or_null(report["predictor_spearman"]),
        "predictor_mae": dg.MetadataValue.float(report["predictor_mae"]),
        "mean_predicted_oks_selected": dg.MetadataValue.float(report["mean_predicted_oks_selected"]),
        "mean_predicted_oks_pool": dg.MetadataValue.float(report["mean_predicted_oks_pool"]),
        "bins_pool": report["bins_pool"],
        "bins_selected": report["bins_selected"],
        "bins_measured": report["training"]["bins_measured"],
        "training_samples": report["training"]["num_used"],
        "hardest_fraction": dg.MetadataValue.float(report["hardest_fraction"]),
        "duplicates_skipped": report["duplicates_skipped"],
        "selected_sha256": report["selected_sha256"],
        "feature_importance": dg.MetadataValue.md(markdown_image(_open(image), "feature importance")),
        "report": dg.MetadataValue.md((final_dir / layout.REPORT_MD_NAME).read_text()),
        "selected_path": dg.MetadataValue.path(str(final_dir / layout.SELECTED_NAME)),
        "predictor_path": dg.MetadataValue.path(str(final_dir / layout.MODEL_NAME)),
        "seconds": report["seconds"],
    })


def _open(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


MINING_ASSETS = [mined_hard_set]

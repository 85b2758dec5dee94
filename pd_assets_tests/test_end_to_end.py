"""The main job's three real assets on one partition with the `ci` profile (tiny diffusion model)."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from pd_assets.curation.assets import CURATION_ASSETS
from pd_assets.curation.checks import CURATION_CHECKS
from pd_assets.generation.assets import GENERATION_ASSETS
from pd_assets.generation.checks import GENERATION_CHECKS
from pd_assets.generation.partition import generation_seed
from pd_assets.poses.assets import POSES_ASSETS
from pd_assets.poses.checks import POSES_CHECKS
from pd_assets.report import report
from pd_assets_tests.helpers import ci_resources


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    result = dg.materialize(
        [*POSES_ASSETS, *GENERATION_ASSETS, *CURATION_ASSETS, *POSES_CHECKS, *GENERATION_CHECKS, *CURATION_CHECKS],
        partition_key="r0|s0000", resources=ci_resources(root), raise_on_error=False,
    )
    return root, result


def test_all_assets_materialize_and_blocking_checks_pass(chain):
    root, result = chain
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"pose_pool", "raw_generations", "filtered_shards"}
    failed_blocking = [e.check_name for e in result.get_asset_check_evaluations()
                       if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    assert failed_blocking == []


def test_every_pose_sample_is_generated_indexed_and_explained(chain):
    root, _ = chain
    labels = pl.read_parquet(root / "pose_pool" / "r0" / "s0000" / "labels.parquet")
    provenance = pl.read_parquet(root / "raw_generations" / "r0" / "s0000" / "provenance.parquet")
    index = pl.read_parquet(root / "filtered_shards" / "r0" / "s0000" / "index.parquet")
    ids = labels["sample_id"].to_list()
    assert sorted(provenance["sample_id"].to_list()) == ids == sorted(index["sample_id"].to_list())
    assert provenance["backend"].unique().to_list() == ["diffusers"]
    # provenance holds the true per-sample seed, derived from (project seed, round, shard, index)
    project_seed = ci_resources(root)["compute"].seed
    by_id = dict(zip(provenance["sample_id"], provenance["seed"]))
    assert [by_id[s] for s in ids] == [generation_seed(project_seed, "r0", "s0000", i) for i in range(len(ids))]
    rejected = index.filter(~pl.col("kept"))
    assert rejected["reject_stage"].null_count() == 0 and rejected["reject_reason"].null_count() == 0
    assert (root / "filtered_shards" / "r0" / "s0000" / "r0-s0000.tar").exists()


def test_report_describes_the_partition(chain):
    root, _ = chain
    text = report(root, "r0", "s0000")
    assert "8 samples (anny)" in text
    assert "8 images, backend diffusers" in text
    assert "kept " in text and "/8 (pass rate" in text
    assert "catalog:" in text
    assert "not materialised" in report(root, "r3", "s0000")

"""`mined_hard_set[r0]` in the `ci` profile, and `pose_pool[r1]` drawn from it.

Round r0's inputs are real pose_pool partitions (anny, the renderer; every shard of the
round, 8 samples at 128 px, only the mask control) and a filtered_shards index per shard
whose OKS is planted: it falls with the camera's elevation, and above 26 degrees the
detector "finds no person" (OKS null, person_count 0), which mining must count as OKS 0.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from pd_assets.curation.pipeline import index_frame
from pd_assets.mining import mined_set as layout
from pd_assets.mining.assets import mined_hard_set
from pd_assets.mining.checks import MINING_CHECKS, evaluate_harder_than_pool, evaluate_selected_set
from pd_assets.mining.features import camera_angles
from pd_assets.mining.mined_set import MinedSetError, load_mined_set
from pd_assets.mining.training_data import MiningInputError, load_round
from pd_assets.partitions import round_shard_partitions, shard_partitions
from pd_assets.poses.assets import pose_pool, settings_from
from pd_assets.poses.checks import POSES_CHECKS
from pd_assets.poses.pool import build_pose_pool
from pd_assets.storage import COMPLETE_MARKER, file_sha256
from pd_assets_tests.helpers import ci_resources

UPSTREAM = dg.AssetSpec("filtered_shards", partitions_def=round_shard_partitions)
SHARDS = shard_partitions.get_partition_keys()


def planted_oks(elevation_deg: float) -> float | None:
    return None if elevation_deg > 26 else 0.95 - 0.015 * (elevation_deg + 10)


def write_round(root: Path, model, round_name: str = "r0") -> None:
    resources = ci_resources(root)
    settings = replace(settings_from(resources["pose_sampling"]), controls=("mask",))
    seed = resources["compute"].seed
    for shard in SHARDS:
        pool_dir = root / "pose_pool" / round_name / shard
        pool_dir.mkdir(parents=True)
        build_pose_pool(settings, model, pool_dir, seed, round_name, shard, batch_size=8)
        labels = pl.read_parquet(pool_dir / "labels.parquet")
        records = []
        for sid, R in zip(labels["sample_id"], labels["R"]):
            oks = planted_oks(camera_angles(np.asarray(R))[1])
            records.append({"sample_id": sid, "oks": oks, "person_count": 0 if oks is None else 1,
                            "kept": oks is not None and oks >= 0.85, "round": round_name, "shard": shard})
        out = root / "filtered_shards" / round_name / shard
        out.mkdir(parents=True)
        index_frame(records).write_parquet(out / "index.parquet")


def _mine(root: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize([UPSTREAM, mined_hard_set, *MINING_CHECKS], partition_key="r0",
                          resources=ci_resources(root), raise_on_error=False)


def _pool(root: Path, partition: str) -> dg.ExecuteInProcessResult:
    return dg.materialize([pose_pool, *POSES_CHECKS], partition_key=partition,
                          resources=ci_resources(root), raise_on_error=False)


def _error(result: dg.ExecuteInProcessResult) -> str:
    return str(result.get_step_failure_events()[0].event_specific_data.error)


@pytest.fixture(scope="module")
def mined(tmp_path_factory, anny_model):
    root = tmp_path_factory.mktemp("mining") / "data"
    write_round(root, anny_model)
    return root, _mine(root)


def test_mined_hard_set_materializes_with_its_metadata_and_files(mined):
    root, result = mined
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    count = len(SHARDS) * 8  # one round of the ci profile
    assert meta["num_selected"].value == count and meta["num_candidates"].value == 4 * count
    assert meta["predictor_spearman"].value > 0.3  # the planted elevation effect is learnt
    assert meta["predictor_mae"].value < 0.2
    assert meta["mean_predicted_oks_selected"].value < meta["mean_predicted_oks_pool"].value
    assert sum(meta["bins_pool"].value.values()) == 4 * count
    assert sum(meta["bins_selected"].value.values()) == count
    assert "data:image/jpeg;base64," in meta["feature_importance"].value
    directory = root / "mined_hard_set" / "r0"
    for name in ("selected.parquet", "candidates.parquet", "predictor.txt", "report.json", "report.md",
                 "feature_importance.png", COMPLETE_MARKER):
        assert (directory / name).is_file(), name
    assert (directory / "predictor.txt").read_text().startswith("tree")
    report = json.loads((directory / "report.json").read_text())
    assert report["training"]["num_no_person_as_oks_0"] > 0  # elevation > 26 deg: counted as OKS 0
    assert report["training"]["num_used"] == count
    assert next(iter(report["importance_by_group"])) in {"camera elevation", "orientation vs camera"}
    assert meta["selected_sha256"].value == file_sha256(directory / "selected.parquet")


def test_mining_checks_pass_and_catch_tampered_reports(mined):
    root, result = mined
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {"predictor_spearman_above_floor", "selection_harder_than_pool", "selected_set_is_whole"}
    assert all(e.passed for e in checks.values())
    assert checks["predictor_spearman_above_floor"].severity == dg.AssetCheckSeverity.WARN
    report = json.loads((root / "mined_hard_set" / "r0" / "report.json").read_text())
    assert not evaluate_harder_than_pool({**report, "mean_predicted_oks_selected": 0.99}).passed
    selected = pl.read_parquet(root / "mined_hard_set" / "r0" / "selected.parquet")
    twice = pl.concat([selected.head(report["num_selected"] - 1), selected.head(1)])
    sha = report["selected_sha256"]
    assert evaluate_selected_set(selected, report, sha, sha).passed
    assert "duplicate" in evaluate_selected_set(twice, report, sha, sha).metadata["problems"].text


@pytest.fixture(scope="module")
def next_round(mined):
    root, _ = mined
    return root, _pool(root, "r1|s0000")


def test_next_round_draws_the_mined_set_and_records_it(next_round):
    root, result = next_round
    assert result.success, _error(result)
    assert all(e.passed for e in result.get_asset_check_evaluations())
    labels = pl.read_parquet(root / "pose_pool" / "r1" / "s0000" / "labels.parquet")
    mined_set = load_mined_set(root, "r0", "r1")
    sha = file_sha256(root / "mined_hard_set" / "r0" / "selected.parquet")
    assert labels["mined_from_round"].unique().to_list() == ["r0"]
    assert labels["mined_set_hash"].unique().to_list() == [sha] == [mined_set.content_hash]
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["mined_set_hash"].value == sha and meta["mined_from_round"].value == "r0"
    seed = ci_resources(root)["compute"].seed
    rows = [mined_set.frame.row(mined_set.row_index(seed, "r1", "s0000", i, 8), named=True) for i in range(8)]
    assert labels["pose_source"].to_list() == [f"mined:r0:{r['candidate_id']}" for r in rows]
    for column in ("body_pose", "global_orient", "shape", "K", "R", "t"):
        np.testing.assert_allclose(np.asarray(labels[column].to_list()),
                                   np.asarray([r[column] for r in rows]), atol=1e-6)
    np.testing.assert_allclose(labels["mined_predicted_oks"].to_numpy(), [r["predicted_oks"] for r in rows])


def test_same_mined_set_gives_the_same_samples_and_shards_do_not_repeat(next_round, tmp_path):
    root, _ = next_round
    first = pl.read_parquet(root / "pose_pool" / "r1" / "s0000" / "labels.parquet")
    copy = tmp_path / "data"  # another store holding only the same mined set
    shutil.copytree(root / "mined_hard_set", copy / "mined_hard_set")
    assert _pool(copy, "r1|s0000").success and _pool(copy, "r1|s0001").success
    again = pl.read_parquet(copy / "pose_pool" / "r1" / "s0000" / "labels.parquet")
    assert again.equals(first)
    other = pl.read_parquet(copy / "pose_pool" / "r1" / "s0001" / "labels.parquet")
    assert not set(again["pose_source"]) & set(other["pose_source"])


def test_missing_mined_set_is_a_clear_error(tmp_path):
    result = _pool(tmp_path, "r1|s0000")
    assert not result.success
    message = _error(result)
    assert str(tmp_path / "mined_hard_set" / "r0" / "selected.parquet") in message
    assert "materialise mined_hard_set for partition r0" in message
    assert "draw_from_mined=false" in message
    assert not (tmp_path / "pose_pool" / "r1" / "s0000").exists()


def test_a_changed_mined_set_is_refused(mined, tmp_path):
    root, _ = mined
    copy = tmp_path / "data"
    shutil.copytree(root / "mined_hard_set", copy / "mined_hard_set")
    selected = copy / "mined_hard_set" / "r0" / "selected.parquet"
    pl.read_parquet(selected).head(3).write_parquet(selected)
    with pytest.raises(MinedSetError, match="re-materialise mined_hard_set for partition r0"):
        load_mined_set(copy, "r0", "r1")


def test_missing_shards_name_what_to_materialise(mined, tmp_path):
    root, _ = mined
    with pytest.raises(MiningInputError, match=r"materialise filtered_shards for r0\|s0000"):
        load_round(tmp_path, "r0", SHARDS)
    assert load_round(root, "r0", SHARDS).frame.height == len(SHARDS) * 8
    result = _mine(tmp_path)
    assert not result.success and "filtered_shards" in _error(result)


def test_registered_per_round_on_every_shard_of_its_round():
    from pd_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey("mined_hard_set"))
    assert node.partitions_def.get_partition_keys()[0] == "r0"
    assert dg.AssetKey("filtered_shards") in node.parent_keys
    assert dg.AssetKey("mined_hard_set") not in graph.get(dg.AssetKey("pose_pool")).parent_keys  # no cycle
    upstream = graph.get_parent_partition_keys_for_child("r1", dg.AssetKey("filtered_shards"),
                                                        dg.AssetKey("mined_hard_set"))
    assert sorted(upstream.partitions_subset.get_partition_keys()) == [f"r1|{s}" for s in SHARDS]
    checks = {c.name for c in graph.asset_check_keys if c.asset_key == dg.AssetKey("mined_hard_set")}
    assert checks == {"predictor_spearman_above_floor", "selection_harder_than_pool", "selected_set_is_whole"}

"""The code location loads, validates, and exposes the documented interface."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_definitions_load_and_validate():
    from pd_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"pose_pool", "raw_generations", "filtered_shards"} <= keys
    for key in ("pose_pool", "raw_generations", "filtered_shards"):
        node = graph.get(dg.AssetKey(key))
        assert isinstance(node.partitions_def, dg.MultiPartitionsDefinition)
        assert node.partitions_def.partition_dimension_names == ["round", "shard"]
    checks = {c.name for c in graph.asset_check_keys if c.asset_key == dg.AssetKey("pose_pool")}
    assert {"labels_finite_and_unique", "visible_keypoints_inside_image", "bbox_area_above_minimum",
            "camera_within_ranges", "one_control_per_sample"} <= checks
    assert defs.resolve_job_def("generate_dataset") is not None


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_partition_counts_are_configuration():
    out = _python("from pd_assets.partitions import round_shard_partitions as p; "
                  "print(len(p.get_partition_keys()), p.get_partition_keys()[-1])",
                  PD_NUM_ROUNDS="2", PD_NUM_SHARDS="3")
    assert out.stdout.split() == ["6", "r1|s0002"], out.stderr[-2000:]
    bad = _python("import pd_assets.partitions", PD_NUM_SHARDS="many")
    assert bad.returncode != 0 and "PD_NUM_SHARDS='many' is not an integer" in bad.stderr


def test_unknown_profile_is_a_clear_error():
    from resources.profiles import resources_for_profile

    with pytest.raises(ValueError, match="not one of local, local-diffusion, ci, gpu"):
        resources_for_profile("staging")


def test_documented_cli_materializes_one_partition(tmp_path):
    """`dagster asset materialize -m pd_assets.definitions --select pose_pool --partition KEY`."""
    dagster = Path(sys.executable).with_name("dagster")
    env = {**os.environ, "PD_PROFILE": "ci", "PD_DATA_ROOT": str(tmp_path / "data"),
           "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    done = subprocess.run([str(dagster), "asset", "materialize", "-m", "pd_assets.definitions",
                           "--select", "pose_pool", "--partition", "r0|s0002"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    labels = pl.read_parquet(tmp_path / "data" / "pose_pool" / "r0" / "s0002" / "labels.parquet")
    assert len(labels) == 8 and labels["sample_id"][0] == "r0-s0002-000000"

"""Issue 11 item 7: the shipped bytes of a partition (provenance.parquet, the shard tar, the
index) are the same for two clean runs under two data roots: no timing, absolute path or
data-root-dependent value leaks into them."""

from __future__ import annotations

import tarfile

import dagster as dg
import polars as pl

from pd_assets.curation.assets import CURATION_ASSETS
from pd_assets.generation.assets import GENERATION_ASSETS
from pd_assets.poses.assets import POSES_ASSETS
from pd_assets_tests.helpers import ci_resources
from resources.generator import GeneratorResource
from resources.keypoint_detector import KeypointDetectorResource
from resources.pose_sampling import PoseSamplingResource

SHIPPED = ("raw_generations/r0/s0000/provenance.parquet", "filtered_shards/r0/s0000/r0-s0000.tar",
           "filtered_shards/r0/s0000/index.parquet")
LOOSE = {"oks_min": 0.0, "keypoint_similarity_min": 0.0, "mask_iou_min": 0.0, "head_pose_max_deg": 180.0, "presence_min": 0.0}


def _run(root):
    resources = ci_resources(root, generator=GeneratorResource(backend="render"),
                             pose_sampling=PoseSamplingResource(samples_per_shard=4, width=256, height=256),
                             keypoint_detector=KeypointDetectorResource(calibration="none"))
    result = dg.materialize([*POSES_ASSETS, *GENERATION_ASSETS, *CURATION_ASSETS], partition_key="r0|s0000",
                            resources=resources, run_config={"ops": {"filtered_shards": {"config": LOOSE}}})
    assert result.success
    return {name: (root / name).read_bytes() for name in SHIPPED}


def test_a_partition_is_byte_identical_under_two_data_roots(tmp_path):
    first = _run(tmp_path / "a" / "data")
    second = _run(tmp_path / "elsewhere" / "store")
    for name in SHIPPED:
        assert first[name] == second[name], f"{name} differs between two clean runs"
    root = tmp_path / "a" / "data"
    with tarfile.open(root / SHIPPED[1]) as tar:
        names = tar.getnames()
        payload = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".json"))
    assert names, "nothing was kept: the tar bytes were not exercised"
    for leaked in (str(tmp_path).encode(), b"/work/", b"seconds"):
        assert leaked not in payload, leaked  # no absolute path, no timing in a sample's JSON
    assert "seconds" not in pl.read_parquet(root / SHIPPED[0]).columns

"""`filtered_shards` materialised on one partition with the real mediapipe detector."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from PIL import Image

from pd_assets.curation.assets import filtered_shards
from pd_assets.curation.catalog import query
from pd_assets.curation.checks import CURATION_CHECKS
from pd_assets.curation.mediapipe_task import build as build_task
from pd_assets.partitions import round_shard_partitions
from pd_assets_tests.curation_fixtures import write_render_generations, write_synthetic_partition
from resources.compute import ComputeResource
from resources.dataset_store import DatasetStoreResource
from resources.keypoint_detector import KeypointDetectorResource
from resources.paths import models_dir

PARTITION = "r0|s0000"
UPSTREAM = [dg.AssetSpec("pose_pool", partitions_def=round_shard_partitions),
            dg.AssetSpec("raw_generations", partitions_def=round_shard_partitions)]
LOOSE = {"oks_min": 0.05, "keypoint_similarity_min": 0.0, "mask_iou_min": 0.0, "head_pose_max_deg": 180.0, "presence_min": 0.0}


def _materialize(root: Path, config: dict | None = None, partition: str = PARTITION,
                 instance: dg.DagsterInstance | None = None):
    build_task(models_dir())  # what `make setup` does; a no-op when built
    return dg.materialize(
        [*UPSTREAM, filtered_shards, *CURATION_CHECKS], partition_key=partition,
        resources={"keypoint_detector": KeypointDetectorResource(calibration="none"),
                   "dataset_store": DatasetStoreResource(root=str(root)),
                   "compute": ComputeResource(device="cpu", batch_size=4)},
        run_config={"ops": {"filtered_shards": {"config": config or {}}}}, raise_on_error=False,
        instance=instance,
    )


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("curation") / "data"
    ids = write_synthetic_partition(root, "r0", "s0000", n=6, corrupt={4: "garbage", 5: "truncated"})
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize(root, instance=instance)
    progress = [(e.level, e.user_message) for e in instance.all_logs(result.run_id)
                if e.user_message.startswith("detected ")]
    return root, ids, result, progress


def test_every_sample_is_indexed_and_corrupt_images_are_rejected_with_reasons(synthetic_run):
    root, ids, result, _ = synthetic_run
    assert result.success
    part = root / "filtered_shards" / "r0" / "s0000"
    index = pl.read_parquet(part / "index.parquet")
    assert index["sample_id"].to_list() == ids
    bad = index.filter(pl.col("sample_id").is_in(ids[4:]))
    assert bad["reject_stage"].to_list() == ["readable", "readable"]
    assert all(r.startswith("unreadable image: ") for r in bad["reject_reason"])
    assert index.filter(~pl.col("kept"))["reject_reason"].null_count() == 0
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["num_samples"].value == 6 and meta["num_kept"].value == index["kept"].sum()
    assert "| readable | unreadable | 2 |" in meta["reject_reasons"].value
    assert "data:image/jpeg;base64," in meta["oks_histogram"].value
    assert "data:image/jpeg;base64," in meta["contact_sheet"].value
    for name in ("index.parquet", "preview.png", "oks_histogram.png", "_COMPLETE.json", "r0-s0000.tar"):
        assert (part / name).is_file(), name
    # an uncalibrated run says so, and why, everywhere it is recorded
    status = "none (keypoint_detector.calibration=none)"
    assert meta["calibration"].value == status and index["calibration"].unique().to_list() == [status]
    assert json.loads((part / "_COMPLETE.json").read_text())["calibration"] == status


def test_progress_is_logged_at_info_like_the_other_stages(synthetic_run):
    import logging

    *_, progress = synthetic_run
    assert progress == [(logging.INFO, "detected 4/6 samples"), (logging.INFO, "detected 6/6 samples")]


def test_blocking_checks_pass_and_the_shard_is_valid_even_if_empty(synthetic_run):
    import webdataset as wds

    root, _, result, _ = synthetic_run
    checks = _checks(result)
    assert set(checks) == {spec.name for check in CURATION_CHECKS for spec in check.check_specs}
    for name in ("kept_samples_meet_oks", "median_kept_oks", "shard_ids_consistent", "index_contract"):
        assert checks[name].passed, (name, checks[name].metadata)
    tar = root / "filtered_shards" / "r0" / "s0000" / "r0-s0000.tar"
    with tarfile.open(tar) as tf:
        tf.getmembers()
    kept = pl.read_parquet(tar.with_name("index.parquet"))["kept"].sum()
    # an all-rejected shard is a valid empty tar (webdataset needs empty_check=False for it)
    assert len(list(wds.WebDataset(str(tar), shardshuffle=False, empty_check=False))) == kept


def test_catalog_query_from_the_readme(synthetic_run):
    root, *_ = synthetic_run
    rows = query(root, "SELECT round, difficulty_bin, count(*) FILTER (WHERE kept) AS kept, count(*) AS n, "
                       "avg(oks) AS mean_oks FROM samples GROUP BY ALL ORDER BY ALL")
    assert sum(r[3] for r in rows) == 6 and {r[0] for r in rows} == {"r0"}
    assert query(root, "SELECT count(*) FROM reject_reasons WHERE reject_stage = 'readable'")[0][0] == 1


@pytest.fixture(scope="module")
def loose_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("curation_loose") / "data"
    write_synthetic_partition(root, "r1", "s0002", n=4)
    return root, _materialize(root, LOOSE, partition="r1|s0002")


def test_kept_samples_load_with_webdataset_and_carry_the_full_label(loose_run):
    import webdataset as wds

    root, result = loose_run
    tar = root / "filtered_shards" / "r1" / "s0002" / "r1-s0002.tar"
    samples = list(wds.WebDataset(str(tar), shardshuffle=False).decode("rgb"))
    assert len(samples) >= 1
    s = samples[0]
    assert set(s) >= {"__key__", "jpg", "json", "pncc.png"} and s["jpg"].shape == (256, 256, 3)
    label = s["json"] if isinstance(s["json"], dict) else json.loads(s["json"])
    assert label["sample_id"] == s["__key__"]
    assert np.asarray(label["camera"]["K"]).shape == (3, 3) and "OpenCV" in label["camera"]["convention"]
    assert np.asarray(label["keypoints2d"]["xy"]).shape == (17, 2) and len(label["keypoints2d"]["visible"]) == 17
    assert label["scores"]["kept"] and label["scores"]["oks"] >= 0.05
    assert label["provenance"]["model_id"] == "synthetic-drawing" and label["detector"]["backend"] == "mediapipe"
    assert np.asarray(label["body_model"]["body_pose"]).shape == (21, 3)
    with tarfile.open(tar) as tf:  # plain tarfile reads it too
        img = Image.open(io.BytesIO(tf.extractfile(f"{s['__key__']}.jpg").read()))
        assert img.size == (256, 256)


def test_median_check_blocks_a_low_quality_shard(loose_run):
    _, result = loose_run
    checks = _checks(result)
    assert checks["kept_samples_meet_oks"].passed  # against the configured 0.05
    median = checks["median_kept_oks"]
    assert not median.passed and median.metadata["threshold"].value == 0.9


def test_rematerialising_gives_identical_bytes(loose_run):
    root, _ = loose_run
    part = root / "filtered_shards" / "r1" / "s0002"
    before = (part / "r1-s0002.tar").read_bytes()
    again = _materialize(root, LOOSE, partition="r1|s0002")  # the run fails on the median check...
    assert again.get_asset_materialization_events()  # ...after the asset itself materialised
    assert (part / "r1-s0002.tar").read_bytes() == before
    assert not [p for p in part.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_on_real_renders_most_samples_pass_with_high_oks(tmp_path):
    """pose_pool (anny + the renderer) -> shaded renders on a background -> filtered_shards."""
    from pd_assets.poses.assets import pose_pool
    from pd_assets_tests.helpers import ci_resources
    from resources.pose_sampling import PoseSamplingResource

    root = tmp_path / "data"
    pool = dg.materialize([pose_pool], partition_key=PARTITION, resources=ci_resources(
        root, pose_sampling=PoseSamplingResource(samples_per_shard=8, width=384, height=384,
                                                 framing_weights={"full": 1.0})))
    assert pool.success
    write_render_generations(root, "r0", "s0000")
    result = _materialize(root)
    index = pl.read_parquet(root / "filtered_shards" / "r0" / "s0000" / "index.parquet")
    assert index.height == 8 and index["oks"].drop_nulls().median() > 0.85
    assert index["mask_iou"].drop_nulls().median() > 0.85
    assert _checks(result)["shard_ids_consistent"].passed


def test_an_unfinished_raw_generations_run_is_refused_with_the_fix(tmp_path):
    root = tmp_path / "data"
    write_synthetic_partition(root, "r0", "s0000", n=2)
    (root / "raw_generations" / "r0" / "s0000" / "journal").mkdir()  # a run in progress, or killed
    result = _materialize(root)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error
    text = "".join([failure.message, *(c.message for c in _causes(failure))])
    assert ("raw_generations for r0|s0000 is incomplete (a run was interrupted or is in progress): "
            "re-materialise raw_generations for this partition") in text
    assert not (root / "filtered_shards" / "r0" / "s0000").exists()


def _causes(error):
    while error.cause is not None:
        error = error.cause
        yield error


def test_images_that_do_not_match_their_provenance_or_mask_are_rejected_never_shipped(tmp_path):
    """Another run's image, a sample without a provenance row, a corrupt and a missing label mask."""
    root = tmp_path / "data"
    ids = write_synthetic_partition(root, "r0", "s0000", n=5)
    pool, gen = root / "pose_pool" / "r0" / "s0000", root / "raw_generations" / "r0" / "s0000"
    # sample 1: the image was rewritten in place by a newer run, provenance.parquet is the old one
    (gen / "images" / f"{ids[1]}.png").write_bytes((gen / "images" / f"{ids[0]}.png").read_bytes())
    prov = pl.read_parquet(gen / "provenance.parquet")
    prov.filter(pl.col("sample_id") != ids[2]).write_parquet(gen / "provenance.parquet")  # sample 2: no row
    mask3 = pool / "controls" / "mask" / f"{ids[3]}.png"
    mask3.write_bytes(mask3.read_bytes()[:40])  # sample 3: truncated label mask
    (pool / "controls" / "mask" / f"{ids[4]}.png").unlink()  # sample 4: label mask gone
    result = _materialize(root, LOOSE)
    assert result.get_asset_materialization_events()
    part = root / "filtered_shards" / "r0" / "s0000"
    index = {r["sample_id"]: r for r in pl.read_parquet(part / "index.parquet").to_dicts()}
    expected = {
        ids[1]: ("provenance", "image does not match its provenance (sha256): re-materialise raw_generations"),
        ids[2]: ("provenance", "image has no provenance row: re-materialise raw_generations"),
        ids[3]: ("label_mask", "unreadable label mask: "),
        ids[4]: ("label_mask", f"unreadable label mask: file missing at {ids[4]}.png; re-materialise pose_pool"),
    }
    for sid, (check, reason) in expected.items():
        rec = index[sid]
        assert not rec["kept"] and rec["reject_stage"] == "readable", sid
        assert rec["failed_checks"][0] == check and rec["reject_reason"].startswith(reason), rec["reject_reason"]
        assert rec["oks"] is not None  # still scored: the index can be inspected
    assert index[ids[3]]["reject_reason"].endswith("re-materialise pose_pool")
    assert not {"provenance", "label_mask"} & set(index[ids[0]]["failed_checks"])
    from pd_assets.curation.shards import shard_keys

    assert set(shard_keys(part / "r0-s0000.tar")) <= {ids[0]}  # nothing shipped with wrong provenance


"""Issue 11: labels.parquet is data, and every stage must survive a crafted or damaged one.

Control paths that leave their partition (absolute, `../..`, a symlink pointing out), a
sample_id that would make a write leave the store, a missing control map, a corrupt
labels.parquet, a plain-string partition key, and a full disk found before any work.
"""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from PIL import Image

from pd_assets.generation.assets import GENERATION_ASSETS
from pd_assets.generation.checks import GENERATION_CHECKS
from pd_assets.partitions import round_shard_partitions, split_key
from pd_assets_tests.fixtures_pose_pool import write_fake_pose_pool_partition
from resources.compute import ComputeResource
from resources.dataset_store import DatasetStoreResource
from resources.generator import GeneratorResource

KEY = "r0|s0000"
POSE_POOL = dg.AssetSpec("pose_pool", partitions_def=round_shard_partitions)


def _generate(root: Path, generator: GeneratorResource | None = None):
    return dg.materialize(
        [*GENERATION_ASSETS, *GENERATION_CHECKS, POSE_POOL], partition_key=KEY, selection=["raw_generations"],
        resources={"generator": generator or GeneratorResource(backend="render"),
                   "compute": ComputeResource(device="cpu", batch_size=2),
                   "dataset_store": DatasetStoreResource(root=str(root))},
        raise_on_error=False,
    )


def _error_text(result) -> str:
    failure = result.get_step_failure_events()[0].event_specific_data.error
    parts = [failure.message]
    while failure.cause is not None:
        failure = failure.cause
        parts.append(failure.message)
    return "\n".join(parts)


def _set_label(pool: Path, index: int, **values) -> None:
    labels = pl.read_parquet(pool / "labels.parquet")
    rows = labels.to_dicts()
    rows[index].update(values)
    pl.DataFrame(rows, schema=labels.schema).write_parquet(pool / "labels.parquet")


def _secret_png(path: Path) -> Path:
    """A file outside the partition that must never be read: a full-alpha magenta RGBA."""
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[...] = (255, 0, 255, 255)
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def _files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")}


# ---- raw_generations ---------------------------------------------------------------------

@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_a_control_path_leaving_the_partition_is_never_read_by_the_generator(tmp_path, how):
    root = tmp_path / "data"
    pool = write_fake_pose_pool_partition(root, "r0", "s0000", n=3, size=64)
    secret = _secret_png(tmp_path / "secret.png")
    sid = "r0-s0000-000001"
    if how == "absolute":
        _set_label(pool, 1, control_shaded=str(secret))
    elif how == "dotdot":
        _set_label(pool, 1, control_shaded="../../../../secret.png")  # pool -> r0 -> pose_pool -> data -> tmp
    else:
        link = pool / "controls" / "shaded" / f"{sid}.png"
        link.unlink()
        link.symlink_to(secret)
    result = _generate(root)
    assert result.success, _error_text(result)
    out = root / "raw_generations" / "r0" / "s0000"
    prov = {r["sample_id"]: r for r in pl.read_parquet(out / "provenance.parquet").to_dicts()}
    assert "outside its partition" in prov[sid]["error"] or "absolute path" in prov[sid]["error"]
    assert "control_shaded" in prov[sid]["error"] and "re-materialise pose_pool" in prov[sid]["error"]
    assert not (out / "images" / f"{sid}.png").exists()  # nothing was made from the outside file
    assert sorted(p.stem for p in (out / "images").glob("*.png")) == ["r0-s0000-000000", "r0-s0000-000002"]
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_a_sample_id_that_leaves_the_store_is_refused_and_nothing_is_written_outside(tmp_path):
    root = tmp_path / "data"
    pool = write_fake_pose_pool_partition(root, "r0", "s0000", n=2, size=64)
    _set_label(pool, 1, sample_id="../../../../../outside/x")  # images -> ... -> data -> tmp_path
    before = _files_under(tmp_path)
    result = _generate(root)
    assert not result.success
    text = _error_text(result)
    assert "'../../../../../outside/x' is not of the form r{n}-s{nnnn}-{nnnnnn}" in text
    assert str(pool / "labels.parquet") in text and "re-materialise pose_pool" in text
    assert not (tmp_path / "outside").exists()
    assert {p for p in _files_under(tmp_path) - before if root not in p.parents} == set()


def test_output_paths_refuse_ids_that_are_not_one_plain_name(tmp_path):
    from pd_assets.generation.store import image_path
    from pd_assets.safe_io import UnsafePathError, store_path

    assert image_path(tmp_path, "r0-s0000-000001") == tmp_path / "images" / "r0-s0000-000001.png"
    for bad in ("../x", "/etc/x", "..", "a\\b"):
        with pytest.raises(UnsafePathError, match="not a plain file or folder name"):
            store_path(tmp_path, "images", bad)
    with pytest.raises(UnsafePathError):
        DatasetStoreResource(root=str(tmp_path)).partition_dir("pose_pool", "..", "s0000")


def test_resolve_inside_accepts_the_partition_and_refuses_every_way_out(tmp_path):
    from pd_assets.safe_io import UnsafePathError, resolve_inside

    part = tmp_path / "part"
    (part / "controls").mkdir(parents=True)
    (part / "controls" / "a.png").write_bytes(b"x")
    (part / "controls" / "out.png").symlink_to(tmp_path / "elsewhere.png")
    assert resolve_inside(part, "controls/a.png", what="t") == (part / "controls" / "a.png").resolve()
    assert resolve_inside(part, "controls/../controls/a.png", what="t").name == "a.png"  # stays inside
    for bad in ("/etc/passwd", "../part2/a.png", "controls/../../x", "controls/out.png", "", None, 3):
        with pytest.raises(UnsafePathError):
            resolve_inside(part, bad, what="t")


def test_a_missing_shaded_control_fails_only_its_sample_and_is_retried_next_run(tmp_path):
    """Item 5: one missing control used to fail the whole partition and leave its journal."""
    root = tmp_path / "data"
    pool = write_fake_pose_pool_partition(root, "r0", "s0000", n=4, size=64)
    missing = pool / "controls" / "shaded" / "r0-s0000-000002.png"
    kept_bytes = missing.read_bytes()
    missing.unlink()
    result = _generate(root)
    assert result.success, _error_text(result)
    out = root / "raw_generations" / "r0" / "s0000"
    assert not (out / "journal").exists()
    prov = pl.read_parquet(out / "provenance.parquet")
    errors = dict(zip(prov["sample_id"], prov["error"]))
    assert [s for s, e in errors.items() if e] == ["r0-s0000-000002"]
    assert "shaded control map is missing at controls/shaded/r0-s0000-000002.png" in errors["r0-s0000-000002"]
    assert len(list((out / "images").glob("*.png"))) == 3
    (event,) = result.get_asset_materialization_events()
    md = event.materialization.metadata
    assert md["num_failed"].value == 1 and "r0-s0000-000002" in md["failed"].value
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert all(e.passed for e in checks.values()), {k: e.metadata for k, e in checks.items()}
    assert checks["raw_generations_one_image_per_sample"].metadata["num_failed"].value == 1
    # the control map is back: the next run makes that image and reuses the other three
    missing.write_bytes(kept_bytes)
    again = _generate(root)
    md = again.get_asset_materialization_events()[0].materialization.metadata
    assert (md["num_generated"].value, md["num_reused"].value, md["num_failed"].value) == (1, 3, 0)
    assert pl.read_parquet(out / "provenance.parquet")["error"].null_count() == 4


def test_strict_mode_fails_the_partition_before_writing_anything(tmp_path):
    root = tmp_path / "data"
    pool = write_fake_pose_pool_partition(root, "r0", "s0000", n=3, size=64)
    (pool / "controls" / "shaded" / "r0-s0000-000001.png").unlink()
    result = _generate(root, GeneratorResource(backend="render", strict=True))
    assert not result.success
    text = _error_text(result)
    assert "1 sample(s)" in text and "generator.strict is on" in text and "r0-s0000-000001" in text
    out = root / "raw_generations" / "r0" / "s0000"
    assert not (out / "journal").exists() and not list(out.glob("images/*.png"))


def test_a_corrupt_labels_parquet_is_an_input_error_naming_the_path_and_the_fix(tmp_path):
    root = tmp_path / "data"
    pool = write_fake_pose_pool_partition(root, "r0", "s0000", n=2, size=64)
    (pool / "labels.parquet").write_bytes(b"PAR1 this is not a parquet file")
    result = _generate(root)
    assert not result.success
    text = _error_text(result)
    assert f"pose_pool labels at {pool / 'labels.parquet'} is not readable parquet" in text
    assert "re-materialise pose_pool for this partition" in text


# ---- partition keys ---------------------------------------------------------------------

def test_split_key_parses_the_plain_string_form_a_tagged_run_passes():
    """`dagster job execute --tags '{"dagster/partition": "r0|s0000"}'` gives the asset a str key."""
    Ctx = namedtuple("Ctx", "partition_key")
    assert split_key(Ctx("r0|s0000")) == ("r0", "s0000")
    assert split_key(Ctx(dg.MultiPartitionKey({"round": "r2", "shard": "s0007"}))) == ("r2", "s0007")
    assert split_key("r1|s0003") == ("r1", "s0003")
    for bad in ("r0", "r0|s0000|x", "|s0000"):
        with pytest.raises(ValueError, match="round\\|shard partition key such as 'r0\\|s0000'"):
            split_key(Ctx(bad))


# ---- free space -------------------------------------------------------------------------

def test_the_size_estimates_by_hand():
    from pd_assets.disk_space import ROW_BYTES, pose_pool_bytes, raw_generations_bytes

    # pncc 0.31 + mask 0.02 bytes/pixel at 100 x 10 px: 330 bytes + one row, per sample
    assert pose_pool_bytes(2, 100, 10, ["pncc", "mask"]) == 2 * (330 + ROW_BYTES)
    assert pose_pool_bytes(1, 10, 10, ["new_control"]) == 400 + ROW_BYTES  # unknown: raw RGBA
    assert raw_generations_bytes([(10, 10), (20, 10)]) == 300 + 600 + 2 * ROW_BYTES  # raw RGB
    assert raw_generations_bytes([]) == 0


def test_require_free_space_names_path_needed_free_and_the_fix(tmp_path):
    from pd_assets.disk_space import require_free_space
    from pd_assets.storage import StorageError

    require_free_space(tmp_path / "new" / "dir", 1000, what="x", free_bytes=1250)  # 1000 x 1.25 fits
    with pytest.raises(StorageError) as err:
        require_free_space(tmp_path / "new" / "dir", 1000, what="pose_pool r0|s0000", free_bytes=1249)
    text = str(err.value)
    assert str(tmp_path / "new" / "dir") in text and "(1250 bytes" in text and "(1249 bytes) free" in text
    assert "PD_DATA_ROOT" in text and "pose_pool r0|s0000" in text


def _full_disk(monkeypatch, free: int = 10_000):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - free, free))


def test_raw_generations_fails_before_generating_when_the_disk_is_too_full(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_fake_pose_pool_partition(root, "r0", "s0000", n=3, size=64)
    _full_disk(monkeypatch)
    result = _generate(root)
    assert not result.success
    text = _error_text(result)
    assert "not enough free space for raw_generations r0|s0000 (3 images to make)" in text
    assert "(10000 bytes) free" in text
    assert not (root / "raw_generations" / "r0" / "s0000").exists()  # no journal, no image


def test_pose_pool_fails_before_rendering_when_the_disk_is_too_full(tmp_path, monkeypatch):
    from pd_assets.poses.assets import POSES_ASSETS
    from pd_assets_tests.helpers import ci_resources

    root = tmp_path / "data"
    _full_disk(monkeypatch)
    result = dg.materialize(POSES_ASSETS, partition_key=KEY, resources=ci_resources(root), raise_on_error=False)
    assert not result.success
    text = _error_text(result)
    assert "not enough free space for pose_pool r0|s0000 (8 samples)" in text and "nothing was written" in text
    assert not (root / "pose_pool" / "r0" / "s0000").exists()


# ---- filtered_shards ---------------------------------------------------------------------

def _curate(root: Path, config: dict | None = None):
    from pd_assets.curation.assets import filtered_shards
    from pd_assets.curation.mediapipe_task import build as build_task
    from resources.keypoint_detector import KeypointDetectorResource
    from resources.paths import models_dir

    build_task(models_dir())  # what `make setup` does; a no-op when built
    upstream = [POSE_POOL, dg.AssetSpec("raw_generations", partitions_def=round_shard_partitions)]
    return dg.materialize(
        [*upstream, filtered_shards], partition_key=KEY,
        resources={"keypoint_detector": KeypointDetectorResource(calibration="none"),
                   "dataset_store": DatasetStoreResource(root=str(root)),
                   "compute": ComputeResource(device="cpu", batch_size=4)},
        run_config={"ops": {"filtered_shards": {"config": config or {}}}}, raise_on_error=False,
    )


LOOSE = {"oks_min": 0.0, "keypoint_similarity_min": 0.0, "mask_iou_min": 0.0, "head_pose_max_deg": 180.0, "presence_min": 0.0,
         "sharpness_min": 0.0, "exposure_clipped_max": 1.0}


def test_curation_never_ships_or_reads_a_file_outside_the_partition(tmp_path):
    """Item 1: a label's control_pncc set to an absolute or `../..` path (or a symlink out)
    put that file's bytes into the tar as `{id}.pncc.png`. Item 4: a missing pncc shipped a
    kept sample without it. Item 5: a sample raw_generations made no image for is rejected
    with raw_generations' reason."""
    from pd_assets.curation.shards import shard_keys
    from pd_assets_tests.curation_fixtures import write_synthetic_partition

    root = tmp_path / "data"
    ids = write_synthetic_partition(root, "r0", "s0000", n=7)
    pool, gen = root / "pose_pool" / "r0" / "s0000", root / "raw_generations" / "r0" / "s0000"
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"TOP-SECRET-BYTES" * 64)
    _set_label(pool, 1, control_pncc=str(secret))
    _set_label(pool, 2, control_pncc="../../../../secret.bin")  # s0000 -> r0 -> pose_pool -> data -> tmp
    link = pool / "controls" / "pncc" / f"{ids[3]}.png"
    link.unlink()
    link.symlink_to(secret)
    _set_label(pool, 4, control_mask="../../../../secret.bin")
    (pool / "controls" / "pncc" / f"{ids[5]}.png").unlink()
    (gen / "images" / f"{ids[6]}.png").unlink()
    prov = pl.read_parquet(gen / "provenance.parquet").with_columns(
        error=pl.when(pl.col("sample_id") == ids[6]).then(pl.lit("sample r0-s0000-000006's shaded control map "
                                                                 "is missing")).otherwise(None))
    prov.write_parquet(gen / "provenance.parquet")
    result = _curate(root, LOOSE)
    assert result.success, _error_text(result)
    part = root / "filtered_shards" / "r0" / "s0000"
    index = {r["sample_id"]: r for r in pl.read_parquet(part / "index.parquet").to_dicts()}
    expected = {
        ids[1]: ("label_control", "is the absolute path"),
        ids[2]: ("label_control", "outside its partition"),
        ids[3]: ("label_control", "outside its partition"),
        ids[4]: ("label_mask", "outside its partition"),
        ids[5]: ("label_control", f"control_pncc file missing at controls/pncc/{ids[5]}.png"),
        ids[6]: ("generation", "raw_generations made no image: sample r0-s0000-000006's shaded control map"),
    }
    for sid, (check, words) in expected.items():
        rec = index[sid]
        assert not rec["kept"] and rec["reject_stage"] == "readable", (sid, rec["reject_reason"])
        assert rec["failed_checks"][0] == check and words in rec["reject_reason"], (sid, rec["reject_reason"])
    assert b"TOP-SECRET" not in (part / "r0-s0000.tar").read_bytes()
    assert set(shard_keys(part / "r0-s0000.tar")) <= {ids[0]}
    if index[ids[0]]["kept"]:  # a kept sample always ships its pncc map
        import tarfile

        with tarfile.open(part / "r0-s0000.tar") as tar:
            assert f"{ids[0]}.pncc.png" in tar.getnames()


def test_curation_refuses_a_bad_sample_id_and_a_partition_without_pncc(tmp_path):
    from pd_assets_tests.curation_fixtures import write_synthetic_partition

    root = tmp_path / "data"
    write_synthetic_partition(root, "r0", "s0000", n=2)
    pool = root / "pose_pool" / "r0" / "s0000"
    labels = pl.read_parquet(pool / "labels.parquet")
    labels.drop("control_pncc").write_parquet(pool / "labels.parquet")
    result = _curate(root)
    assert not result.success
    assert "no control_pncc column" in _error_text(result) and "include_pncc: false" in _error_text(result)
    assert _curate(root, {"include_pncc": False}).success  # said so: the shard ships jpg + json only
    _set_label(pool, 0, sample_id="../../x")
    result = _curate(root)
    assert not result.success
    assert "sample_id '../../x' is not of the form r{n}-s{nnnn}-{nnnnnn}" in _error_text(result)

"""The pose_pool asset end to end on one partition, with its checks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from PIL import Image

from pd_assets.poses.assets import pose_pool
from pd_assets.poses.checks import (
    POSES_CHECKS, evaluate_bbox_area, evaluate_camera_ranges, evaluate_controls,
    evaluate_finite_and_unique, evaluate_visible_inside,
)
from pd_assets.poses.labels import array_column
from pd_assets.poses.view import body_view
from pd_assets.skeleton import BODY_PARTS
from pd_assets.storage import COMPLETE_MARKER
from pd_assets_tests.helpers import ci_resources
from resources.body_model import BodyModelResource
from resources.pose_sampling import PoseSamplingResource

PARTITION = "r0|s0001"


def _materialize(root: Path, **overrides) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [pose_pool, *POSES_CHECKS], partition_key=PARTITION,
        resources=ci_resources(root, **overrides), raise_on_error=False,
    )


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    result = _materialize(root)
    return root, result


def test_materializes_with_all_checks_passing(pool_run):
    root, result = pool_run
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(POSES_CHECKS)
    failed = [e.check_name for e in evaluations if not e.passed]
    assert failed == []
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["num_samples"].value == 8
    assert meta["samples_per_second"].value > 0
    assert "data:image/jpeg;base64," in meta["preview"].value


def test_partition_layout_and_labels(pool_run):
    root, _ = pool_run
    part = root / "pose_pool" / "r0" / "s0001"
    labels = pl.read_parquet(part / "labels.parquet")
    assert labels["sample_id"].to_list() == [f"r0-s0001-{i:06d}" for i in range(8)]
    assert (part / COMPLETE_MARKER).exists() and (part / "preview.png").exists()
    for control in ("pncc", "depth", "normals", "parts", "skeleton", "shaded", "mask"):
        files = sorted(p.name for p in (part / "controls" / control).iterdir())
        assert files == [f"{s}.png" for s in labels["sample_id"]]
    assert Image.open(part / "controls" / "shaded" / files[0]).mode == "RGBA"
    assert Image.open(part / "controls" / "depth" / files[0]).mode.startswith("I")
    K = array_column(labels, "K", (3, 3))
    assert np.allclose(K[:, 0, 2], 63.5) and np.allclose(K[:, 1, 2], 63.5)  # principal point at the centre
    R = array_column(labels, "R", (3, 3))
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    assert set(labels["body_model"]) == {"anny"}
    assert all(len(p) > 20 for p in labels["prompt"])


def test_prompts_state_the_view_of_their_own_label_when_asked(pool_run, tmp_path):
    root, _ = pool_run
    plain = _labels(root)  # the default: the bank's prompt alone
    phrases = {"front": "facing the camera", "side": "seen from the side", "back": "seen from behind"}
    assert not any(p in text for text in plain["prompt"] for p in phrases.values())
    on = PoseSamplingResource(samples_per_shard=8, width=128, height=128, prompt_view=True)  # ci's, with the view
    assert _materialize(tmp_path, pose_sampling=on).success
    labels = _labels(tmp_path)
    views = [body_view(kp) for kp in array_column(labels, "keypoints3d_cam", (17, 3))]
    for prompt, view, before in zip(labels["prompt"], views, plain["prompt"]):
        assert prompt.replace(f" {phrases[view]}", "", 1) == before
    assert labels["keypoints2d"].to_list() == plain["keypoints2d"].to_list()  # only the prompts differ


def test_hair_changes_only_the_shaded_heads(pool_run, tmp_path):
    root, _ = pool_run  # the default: hair on
    bald = PoseSamplingResource(samples_per_shard=8, width=128, height=128, hair=False)  # ci's, no hair
    assert _materialize(tmp_path, pose_sampling=bald).success
    with_hair, without = (r / "pose_pool" / "r0" / "s0001" for r in (root, tmp_path))
    assert _labels(tmp_path).equals(_labels(root))
    head = BODY_PARTS.index("head")
    heads_changed = 0
    for path in sorted((with_hair / "controls").glob("*/*.png")):
        other = without / path.relative_to(with_hair)
        if path.parent.name != "shaded":
            assert path.read_bytes() == other.read_bytes(), path
            continue
        diff = (np.asarray(Image.open(path)) != np.asarray(Image.open(other))).any(axis=-1)
        parts = np.asarray(Image.open(with_hair / "controls" / "parts" / path.name))
        assert not diff[parts != head].any(), path  # hair lies on the head and nowhere else
        heads_changed += bool(diff.any())
    assert heads_changed >= 4  # 8 samples: most show some of the back of the head or the crown


def test_visible_keypoints_lie_on_the_rendered_mask(pool_run):
    """Geometry agreement: the label's projection and the renderer's camera are the same camera."""
    root, _ = pool_run
    part = root / "pose_pool" / "r0" / "s0001"
    labels = pl.read_parquet(part / "labels.parquet")
    kp = array_column(labels, "keypoints2d", (17, 2))
    vis = np.asarray(labels["keypoints_visible"].to_list(), bool)
    assert vis.sum() > 8 * 5
    hits = total = 0
    for i, sid in enumerate(labels["sample_id"]):
        mask = np.asarray(Image.open(part / "controls" / "mask" / f"{sid}.png")) > 0
        # a visible joint is inside the body silhouette (it may sit on the border: dilate 2 px)
        padded = np.pad(mask, 2)
        dil = np.zeros_like(mask)
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                dil |= padded[2 + dy: 2 + dy + mask.shape[0], 2 + dx: 2 + dx + mask.shape[1]]
        for (u, v) in kp[i][vis[i]]:
            total += 1
            hits += bool(dil[int(round(v)), int(round(u))])
    assert hits / total >= 0.97


def test_rematerializing_gives_identical_labels_and_no_leftovers(pool_run, tmp_path):
    root, _ = pool_run
    first = pl.read_parquet(root / "pose_pool" / "r0" / "s0001" / "labels.parquet")
    assert _materialize(tmp_path).success
    again = pl.read_parquet(tmp_path / "pose_pool" / "r0" / "s0001" / "labels.parquet")
    assert first.equals(again)
    # and once more in place: the partition is replaced whole, nothing else remains
    assert _materialize(tmp_path).success
    assert sorted(p.name for p in (tmp_path / "pose_pool" / "r0").iterdir()) == ["s0001"]


def test_other_partition_draws_differently(pool_run, tmp_path):
    root, _ = pool_run
    random_r1 = PoseSamplingResource(samples_per_shard=8, width=128, height=128, draw_from_mined=False)
    result = dg.materialize([pose_pool], partition_key="r1|s0001",
                            resources=ci_resources(tmp_path, pose_sampling=random_r1))
    assert result.success
    a = pl.read_parquet(root / "pose_pool" / "r0" / "s0001" / "labels.parquet")
    b = pl.read_parquet(tmp_path / "pose_pool" / "r1" / "s0001" / "labels.parquet")
    assert not np.allclose(array_column(a, "body_pose", (63,)), array_column(b, "body_pose", (63,)))


def _labels(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "pose_pool" / "r0" / "s0001" / "labels.parquet")


def test_camera_check_compares_against_configured_ranges(pool_run):
    root, _ = pool_run
    labels = _labels(root)
    ci = PoseSamplingResource(samples_per_shard=8, width=128, height=128)
    ok = evaluate_camera_ranges(labels, ci)
    assert ok.passed
    # plain values in the UI: "lo .. hi unit", at most 3 significant decimals
    lo, hi = (float(v) for v in ok.metadata["distance_range_m"].value.removesuffix(" m").split(" .. "))
    assert (lo, hi) == tuple(ci.distance_range_m)
    assert re.fullmatch(r"\d+(\.\d{1,3})? \.\. \d+(\.\d{1,3})? px", ok.metadata["focal_observed"].value)
    narrow = PoseSamplingResource(samples_per_shard=8, width=128, height=128, fov_range_deg=[49.9, 50.1])
    result = evaluate_camera_ranges(labels, narrow)
    assert not result.passed and "focal_px" in result.metadata["failures"].value
    far = labels.with_columns(pl.lit(9.5).alias("distance_m"))
    assert not evaluate_camera_ranges(far, ci).passed


def test_label_checks_catch_nan_duplicates_small_boxes_and_outside_keypoints(pool_run):
    root, _ = pool_run
    labels = _labels(root)
    assert evaluate_finite_and_unique(labels).passed
    nan_pose = labels.with_columns(pl.Series("body_pose", [[float("nan")] * 63] + labels["body_pose"].to_list()[1:]))
    assert not evaluate_finite_and_unique(nan_pose).passed
    dup = labels.with_columns(pl.Series("sample_id", [labels["sample_id"][0]] * len(labels)))
    assert not evaluate_finite_and_unique(dup).passed
    escaping = labels.with_columns(pl.Series("sample_id", ["../../outside/x"] + labels["sample_id"].to_list()[1:]))
    assert not evaluate_finite_and_unique(escaping).passed  # issue 11: ids name files downstream
    assert evaluate_bbox_area(labels).passed
    tiny = labels.with_columns(pl.Series("bbox_xyxy", [[0.0, 0.0, 10.0, 10.0]] * len(labels)))
    assert not evaluate_bbox_area(tiny).passed  # 100 px^2 < 32x32
    assert evaluate_visible_inside(labels).passed
    kp = labels["keypoints2d"].to_list()
    kp[0] = [-40.0] * 34
    vis = labels["keypoints_visible"].to_list()
    vis[0] = [True] * 17
    outside = labels.with_columns(pl.Series("keypoints2d", kp), pl.Series("keypoints_visible", vis))
    result = evaluate_visible_inside(outside)
    assert not result.passed and result.metadata["visible_outside_total"].value == 17


def test_controls_check_finds_missing_and_extra_files(pool_run, tmp_path):
    import shutil

    root, _ = pool_run
    part = tmp_path / "copy"
    shutil.copytree(root / "pose_pool" / "r0" / "s0001", part)
    labels = _labels(root)
    assert evaluate_controls(labels, part).passed
    (part / "controls" / "depth" / f"{labels['sample_id'][3]}.png").unlink()
    (part / "controls" / "pncc" / "stray.png").write_bytes(b"x")
    result = evaluate_controls(labels, part)
    assert not result.passed
    assert set(result.metadata["problems"].value) == {"depth", "pncc"}


def test_unknown_control_is_a_clear_error(tmp_path):
    bad = PoseSamplingResource(samples_per_shard=2, width=64, height=64, controls=["pncc", "thermal"])
    result = _materialize(tmp_path, pose_sampling=bad)
    assert not result.success
    assert "thermal" in str(result.get_step_failure_events()[0].event_specific_data.error)
    assert not (tmp_path / "pose_pool" / "r0" / "s0001").exists()


def test_missing_smplx_fails_at_resource_setup_naming_the_variable(tmp_path):
    result = _materialize(tmp_path, body_model=BodyModelResource(kind="smplx"))
    assert not result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert "RESOURCE_INIT_FAILURE" in kinds and "STEP_START" not in kinds  # before the step's work
    failure = next(e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    error = failure.event_specific_data.error
    messages = [error.message] + [c.message for c in (error.cause, error.context) if c is not None]
    assert any("PD_SMPLX_MODEL_PATH" in m and "at None" not in m for m in messages), messages
    assert BodyModelResource(kind=" SMPLX ").kind == "smplx"
    with pytest.raises(ValueError, match="PD_BODY_MODEL"):
        BodyModelResource(kind="smpl")


def test_killed_run_leaves_previous_partition_intact(tmp_path):
    """Kill a materialisation midway: the partition is either the old one or absent, never partial."""
    script = textwrap.dedent(f"""
        import dagster as dg, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from pd_assets.poses.assets import pose_pool
        from pd_assets_tests.helpers import ci_resources
        from resources.pose_sampling import PoseSamplingResource
        from pathlib import Path
        res = ci_resources(Path({str(tmp_path)!r}), pose_sampling=PoseSamplingResource(
            samples_per_shard=int(sys.argv[1]), width=128, height=128))
        dg.materialize([pose_pool], partition_key={PARTITION!r}, resources=res)
        print("DONE", flush=True)
    """)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-c", script, "4"], env=env, capture_output=True, text=True, timeout=300)
    assert "DONE" in done.stdout, done.stderr[-2000:]
    part = tmp_path / "pose_pool" / "r0" / "s0001"
    before = pl.read_parquet(part / "labels.parquet")
    proc = subprocess.Popen([sys.executable, "-c", script, "400"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    staging_seen = False
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        staged = list((tmp_path / "pose_pool" / "r0").glob(".s0001.staging-*/controls/pncc/*.png"))
        if len(staged) >= 3:
            staging_seen = True
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert staging_seen, "the run never started writing"
    assert pl.read_parquet(part / "labels.parquet").equals(before)  # old partition untouched
    assert len(list((part / "controls" / "pncc").iterdir())) == 4
    # the next run cleans the leftover staging directory and completes
    done = subprocess.run([sys.executable, "-c", script, "4"], env=env, capture_output=True, text=True, timeout=300)
    assert "DONE" in done.stdout, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "pose_pool" / "r0").iterdir()) == ["s0001"]

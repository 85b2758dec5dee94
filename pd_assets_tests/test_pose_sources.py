"""AMASS and per-image fit loaders on small synthetic files; every failure names the file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pd_assets.poses import pose_sources as src
from pd_assets.poses.pose_sources import PoseSourceError


def write_amass(path: Path, frames: int = 40, width: int = 165, seed: int = 0, **extra) -> np.ndarray:
    rng = np.random.default_rng(seed)
    poses = rng.normal(scale=0.3, size=(frames, width))
    poses[:, 3] = np.arange(frames)  # frame id hidden in the first body value
    arrays = dict(poses=poses, trans=rng.normal(size=(frames, 3)), betas=np.arange(16) * 0.1,
                  gender=np.array("female"), mocap_frame_rate=np.array(120.0))
    arrays.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return poses


def test_amass_sequence_gives_15_distinct_frames_with_all_parts(tmp_path):
    poses = write_amass(tmp_path / "CMU" / "01" / "01_01_poses.npz")
    recs = src.load_amass_sequence(tmp_path / "CMU" / "01" / "01_01_poses.npz",
                                   np.random.default_rng(0), root=tmp_path)
    frames = [int(r.source.rsplit(":", 1)[1]) for r in recs]
    assert len(recs) == 15 and len(set(frames)) == 15 and frames == sorted(frames)
    assert recs[0].source == f"amass:CMU/01/01_01_poses.npz:{frames[0]}"
    for r, f in zip(recs, frames):
        assert np.allclose(r.body_pose.reshape(-1), poses[f, 3:66]) and r.body_pose[0, 0] == f
        assert np.allclose(r.jaw_pose, poses[f, 66:69])
        assert np.allclose(r.left_hand_pose.reshape(-1), poses[f, 75:120])
        assert np.allclose(r.right_hand_pose.reshape(-1), poses[f, 120:165])
        assert np.allclose(r.betas, np.arange(16) * 0.1)
    again = src.load_amass_sequence(tmp_path / "CMU" / "01" / "01_01_poses.npz",
                                    np.random.default_rng(0), root=tmp_path)
    assert [r.source for r in again] == [r.source for r in recs]


def test_short_sequences_and_smplh_layout(tmp_path):
    poses = write_amass(tmp_path / "short.npz", frames=6, width=156)
    recs = src.load_amass_sequence(tmp_path / "short.npz", np.random.default_rng(0))
    assert len(recs) == 6 and recs[0].jaw_pose is None
    assert np.allclose(recs[2].left_hand_pose.reshape(-1), poses[2, 66:111])
    assert np.allclose(recs[2].right_hand_pose.reshape(-1), poses[2, 111:156])


def test_z_up_root_becomes_y_up(tmp_path):
    # AMASS puts the y-up SMPL model into a z-up world: a person standing there has
    # root = R_z(yaw) R_x(+90 deg) (model up +y -> world up +z)
    yaws = [0.0, 60.0, 170.0]
    poses = np.zeros((4, 165))
    for k, yaw in enumerate(yaws, start=1):
        poses[k, :3] = (Rotation.from_euler("z", yaw, degrees=True)
                        * Rotation.from_euler("x", 90, degrees=True)).as_rotvec()
    np.savez(tmp_path / "s.npz", poses=poses, trans=np.zeros((4, 3)))
    recs = src.load_amass_sequence(tmp_path / "s.npz", np.random.default_rng(0))
    # identity in z-up (a body lying in AMASS) is -90 deg about x in the y-up body frame
    assert np.allclose(recs[0].global_orient, [-np.pi / 2, 0, 0])
    # the standing bodies stand here, turned by the same yaw about our vertical (y)
    for r, yaw in zip(recs[1:], yaws):
        assert np.allclose(Rotation.from_rotvec(r.global_orient).as_matrix(),
                           Rotation.from_euler("y", yaw, degrees=True).as_matrix())


def test_tree_iteration_is_sorted_deterministic_and_skips_shape_files(tmp_path):
    write_amass(tmp_path / "B" / "b.npz", frames=20, seed=1)
    write_amass(tmp_path / "A" / "a.npz", frames=40, seed=2)
    np.savez(tmp_path / "A" / "shape.npz", betas=np.zeros(16), gender=np.array("male"))
    skipped = []
    recs = list(src.iter_pose_source(tmp_path, np.random.default_rng(0),
                                     on_skip=lambda p, why: skipped.append((p.name, why))))
    assert len(recs) == 30 and recs[0].source.startswith("amass:A/a.npz:")
    assert recs[-1].source.startswith("amass:B/b.npz:")
    assert skipped == [("shape.npz", "shape-only file (betas, no poses)")]
    again = list(src.iter_pose_source([str(tmp_path)], np.random.default_rng(0)))
    assert [r.source for r in again] == [r.source for r in recs]
    with pytest.raises(PoseSourceError, match="does not exist"):
        list(src.iter_pose_source(tmp_path / "missing", np.random.default_rng(0)))


def corrupt_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = tmp_path / "good.npz"
    write_amass(good)
    data = good.read_bytes()
    cases = {}
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    cases["truncated"] = (tmp_path / "trunc.npz", "truncated or corrupt")
    (tmp_path / "text.npz").write_bytes(b"this is not a zip archive at all")
    cases["not a zip"] = (tmp_path / "text.npz", "not a readable .npz")
    np.savez(tmp_path / "nopose.npz", trans=np.zeros((4, 3)), betas=np.zeros(16))
    cases["missing poses"] = (tmp_path / "nopose.npz", "no 'poses'")
    bad = np.zeros((10, 165))
    bad[3, 7] = np.nan
    np.savez(tmp_path / "nan.npz", poses=bad, trans=np.zeros((10, 3)))
    cases["nan"] = (tmp_path / "nan.npz", "1 NaN/inf")
    np.savez(tmp_path / "shape3.npz", poses=np.zeros((10, 72)), trans=np.zeros((10, 3)))
    cases["width"] = (tmp_path / "shape3.npz", r"shape \(10, 72\)")
    np.savez(tmp_path / "empty.npz", poses=np.zeros((0, 165)), trans=np.zeros((0, 3)))
    cases["no frames"] = (tmp_path / "empty.npz", r"shape \(0, 165\)")
    np.savez(tmp_path / "obj.npz", poses=np.array([{"a": 1}], dtype=object), trans=np.zeros(3))
    cases["pickled"] = (tmp_path / "obj.npz", "unreadable")
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npz").write_bytes((tmp_path / "single.npy").read_bytes())
    cases["npy"] = (tmp_path / "single.npz", "single .npy")
    return cases


@pytest.mark.parametrize("case", ["truncated", "not a zip", "missing poses", "nan", "width",
                                  "no frames", "pickled", "npy"])
def test_corrupt_files_raise_named_errors(tmp_path, case):
    path, what = corrupt_cases(tmp_path)[case]
    with pytest.raises(PoseSourceError, match=what) as err:
        src.load_amass_sequence(path, np.random.default_rng(0))
    msg = str(err.value)
    assert str(path) in msg and "re-download it or remove it from" in msg


def test_truncated_member_is_caught_when_the_directory_survives(tmp_path):
    # corrupt bytes inside a stored member: the zip opens, reading 'poses' fails its CRC
    p = tmp_path / "crc.npz"
    write_amass(p)
    data = bytearray(p.read_bytes())
    start = data.index(b"poses.npy") + 200
    data[start:start + 64] = bytes(64)
    p.write_bytes(bytes(data))
    with pytest.raises(PoseSourceError, match="crc.npz"):
        src.load_amass_sequence(p, np.random.default_rng(0))


def test_fit_directory_npz_and_json(tmp_path):
    rng = np.random.default_rng(0)
    body = rng.normal(scale=0.2, size=(21, 3))
    np.savez(tmp_path / "img_001.npz", global_orient=np.zeros((1, 3)), body_pose=body.reshape(1, 63),
             betas=np.ones((1, 10)), left_hand_pose=np.zeros(45), right_hand_pose=np.ones((15, 3)))
    mats = Rotation.from_rotvec(body).as_matrix()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "img_002.json").write_text(json.dumps({
        "global_orient": np.eye(3).tolist(), "body_pose": mats.tolist(), "jaw_pose": [0.1, 0, 0]}))
    (tmp_path / "notes.txt").write_text("ignored")
    recs = src.load_fit_directory(tmp_path)
    assert [r.source for r in recs] == ["fit:img_001.npz", "fit:sub/img_002.json"]
    assert np.allclose(recs[0].body_pose, body) and np.allclose(recs[1].body_pose, body)
    assert recs[0].betas.shape == (10,) and recs[0].right_hand_pose.shape == (15, 3)
    assert recs[1].left_hand_pose is None and np.allclose(recs[1].jaw_pose, [0.1, 0, 0])
    assert np.allclose(recs[0].global_orient, 0)
    # HMR-style camera-frame fits: identity (upside down in y-up) turns 180 deg about x
    cam = src.load_fit_directory(tmp_path, frame="opencv_camera")
    assert np.allclose(Rotation.from_rotvec(cam[0].global_orient).as_matrix(), np.diag([1, -1, -1]))


@pytest.mark.parametrize("content,match", [
    ({"body_pose": [0.0] * 63}, "missing 'global_orient'"),
    ({"global_orient": [0, 0, 0], "body_pose": [0.0] * 60}, r"'body_pose' has shape \(60,\)"),
    ({"global_orient": [0, 0, 0], "body_pose": [0.0] * 63, "left_hand_pose": [0.0] * 12}, "use_pca=False"),
    ({"global_orient": [0, 0, None], "body_pose": [0.0] * 63}, "NaN/inf"),
])
def test_bad_fits_name_file_and_problem(tmp_path, content, match):
    (tmp_path / "fit.json").write_text(json.dumps(content))
    with pytest.raises(PoseSourceError, match=match) as err:
        src.load_fit_directory(tmp_path)
    assert "fit.json" in str(err.value)


def test_fit_directory_errors(tmp_path):
    with pytest.raises(PoseSourceError, match="does not exist"):
        src.load_fit_directory(tmp_path / "nope")
    with pytest.raises(PoseSourceError, match="no .npz or .json"):
        src.load_fit_directory(tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(PoseSourceError, match="broken.json.*unreadable JSON"):
        src.load_fit_directory(tmp_path)


def test_load_pose_records_dispatch(tmp_path, caplog):
    assert src.load_pose_records("procedural", (), np.random.default_rng(0)) is None
    write_amass(tmp_path / "a" / "x.npz", frames=20)
    np.savez(tmp_path / "a" / "shape.npz", betas=np.zeros(16))
    with caplog.at_level(logging.WARNING):
        recs = src.load_pose_records("amass", [str(tmp_path / "a")], np.random.default_rng(0), 5)
    assert len(recs) == 5 and "shape-only" in caplog.text
    with pytest.raises(PoseSourceError, match="pose_source_paths"):
        src.load_pose_records("amass", (), np.random.default_rng(0))
    with pytest.raises(ValueError, match="mocap"):
        src.load_pose_records("mocap", (), np.random.default_rng(0))

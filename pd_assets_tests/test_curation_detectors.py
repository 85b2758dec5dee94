"""Keypoint detector backends: the mediapipe task bundle, MediapipeDetector, ViTPose, the resource."""

from __future__ import annotations

import logging
import os
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from pd_assets.curation import mediapipe_task
from pd_assets.curation.detectors import BLAZEPOSE_TO_COCO17, DetectorError, MediapipeDetector, VitPoseDetector
from pd_assets.skeleton import COCO17_FLIP, COCO17_KEYPOINTS
from pd_assets_tests.curation_fixtures import person_image, synthetic_label
from resources.keypoint_detector import KeypointDetectorResource
from resources.paths import models_dir


@pytest.fixture(scope="session")
def task_path():
    """The task `make setup` builds (built here if missing: needs the cached wheel or PyPI)."""
    return mediapipe_task.build(models_dir())["task"]


@pytest.fixture(scope="module")
def person():
    row, mask = synthetic_label("r0-s0000-000000", size=256)
    return row, mask, person_image(mask, seed=0)


def test_task_bundle_layout_is_aligned_uncompressed_and_reproducible(tmp_path, task_path):
    with zipfile.ZipFile(task_path) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == ["pose_detector.tflite", "pose_landmarks_detector.tflite"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        for i in infos:  # data offsets 4-byte aligned (mmap-able, as mediapipe's own writer does)
            assert (i.header_offset + 30 + len(i.filename) + len(i.extra)) % 4 == 0
    wheel = mediapipe_task.download_wheel(models_dir() / "wheels")
    out = mediapipe_task.build(tmp_path, wheel=wheel)
    assert out["task"].read_bytes() == task_path.read_bytes()
    mtime = out["task"].stat().st_mtime_ns
    assert mediapipe_task.build(tmp_path, wheel=wheel)["task"].stat().st_mtime_ns == mtime  # idempotent


def test_a_bad_wheel_is_named(tmp_path):
    bad = tmp_path / "mediapipe-0.10.21-x.whl"
    bad.write_bytes(b"nope")
    with pytest.raises(mediapipe_task.MediapipeTaskError, match="is not a mediapipe"):
        mediapipe_task.build(tmp_path / "out", wheel=bad)


def test_missing_task_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DetectorError, match=r"not found at .*nope\.task.*make setup"):
        MediapipeDetector(tmp_path / "nope.task")
    with pytest.raises(DetectorError, match="make setup"):
        KeypointDetectorResource(task_path=str(tmp_path / "nope.task")).build()


def test_mediapipe_detects_a_person_with_coco17_keypoints_and_a_mask(task_path, person):
    row, mask, image = person
    with MediapipeDetector(task_path, num_poses=3) as det:
        found, empty = det.detect([image, np.full_like(image, 127)])
        assert det.provenance()["model_sha256"] and det.provenance()["backend"] == "mediapipe"
    assert found.person_count == 1 and empty.person_count == 0
    assert found.keypoints.shape == (1, 17, 2) and found.confidence.shape == (1, 17)
    assert found.masks.shape == (1, 256, 256) and found.person_mask.shape == (256, 256)
    assert 0.0 <= found.confidence.min() and found.confidence.max() <= 1.0 and found.presence[0] > 0.5
    label = np.asarray(row["keypoints2d"]).reshape(17, 2)
    # the drawing has no face, so front and back (left and right) are ambiguous
    err = min(np.median(np.linalg.norm(found.keypoints[0] - lab, axis=1)) for lab in (label, label[list(COCO17_FLIP)]))
    assert err < 10  # px on a 256 px image
    iou = (found.person_mask & mask).sum() / (found.person_mask | mask).sum()
    assert iou > 0.5
    assert empty.masks.shape == (0, 256, 256) and not empty.person_mask.any()


def test_mediapipe_native_notices_stay_out_of_the_log(task_path, person, capfd):
    _, _, image = person
    with MediapipeDetector(task_path, num_poses=3) as det:
        det.detect([image])
    err = capfd.readouterr().err
    assert "Sparsity tensors" not in err and "INFO: [" not in err and "not aligned" not in err, err


def test_native_lines_that_are_not_known_notices_still_show(capfd):
    from pd_assets.curation.native_logs import quiet_native_notices

    with quiet_native_notices():
        os.write(2, b"WARNING: [model_load.cc:402] Sparsity tensors may not yet be fully supported.\n"
                    b"INFO: [environment.cc:36] Creating LiteRT environment with options\n"
                    b"W0000 00:00:1796411186.837487   20849 landmark_projection_calculator.cc:81] Using "
                    b"NORM_RECT without IMAGE_DIMENSIONS is only supported for the square ROI. Provide\n"
                    b"E0000 calculator_graph.cc:12] a real native error\n")
    err = capfd.readouterr().err
    assert err == "E0000 calculator_graph.cc:12] a real native error\n"


def test_blazepose_to_coco_map_names_match_mediapipes_own_landmark_enum():
    from mediapipe.tasks.python.vision import PoseLandmark

    assert [PoseLandmark(i).name.lower() for i in BLAZEPOSE_TO_COCO17] == list(COCO17_KEYPOINTS)


class _FakeMask:
    def __init__(self, array):
        self._array = array

    def numpy_view(self):
        return self._array


class _FakeLandmarker:
    """Returns one person whose 33 BlazePose landmarks encode their own index."""

    def __init__(self, landmarks, mask):
        self.result = SimpleNamespace(pose_landmarks=[landmarks], segmentation_masks=[_FakeMask(mask)])

    def detect(self, _image):
        return self.result

    def close(self):
        pass


def test_mediapipe_output_is_mapped_to_coco17_in_opencv_pixels():
    """A known BlazePose landmark array (landmark i at x = i / 40, y = 1 - i / 40, visibility
    i / 33, presence 0.9) goes through the detector's own mapping and pixel conversion."""
    import mediapipe as mp
    from mediapipe.tasks.python.components.containers.landmark import NormalizedLandmark

    h, w = 60, 80
    landmarks = [NormalizedLandmark(x=i / 40, y=1 - i / 40, z=0.0, visibility=i / 33, presence=0.9)
                 for i in range(33)]
    mask = np.zeros((h, w, 1), np.float32)
    mask[10:20, 30:50] = 0.8
    det = object.__new__(MediapipeDetector)  # the landmarker itself is replaced, nothing else
    det._mp, det.mask_threshold, det._landmarker = mp, 0.5, _FakeLandmarker(landmarks, mask)
    out = det.detect([np.zeros((h, w, 3), np.uint8)])[0]
    # COCO left_hip is BlazePose 23, right_ankle is 28, nose is 0
    coco = {name: i for i, name in enumerate(COCO17_KEYPOINTS)}
    np.testing.assert_allclose(out.keypoints[0, coco["left_hip"]], [23 / 40 * w - 0.5, (1 - 23 / 40) * h - 0.5])
    np.testing.assert_allclose(out.keypoints[0, coco["right_ankle"]], [28 / 40 * w - 0.5, (1 - 28 / 40) * h - 0.5])
    np.testing.assert_allclose(out.keypoints[0, coco["nose"]], [-0.5, h - 0.5])
    np.testing.assert_allclose(out.confidence[0], np.array(BLAZEPOSE_TO_COCO17) / 33)
    assert out.presence[0] == pytest.approx(0.9) and out.person_count == 1
    assert out.masks.shape == (1, h, w) and out.masks[0].sum() == 200 and out.masks[0, 15, 40]


@pytest.mark.parametrize("env,local_only", [("false", False), ("0", False), ("", False), ("1", True), ("TRUE", True)])
def test_vitpose_reads_hf_hub_offline_as_huggingface_hub_does(monkeypatch, tiny_vitpose, env, local_only):
    from transformers import VitPoseForPoseEstimation

    seen = []
    load = VitPoseForPoseEstimation.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("local_files_only"))
        return load(cls, *args, **kwargs)

    monkeypatch.setattr(VitPoseForPoseEstimation, "from_pretrained", classmethod(spy))
    monkeypatch.setenv("HF_HUB_OFFLINE", env)
    VitPoseDetector(str(tiny_vitpose))
    assert seen == [local_only]


@pytest.fixture(scope="module")
def tiny_vitpose(tmp_path_factory):
    import torch
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation
    from transformers.models.vitpose.image_processing_pil_vitpose import VitPoseImageProcessorPil

    path = tmp_path_factory.mktemp("vitpose")
    backbone = VitPoseBackboneConfig(image_size=[64, 48], patch_size=[16, 16], hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, out_indices=[2])
    torch.manual_seed(0)
    VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=17)).save_pretrained(path)
    VitPoseImageProcessorPil(size={"height": 64, "width": 48}).save_pretrained(path)
    return path


def test_vitpose_tiny_random_model_batches_and_uses_boxes(tiny_vitpose, person):
    row, _, image = person
    det = VitPoseDetector(str(tiny_vitpose), batch_size=2)
    out = det.detect([image, image, image], boxes=[row["bbox_xyxy"], None, [10, 10, 60, 90]])
    assert len(out) == 3
    for d in out:
        assert d.person_count == 1 and d.keypoints.shape == (1, 17, 2) and d.masks is None
        assert d.person_mask is None and 0.0 <= d.confidence.min() <= d.confidence.max() <= 1.0
    x0, y0, x1, y1 = row["bbox_xyxy"]  # a top-down model predicts inside (around) its box
    kp = out[0].keypoints[0]
    assert (kp[:, 0] > x0 - (x1 - x0)).all() and (kp[:, 0] < x1 + (x1 - x0)).all()
    with pytest.raises(DetectorError, match="one per image"):
        det.detect([image], boxes=[None, None])


def test_vitpose_errors_name_the_model(tmp_path):
    with pytest.raises(DetectorError, match="could not load the ViTPose model"):
        VitPoseDetector(str(tmp_path / "missing"))


def test_resource_profiles_and_caching(monkeypatch, task_path):
    ci = KeypointDetectorResource.for_profile("ci")
    assert ci.backend == "mediapipe" and ci.resolved_model() == str(task_path)
    assert ci.build() is ci.build()  # one detector per process and configuration
    monkeypatch.setenv("PD_KEYPOINT_MODEL", "usyd-community/vitpose-base-simple")
    gpu = KeypointDetectorResource.for_profile("gpu")
    assert (gpu.backend, gpu.model, gpu.device) == ("vitpose", "usyd-community/vitpose-base-simple", "cuda")
    with pytest.raises(ValueError, match="is not one of"):
        KeypointDetectorResource(backend="openpose").resolved_model()
    assert KeypointDetectorResource(calibration="none").load_calibration() is None


def test_auto_calibration_finds_the_packaged_one_for_this_exact_task(tmp_path, task_path):
    copy = tmp_path / "pose_landmarker_full.task"
    copy.write_bytes(task_path.read_bytes())
    cal = KeypointDetectorResource(task_path=str(copy)).load_calibration()
    assert cal is not None and cal.backend == "mediapipe" and cal.body_model == "anny"
    assert cal.heldout["oks_after"]["n"] > 0  # it says how it was measured
    # a calibration fitted here (next to the task) wins over the packaged one
    local = cal.__class__.identity("mediapipe")
    local.source = "fitted here"
    local.save(copy.with_suffix(".calibration.json"))
    assert KeypointDetectorResource(task_path=str(copy)).load_calibration().source == "fitted here"
    with pytest.raises(FileNotFoundError, match="calibrate"):
        KeypointDetectorResource(task_path=str(copy), calibration=str(tmp_path / "nope.json")).load_calibration()


class _StubDetector:
    def __init__(self, sha: str):
        self.sha = sha

    def provenance(self) -> dict:
        return {"backend": "mediapipe", "model": "stub.task", "model_sha256": self.sha}


def test_auto_calibration_for_another_task_says_it_runs_uncalibrated(monkeypatch, tmp_path, caplog):
    """A task whose sha256 has no packaged calibration: None, a warning, and the reason."""
    monkeypatch.setattr(KeypointDetectorResource, "build", lambda self: _StubDetector("ab" * 32))
    resource = KeypointDetectorResource(task_path=str(tmp_path / "other.task"))
    with caplog.at_level(logging.WARNING, logger="resources.keypoint_detector"):
        cal, status = resource.resolve_calibration()
    assert cal is None and status.startswith("none (") and "abababababababab" in status
    assert "none packaged for this mediapipe model" in status
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "uncalibrated" in warnings[0].getMessage()
    assert "abababababababab" in warnings[0].getMessage()
    # the packaged task's sha finds its calibration silently
    from pd_assets.curation.calibration import PACKAGED_DIR

    packaged_sha = sorted(PACKAGED_DIR.glob("mediapipe-*.json"))[0].stem.split("-")[1]
    caplog.clear()
    monkeypatch.setattr(KeypointDetectorResource, "build", lambda self: _StubDetector(packaged_sha + "0" * 48))
    cal, status = resource.resolve_calibration()
    assert cal is not None and status == cal.source and not caplog.records
    # explicitly disabled: no warning, and the status says so
    assert KeypointDetectorResource(calibration="none").resolve_calibration() == (
        None, "none (keypoint_detector.calibration=none)")


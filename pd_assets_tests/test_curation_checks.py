"""The check logic and the index contract on hand-made index tables; input readers."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from pd_assets.curation.assets import reject_table
from pd_assets.curation.checks import (
    ids_result, index_expectations, kept_oks_result, median_kept_oks_result, pass_rate_result,
)
from pd_assets.curation.inputs import load_image
from pd_assets.curation.pipeline import index_frame
from pd_assets_tests.curation_fixtures import png, textured_background


def _index(rows):
    base = {"person_count": 1, "sharpness": 50.0, "num_visible_keypoints": 17, "clipped_dark": 0.0,
            "clipped_bright": 0.0, "presence": 0.9, "mask_iou": 0.9, "pck": 1.0}
    return index_frame([{**base, **r} for r in rows])


GOOD = [
    {"sample_id": "r0-s0000-000000", "kept": True, "oks": 0.95, "difficulty_bin": "low", "failed_checks": []},
    {"sample_id": "r0-s0000-000001", "kept": True, "oks": 0.91, "difficulty_bin": "low", "failed_checks": []},
    {"sample_id": "r0-s0000-000002", "kept": False, "oks": 0.5, "difficulty_bin": "high",
     "reject_stage": "pose_alignment", "reject_reason": "OKS 0.500 < 0.85", "failed_checks": ["oks"]},
    {"sample_id": "r0-s0000-000003", "kept": False, "oks": None, "reject_stage": "readable",
     "reject_reason": "unreadable image: x", "failed_checks": ["unreadable"]},
]


def test_kept_and_median_oks_checks():
    index = _index(GOOD)
    assert kept_oks_result(index, 0.85).passed
    bad = kept_oks_result(index, 0.93)
    assert not bad.passed and bad.metadata["violating_ids"].value == "r0-s0000-000001"
    assert median_kept_oks_result(index, 0.9).metadata["median_kept_oks"].value == pytest.approx(0.93)
    assert not median_kept_oks_result(index, 0.94).passed
    assert median_kept_oks_result(index.filter(~pl.col("kept")), 0.9).passed  # nothing kept: vacuous


def test_ids_check_finds_every_kind_of_mismatch():
    index = _index(GOOD)
    ids = index["sample_id"].to_list()
    assert ids_result(index, ids[:2], ids).passed
    res = ids_result(index, [ids[0], ids[2]], ids[:3] + ["r0-s0000-000009"])
    meta = {k: v.value for k, v in res.metadata.items()}
    assert not res.passed
    assert (meta["kept_not_in_tar"], meta["tar_not_kept"], meta["pool_not_in_index"], meta["index_not_in_pool"]) == (1, 1, 1, 1)


def test_pass_rate_is_a_warning():
    res = pass_rate_result(_index(GOOD), (0.6, 0.9))
    assert not res.passed and res.severity.value == "WARN" and res.metadata["pass_rate"].value == 0.5


def test_index_contract_passes_on_a_good_index_and_names_violations():
    assert index_expectations(_index(GOOD)).success
    broken = GOOD + [{"sample_id": "r0-s0000-000000", "kept": True, "oks": 1.3, "reject_stage": "pose_alignment",
                      "failed_checks": []}]
    result = index_expectations(_index(broken))
    assert not result.success
    text = "\n".join(result.failures)
    assert "expect_column_values_to_be_unique" in text and "'oks'" in text
    assert "expect_column_values_to_be_null" in text  # a kept row with a reject stage


def test_reject_table_orders_by_stage():
    table = reject_table(_index(GOOD))
    assert table.rows() == [("readable", "unreadable", 1, "unreadable image: x"),
                            ("pose_alignment", "oks", 1, "OKS 0.500 < 0.85")]
    assert reject_table(_index(GOOD[:2])).height == 0


def test_load_image_reasons(tmp_path):
    img = textured_background(64, 0)
    (tmp_path / "ok.png").write_bytes(png(img))
    assert load_image(tmp_path / "ok.png", (64, 64))[0].shape == (64, 64, 3)
    assert load_image(tmp_path / "ok.png", (128, 128))[0].shape == (128, 128, 3)  # same aspect: resized
    _, why = load_image(tmp_path / "ok.png", (128, 64))
    assert why == "unreadable image: size 64x64 does not match the label's 128x64"
    assert load_image(tmp_path / "missing.png")[1] == "unreadable image: file missing at missing.png"
    shutil.copy(tmp_path / "ok.png", tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:100])
    image, why = load_image(tmp_path / "cut.png")
    assert image is None and why.startswith("unreadable image: ")

"""Curation inputs: label masks, image hashes against provenance, unfinished raw_generations."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pd_assets.curation.inputs import (
    InputError, check_generation_complete, load_mask, provenance_error, read_image_file,
)
from pd_assets_tests.curation_fixtures import corrupt_png, png, textured_background

FIX = "re-materialise pose_pool"


@pytest.fixture()
def mask_png(tmp_path):
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 255
    path = tmp_path / "mask.png"
    path.write_bytes(png(mask))
    return path


def test_a_good_label_mask_loads_as_bool(mask_png):
    mask, why = load_mask(mask_png, (64, 48))
    assert why is None and mask.dtype == bool and mask.shape == (48, 64) and mask.sum() == 400


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_corrupt_label_mask_gives_its_reason_not_none(mask_png, how):
    mask_png.write_bytes(corrupt_png(mask_png.read_bytes(), how))
    mask, why = load_mask(mask_png, (64, 48))
    assert mask is None and why.startswith("unreadable label mask: ") and why.endswith(FIX)


def test_a_missing_or_misfit_label_mask_gives_its_reason(tmp_path, mask_png):
    assert load_mask(tmp_path / "gone.png")[1] == f"unreadable label mask: file missing at gone.png; {FIX}"
    assert load_mask(None)[1] == f"unreadable label mask: the label row names no control_mask; {FIX}"
    mask, why = load_mask(mask_png, (128, 96))
    assert mask is None and why == f"unreadable label mask: size 64x48 does not match the label's 128x96; {FIX}"


def test_the_image_hash_is_of_the_bytes_that_were_decoded(tmp_path):
    data = png(textured_background(32, seed=1))
    (tmp_path / "a.png").write_bytes(data)
    image, why, sha = read_image_file(tmp_path / "a.png", (32, 32))
    assert why is None and image.shape == (32, 32, 3) and sha == hashlib.sha256(data).hexdigest()
    (tmp_path / "b.png").write_bytes(corrupt_png(data, "truncated"))
    image, why, sha = read_image_file(tmp_path / "b.png")
    assert image is None and why.startswith("unreadable image: ")
    assert sha == hashlib.sha256(corrupt_png(data, "truncated")).hexdigest()  # still comparable
    assert read_image_file(tmp_path / "c.png")[1:] == ("unreadable image: file missing at c.png", None)


def test_provenance_error_names_a_missing_row_and_a_hash_mismatch():
    sha = "ab" * 32
    assert provenance_error({"image_sha256": sha}, sha) is None
    assert provenance_error({"image_sha256": sha}, "cd" * 32) == (
        "image does not match its provenance (sha256): re-materialise raw_generations")
    assert provenance_error({"image_sha256": None}, sha).startswith("image does not match its provenance")
    assert provenance_error(None, sha) == "image has no provenance row: re-materialise raw_generations"
    assert provenance_error({"image_sha256": sha}, None) is None  # no bytes: rejected as unreadable instead


def test_an_unfinished_raw_generations_run_is_refused(tmp_path):
    check_generation_complete(tmp_path, "r0|s0000")  # finished: no journal
    (tmp_path / "journal").mkdir()
    with pytest.raises(InputError, match=r"^raw_generations for r0\|s0000 is incomplete \(a run was interrupted "
                                         r"or is in progress\): re-materialise raw_generations for this partition"):
        check_generation_complete(tmp_path, "r0|s0000")

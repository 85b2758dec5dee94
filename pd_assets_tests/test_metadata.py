"""UI metadata: floats rounded to 3 significant decimals, plain ranges, "none" for no ids,
titled contact-sheet columns and a keypoint colour key."""

from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl
from PIL import Image

from pd_assets.curation.checks import kept_oks_result
from pd_assets.curation.previews import kept_and_rejected_sheet
from pd_assets.metadata import id_list, round_float, span, tidy
from pd_assets.previews import HEADER_PX, contact_sheet


def test_floats_keep_three_significant_decimals():
    assert round_float(21.65082044471471) == 21.651
    assert round_float(0.000123456) == 0.000123
    assert round_float(1234.5678) == 1234.568
    assert round_float(-0.0456789) == -0.0457
    assert round_float(0.0) == 0.0 and np.isnan(round_float(float("nan")))
    tidied = tidy({"a": 0.123456, "b": [1.00049, {"c": np.float32(2.5e-5)}], "n": 3, "ok": np.bool_(True),
                   "f": dg.MetadataValue.float(21.65082044471471), "s": "0.123456",
                   "p": dg.MetadataValue.path("/data/x.tar"), "m": dg.MetadataValue.md("**0.123456**")})
    assert tidied["a"] == 0.123 and tidied["b"][0] == 1.0 and tidied["b"][1]["c"] == 2.5e-5
    assert tidied["n"] == 3 and tidied["ok"] is True and tidied["s"] == "0.123456"
    assert tidied["f"].value == 21.651
    assert tidied["p"] == dg.MetadataValue.path("/data/x.tar") and tidied["m"].value == "**0.123456**"


def test_ranges_and_id_lists_read_plainly():
    assert span(0.8, 12.0, "m") == "0.8 .. 12 m"
    assert span(443.40000001, 886.80000002, "px") == "443.4 .. 886.8 px"
    assert id_list([]) == "none"
    assert id_list(["a", "b", "c"], limit=2) == "a, b (+1 more)"


def test_a_check_with_no_violations_says_none():
    index = pl.DataFrame({"sample_id": ["r0-s0000-000000"], "kept": [True], "oks": [0.9123456]})
    result = kept_oks_result(index, 0.85)
    assert result.passed and result.metadata["violating_ids"].value == "none"
    assert result.metadata["min_kept_oks"].value == 0.912


def test_contact_sheet_titles_columns_and_shows_the_colour_key():
    tiles = [[Image.new("RGB", (8, 8), (0, 0, 0))] * 3]
    plain = contact_sheet(tiles, tile=64)
    titled = contact_sheet(tiles, tile=64, header=["generated", "pncc", "depth"], caption="key")
    assert titled.height == plain.height + 2 * HEADER_PX and titled.width == plain.width
    band = np.asarray(titled.convert("L"))[HEADER_PX: 2 * HEADER_PX]
    assert all((band[:, 2 + j * 66: 64 + j * 66] > 128).any() for j in range(3))  # every column titled
    assert not (np.asarray(plain.convert("L")) > 128).any()
    sheet = kept_and_rejected_sheet([Image.new("RGB", (160, 160))], [], tile=160)
    assert (np.asarray(sheet.convert("L"))[:HEADER_PX] > 128).any()  # the label/detected colour key

"""Shared fixtures: a temp dataset store, the anny model, and `ci`-profile resources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resources.paths import anny_cache_dir

os.environ.setdefault("ANNY_CACHE_DIR", str(anny_cache_dir()))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def anny_model():
    from pd_assets.poses.body_models import load_body_model

    return load_body_model("anny")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root

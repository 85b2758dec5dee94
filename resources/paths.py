"""Where locally built model assets live (the tiny diffusion model, the mediapipe task, the anny cache)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """`PD_CACHE_DIR`, else `.cache/` in the checkout (what `make setup` fills)."""
    return Path(os.environ.get("PD_CACHE_DIR") or REPO_ROOT / ".cache").expanduser().resolve()


def models_dir() -> Path:
    return cache_dir() / "models"


def anny_cache_dir() -> Path:
    return Path(os.environ.get("ANNY_CACHE_DIR") or cache_dir() / "anny").expanduser().resolve()

"""Model-hub settings shared by every stage that can load weights by hub id."""

from __future__ import annotations

import os

_TRUE = ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """True when `HF_HUB_OFFLINE` is set to a true value (as huggingface_hub reads it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE

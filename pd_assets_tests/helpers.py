"""Test helpers shared by several test modules."""

from __future__ import annotations

from pathlib import Path


def ci_resources(root: Path, **overrides) -> dict[str, object]:
    """The `ci` profile's resources with the dataset store under `root`."""
    from resources.dataset_store import DatasetStoreResource
    from resources.profiles import resources_for_profile

    resources = resources_for_profile("ci")
    resources["dataset_store"] = DatasetStoreResource(root=str(root))
    resources.update(overrides)
    return resources

"""The root directory of every output, and the one layout under it (pd_assets/CONTRACTS.md)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from pd_assets.safe_io import store_path


class DatasetStoreResource(dg.ConfigurableResource):
    root: str = Field(description="root directory of all outputs (PD_DATA_ROOT)")

    def root_path(self) -> Path:
        return Path(self.root).expanduser().resolve()

    def partition_dir(self, asset: str, round_name: str, shard: str) -> Path:
        """`root/asset/round/shard`; each part must be a plain name, so no key can leave the store."""
        return store_path(self.root_path(), asset, round_name, shard, what="partition directory")

    def catalog_path(self) -> Path:
        return self.root_path() / "catalog.duckdb"

"""Dagster resources: where things live and which backend runs; assets never branch on it."""

from resources.body_model import BodyModelResource
from resources.compute import ComputeResource
from resources.dataset_store import DatasetStoreResource

__all__ = ["BodyModelResource", "ComputeResource", "DatasetStoreResource"]

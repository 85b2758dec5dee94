"""Round x shard partitions, shared by every partitioned stage.

A curriculum round (`r0`, `r1`, ...) times a shard of samples (`s0000`, ...). The
counts are configuration (`PD_NUM_ROUNDS`, `PD_NUM_SHARDS`): growing the dataset is a
setting, not a code change. Partition keys read `r0|s0003` (Dagster joins the
dimensions in name order: round, then shard).
"""

from __future__ import annotations

import os

import dagster as dg

DEFAULT_NUM_ROUNDS = 4
DEFAULT_NUM_SHARDS = 16


def _positive_int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer: set it to a positive count") from None
    if value <= 0:
        raise ValueError(f"{name}={value} must be a positive count")
    return value


def round_key(i: int) -> str:
    return f"r{i}"


def shard_key(i: int) -> str:
    return f"s{i:04d}"


NUM_ROUNDS = _positive_int_env("PD_NUM_ROUNDS", DEFAULT_NUM_ROUNDS)
NUM_SHARDS = _positive_int_env("PD_NUM_SHARDS", DEFAULT_NUM_SHARDS)

round_partitions = dg.StaticPartitionsDefinition([round_key(i) for i in range(NUM_ROUNDS)])
shard_partitions = dg.StaticPartitionsDefinition([shard_key(i) for i in range(NUM_SHARDS)])
round_shard_partitions = dg.MultiPartitionsDefinition(
    {"round": round_partitions, "shard": shard_partitions}
)


def split_key(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext | str) -> tuple[str, str]:
    """(round, shard) of a round x shard partition key or of the running context.

    The key may be a `MultiPartitionKey` or its plain string form `r0|s0000`: a run
    launched with `--tags '{"dagster/partition": "r0|s0000"}'` hands the asset a str."""
    key = context if isinstance(context, str) else context.partition_key
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
        return dims["round"], dims["shard"]
    parts = key.split("|") if isinstance(key, str) else []
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"expected a round|shard partition key such as 'r0|s0000', got {key!r}")
    return parts[0], parts[1]

"""Round x shard partitions, shared by every partitioned stage.

A curriculum round (`r0`, `r1`, ...) times a shard of samples (`s0000`, ...). The
counts are configuration (`PD_NUM_ROUNDS`, `PD_NUM_SHARDS`): growing the dataset is a
setting, not a code change. Partition keys read `r0|s0003` (Dagster joins the
dimensions in name order: round, then shard).
"""

from __future__ import annotations

import os
import re

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


def check_partition_key(key: str) -> tuple[str, str]:
    """(round, shard) of `key` if it is a configured partition; else a ValueError that names
    the setting bounding it (PD_NUM_ROUNDS / PD_NUM_SHARDS) and the value that would admit it."""
    parts = str(key).split("|")
    if len(parts) != 2:
        raise ValueError(f"partition {key!r} is not a round|shard key such as 'r0|s0000'")
    problems = []
    for value, dim, name_of, setting, count in (
        (parts[0], "round", round_key, "PD_NUM_ROUNDS", NUM_ROUNDS),
        (parts[1], "shard", shard_key, "PD_NUM_SHARDS", NUM_SHARDS),
    ):
        span = f"{name_of(0)}..{name_of(count - 1)}"
        match = re.fullmatch(rf"{dim[0]}(\d+)", value)
        if match is None:
            problems.append(f"{value!r} is not a {dim} name ({span})")
        elif name_of(int(match.group(1))) != value:
            problems.append(f"write {dim} {value!r} as {name_of(int(match.group(1)))!r}")
        elif int(match.group(1)) >= count:
            problems.append(f"{dim} {value!r} is outside {span} ({setting}={count}): set "
                            f"{setting}={int(match.group(1)) + 1} or more to use it")
    if problems:
        raise ValueError(f"partition {key!r} is not configured: " + "; ".join(problems))
    return parts[0], parts[1]


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

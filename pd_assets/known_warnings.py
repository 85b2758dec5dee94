"""Dagster's warnings about features this project uses on purpose, silenced one by one.

Each process that loads `pd_assets.definitions` (the code server and every step subprocess)
would print these once per definition: about a hundred lines per run that say nothing new.
Each filter matches one category *and* one message, so every other warning still shows,
including other preview or beta warnings. Why each feature is used: README, Design notes.
"""

from __future__ import annotations

import warnings

import dagster as dg

KNOWN_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # partitioned asset checks validate exactly the partition just written
    (dg.PreviewWarning, r"Specifying a partitions_def on an AssetCheckSpec is currently in preview"),
    # per-asset backfill policies: raw_generations backfills several partitions per run
    (dg.BetaWarning, r"Parameter `backfill_policy` of function `asset` is currently in beta"),
    # so the main job, which spans assets with different policies, backfills one per run
    (UserWarning, r"Asset job generate_dataset materializes assets with varying BackfillPolicies"),
    # mined_hard_set[r] depends on every shard of round r (the method's stage 5 needs them all)
    (dg.BetaWarning, r"Class `MultiToSingleDimensionPartitionMapping` is currently in beta"),
)


def silence_known_dagster_warnings() -> None:
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)

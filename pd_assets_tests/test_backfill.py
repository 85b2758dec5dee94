"""The round-backfill CLI: what it asks the webserver for, and how it fails (the launch
itself is exercised against a real webserver and daemon in test_daemon_e2e.py)."""

from __future__ import annotations

import pytest

from pd_assets import backfill
from pd_assets.partitions import NUM_ROUNDS, shard_partitions


def test_a_round_is_every_shard_of_the_shard_stages_and_the_round_for_mining():
    shards = shard_partitions.get_partition_keys()
    params = backfill.round_selection("r0", backfill.STAGES)
    by_asset = {p["assetKey"]["path"][0]: p["partitions"]["ranges"] for p in params["partitionsByAssets"]}
    assert set(by_asset) == set(backfill.STAGES)
    for asset in ("pose_pool", "raw_generations", "filtered_shards"):
        assert by_asset[asset] == [{"start": f"r0|{shards[0]}", "end": f"r0|{shards[-1]}"}]
    assert by_asset["mined_hard_set"] == [{"start": "r0", "end": "r0"}]
    assert {"key": "pd_assets/round", "value": "r0"} in params["tags"]


def test_chosen_shards_become_contiguous_ranges():
    shards = shard_partitions.get_partition_keys()
    if len(shards) < 5:
        pytest.skip("needs PD_NUM_SHARDS >= 5")
    params = backfill.round_selection("r1", ["pose_pool"], [shards[0], shards[1], shards[4]])
    assert params["partitionsByAssets"][0]["partitions"]["ranges"] == [
        {"start": f"r1|{shards[0]}", "end": f"r1|{shards[1]}"}, {"start": f"r1|{shards[4]}", "end": f"r1|{shards[4]}"}]


def test_bad_rounds_assets_and_servers_are_named(capsys):
    with pytest.raises(ValueError, match=f"PD_NUM_ROUNDS={NUM_ROUNDS}"):
        backfill.round_selection(f"r{NUM_ROUNDS}", ["pose_pool"])
    with pytest.raises(ValueError, match="unknown asset"):
        backfill.round_selection("r0", ["pose_pools"])
    assert backfill.main(["--round", "r0", "--url", "http://127.0.0.1:9"]) == 2
    assert "no Dagster webserver answers at http://127.0.0.1:9" in capsys.readouterr().err

"""The end-to-end proof that the project runs by itself: webserver and daemon as processes.

A temporary DAGSTER_HOME (SQLite, resources/dagster.yaml), `dagster-webserver` and
`dagster-daemon` on 127.0.0.1 (`ci` profile with the render backend, 2 shards x 2 rounds,
automation on). The test launches a backfill of round r0's pose_pool and raw_generations
through GraphQL (`launchPartitionBackfill`, via pd_assets.backfill) and waits for it; then
declarative automation materialises filtered_shards[r0, *] and mined_hard_set[r0], and the
advance_round sensor starts pose_pool[r1, *], whose labels must be drawn from the mined set.
Processes are stopped by their process-group id.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pd_assets import backfill
from pd_assets_tests.test_webserver import WORKSPACE_QUERY, _free_port, _Server, _stop, _tail

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARDS = ["s0000", "s0001"]
TIMEOUT_S = 1500.0  # an upper bound for a loaded 2-core machine; see the README for the measured time


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)  # own process group: stopped with its children


def _wait_for_webserver(server: _Server, daemon: subprocess.Popen, daemon_log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc, log in ((server.proc, server.log), (daemon, daemon_log)):
            if proc.poll() is not None:
                pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            locs = server.graphql(WORKSPACE_QUERY)["workspaceOrError"].get("locationEntries", [])
            if locs and all(e["loadStatus"] == "LOADED" for e in locs):
                errors = [e["locationOrLoadError"] for e in locs
                          if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
                assert not errors, f"code location failed to load: {errors}"
                return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"webserver not ready after {timeout_s:.0f} s:\n{_tail(server.log)}")


def _materialised(instance: dg.DagsterInstance, asset: str) -> set[str]:
    return {str(k) for k in instance.get_materialized_partitions(dg.AssetKey(asset))}


def test_a_round_backfill_then_automation_then_the_next_round(tmp_path):
    for tool in ("dagster-webserver", "dagster-daemon"):
        if not (BIN / tool).exists():
            pytest.skip(f"{BIN / tool} not installed")
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    data.mkdir()
    shutil.copy(REPO / "resources" / "dagster.yaml", home / "dagster.yaml")
    # create the SQLite storage once, here: the webserver's and the daemon's code servers would
    # otherwise both create it at the same moment (two alembic heads, a location load error)
    dg.DagsterInstance.from_config(str(home)).dispose()
    env = dict(os.environ, DAGSTER_HOME=str(home), PD_DATA_ROOT=str(data), PD_PROFILE="ci",
               PD_GENERATOR_BACKEND="render", PD_NUM_SHARDS=str(len(SHARDS)), PD_NUM_ROUNDS="2",
               PD_AUTOMATION="on", PD_AUTOMATION_INTERVAL_S="5", PD_ROUND_SENSOR_INTERVAL_S="5",
               PD_EXECUTOR="in_process")  # one process per run: fewer imports on a small machine
    port = _free_port()
    web_log, daemon_log = tmp_path / "webserver.log", tmp_path / "daemon.log"
    web = _start([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                 env, web_log)
    daemon = _start([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, daemon_log)
    server = _Server(web, port, web_log)
    started = time.monotonic()
    try:
        _wait_for_webserver(server, daemon, daemon_log)
        backfill_id = backfill.launch_round(server.base, "r0", ["pose_pool", "raw_generations"], SHARDS)
        state = backfill.wait(server.base, backfill_id, timeout_s=TIMEOUT_S, poll_s=2)
        assert state["status"] == "COMPLETED_SUCCESS", f"{state}\n{_tail(daemon_log)}"

        want_r1 = {f"r1|{s}" for s in SHARDS}
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while not want_r1 <= _materialised(instance, "pose_pool"):
                assert daemon.poll() is None, f"dagster-daemon exited:\n{_tail(daemon_log)}"
                assert time.monotonic() - started < TIMEOUT_S, (
                    f"round r1 not started after {TIMEOUT_S:.0f} s; materialised: "
                    f"{ {a: sorted(_materialised(instance, a)) for a in backfill.STAGES} }\n{_tail(daemon_log)}")
                time.sleep(2)
            elapsed = time.monotonic() - started
            assert {f"r0|{s}" for s in SHARDS} <= _materialised(instance, "filtered_shards")
            assert "r0" in _materialised(instance, "mined_hard_set")

            # run records: who launched what
            def runs_for(asset: str, partition: str) -> list[dg.DagsterRun]:
                records = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=5).records
                return [instance.get_run_by_id(r.run_id) for r in records]

            assert all(run.tags.get("dagster/backfill") == backfill_id
                       for s in SHARDS for run in runs_for("raw_generations", f"r0|{s}"))
            for asset, partition in [("filtered_shards", "r0|s0000"), ("mined_hard_set", "r0")]:
                for run in runs_for(asset, partition):
                    assert run.status == dg.DagsterRunStatus.SUCCESS
                    assert run.tags.get("pd_assets/automation") == "true", (asset, run.tags)
                    assert run.tags.get("dagster/backfill") != backfill_id, (asset, run.tags)
            mined_event = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("mined_hard_set"), asset_partitions=["r0"]), limit=1
            ).records[0]
            for shard in SHARDS:
                (run,) = runs_for("pose_pool", f"r1|{shard}")
                assert run.tags["dagster/sensor_name"] == "advance_round"
                assert run.tags["dagster/run_key"] == f"advance:r1|{shard}:from:r0@{mined_event.storage_id}"

        # the produced data: round 1 drawn from the mined set of round 0
        complete = json.loads((data / "mined_hard_set" / "r0" / "_COMPLETE.json").read_text())
        selected = pl.read_parquet(data / "mined_hard_set" / "r0" / "selected.parquet")
        for shard in SHARDS:
            labels = pl.read_parquet(data / "pose_pool" / "r1" / shard / "labels.parquet")
            assert labels.height == 8  # ci: 8 samples per shard
            assert set(labels["mined_from_round"]) == {"r0"}
            assert set(labels["mined_set_hash"]) == {complete["selected_sha256"]}
            candidates = {p.split(":", 2)[2] for p in labels["pose_source"]}
            assert candidates <= set(selected["candidate_id"].cast(pl.Utf8)), candidates
            assert (data / "filtered_shards" / "r0" / shard / "index.parquet").is_file()
        print(f"\nround r0 backfill -> automation -> r1 started in {elapsed:.0f} s")
    finally:
        for proc in (daemon, web):
            _stop(proc)
    assert daemon.poll() is not None and web.poll() is not None

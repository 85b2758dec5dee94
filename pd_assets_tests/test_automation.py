"""Automation: the round and growth decisions (hand-written states), the eager conditions on
the real asset graph (`dg.evaluate_automation_conditions`), the round sensor
(`build_sensor_context`) and the growth schedule (`build_schedule_context`)."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest

from pd_assets import automation
from pd_assets.partitions import round_partitions, shard_partitions
from pd_assets.round_progress import MinedRoundState, plan_growth, plan_round_starts

ROUNDS = ["r0", "r1", "r2"]


# --- pure decisions ----------------------------------------------------------------------------

def test_round_plan_starts_the_next_round_once_per_mined_set():
    mined = {"r0": MinedRoundState("r0", storage_id=41)}
    plan = plan_round_starts(ROUNDS, mined, {})
    assert [(s.next_round, s.from_round, s.storage_id) for s in plan.starts] == [("r1", "r0", 41)]
    assert plan.starts[0].run_key("s0001") == "advance:r1|s0001:from:r0@41"
    assert plan.cursor == {"r0": 41}
    assert plan.reasons == ["waiting for mined_hard_set[r1]: not materialised yet"]
    again = plan_round_starts(ROUNDS, mined, plan.cursor)  # same set: nothing new
    assert again.starts == [] and again.reasons == ["waiting for mined_hard_set[r1]: not materialised yet"]
    remined = plan_round_starts(ROUNDS, {"r0": MinedRoundState("r0", storage_id=90)}, plan.cursor)
    assert [s.storage_id for s in remined.starts] == [90] and remined.cursor == {"r0": 90}


def test_round_plan_waits_for_checks_and_names_failed_ones():
    pending = plan_round_starts(ROUNDS, {"r0": MinedRoundState("r0", 5, pending_checks=("selected_set_is_whole",))}, {})
    assert pending.starts == [] and pending.cursor == {}
    assert pending.reasons[0] == ("waiting for the blocking check(s) selected_set_is_whole of mined_hard_set[r0] "
                                  "(materialisation 5)")
    failed = plan_round_starts(ROUNDS, {"r0": MinedRoundState("r0", 5, failed_checks=("selection_harder_than_pool",))},
                               {})
    assert failed.starts == []
    assert failed.reasons[0].startswith("mined_hard_set[r0] failed blocking check(s) selection_harder_than_pool: "
                                        "r1 is not started")


def test_round_plan_stops_at_the_last_round_and_names_the_setting():
    mined = {r: MinedRoundState(r, i + 1) for i, r in enumerate(ROUNDS)}
    plan = plan_round_starts(ROUNDS, mined, {"r0": 1, "r1": 2})
    assert plan.starts == []
    assert plan.reasons == ["r2 is the last round (PD_NUM_ROUNDS=3): raise PD_NUM_ROUNDS to run more rounds"]


def test_growth_plan_takes_the_next_missing_shards_of_the_current_round():
    shards = ["s0000", "s0001", "s0002", "s0003", "s0004"]
    fresh = plan_growth(ROUNDS, shards, set(), set(), per_tick=2)
    assert (fresh.round, fresh.keys) == ("r0", ["r0|s0000", "r0|s0001"])
    # s0000 done, s0001 running: skip both; r1 not started yet, so r0 is current
    grow = plan_growth(ROUNDS, shards, {"r0|s0000"}, {"r0|s0001"}, per_tick=2)
    assert grow.keys == ["r0|s0002", "r0|s0003"]
    # r1 under way (started by the round sensor): its missing shards come next
    r1 = plan_growth(ROUNDS, shards, {f"r0|{s}" for s in shards} | {"r1|s0000"}, set(), per_tick=3)
    assert (r1.round, r1.keys) == ("r1", ["r1|s0001", "r1|s0002", "r1|s0003"])
    done = plan_growth(ROUNDS, shards, {f"r0|{s}" for s in shards}, set(), per_tick=3)
    assert done.keys == [] and "raise PD_NUM_SHARDS" in done.reason
    with pytest.raises(ValueError, match="positive"):
        plan_growth(ROUNDS, shards, set(), set(), per_tick=0)


# --- Dagster objects on an instance ---------------------------------------------------------

@pytest.fixture(scope="module")
def defs():
    from pd_assets.definitions import defs

    return defs


def _key(round_name: str, shard: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"round": round_name, "shard": shard})


def _materialise(instance, asset: str, partition: str) -> int:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=partition))
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1).records[0]
    return record.storage_id


def _check(instance, check_key: dg.AssetCheckKey, partition: str, passed: bool, storage_id: int) -> None:
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData)

    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=check_key.asset_key, check_name=check_key.name, passed=passed, partition=partition,
        target_materialization_data=AssetCheckEvaluationTargetMaterializationData(storage_id=storage_id, run_id="", timestamp=0.0)))


def _materialise_with_checks(instance, defs, asset: str, partition: str, failing: str | None = None) -> int:
    storage_id = _materialise(instance, asset, partition)
    for key in automation.blocking_check_keys(defs.asset_checks, dg.AssetKey(asset)):
        _check(instance, key, partition, passed=key.name != failing, storage_id=storage_id)
    return storage_id


def _requested(result) -> set[tuple[str, str]]:
    return {(r.key.to_user_string(), str(pk)) for r in result.results
            for pk in (r.true_subset.expensively_compute_partition_keys() if r.true_subset.is_partitioned else [])}


def test_followers_are_eager_once_upstream_checks_pass(defs):
    graph = defs.resolve_asset_graph()
    labels = {k.to_user_string(): graph.get(k).automation_condition for k in graph.get_all_asset_keys()}
    # the DPO assets, when defined, refresh on control_adapter (test_alignment_refresh_...)
    assert {k for k, c in labels.items() if c is not None} == set(automation.FOLLOWERS) | (
        set(automation.ALIGNMENT_REFRESH) & set(labels))
    for key in set(automation.ALIGNMENT_REFRESH) & set(labels):
        assert labels[key].get_label().startswith("control_adapter"), key
    assert all(labels[k].get_label() == "eager, no upstream blocking check failed" for k in automation.FOLLOWERS)

    with dg.DagsterInstance.ephemeral() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # eager never requests what was already missing

        _materialise_with_checks(instance, defs, "pose_pool", str(_key("r0", "s0000")))
        _materialise_with_checks(instance, defs, "pose_pool", str(_key("r0", "s0001")),
                                 failing="visible_keypoints_inside_image")
        second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        # s0000: its images and curation in one run (a failed check there stops the curation
        # step); s0001: pose_pool failed a blocking check, nothing follows
        assert _requested(second) == {("raw_generations", "r0|s0000"), ("filtered_shards", "r0|s0000")}

        third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
        assert third.total_requested == 0  # handled: not requested again

        # (runless check results cannot be re-reported for a partition: a third shard shows the gate)
        _materialise_with_checks(instance, defs, "pose_pool", str(_key("r0", "s0002")))
        _materialise_with_checks(instance, defs, "raw_generations", str(_key("r0", "s0002")),
                                 failing="raw_generations_sizes")
        _materialise_with_checks(instance, defs, "raw_generations", str(_key("r0", "s0000")))
        fourth = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=third.cursor)
        # s0000's images updated: curated again; s0002's images failed a blocking check: held
        # back; mined_hard_set[r0] waits for every shard of the round
        assert _requested(fourth) == {("filtered_shards", "r0|s0000")}


def test_mined_hard_set_follows_once_every_shard_of_its_round_passed(defs):
    shards = shard_partitions.get_partition_keys()
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        for asset in ("pose_pool", "raw_generations", "filtered_shards"):
            for shard in shards:
                _materialise_with_checks(instance, defs, asset, str(_key("r0", shard)))
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert ("mined_hard_set", "r0") in _requested(result)
        assert not any(p.startswith("r1") for _, p in _requested(result))


def test_alignment_refresh_follows_control_adapter_only():
    @dg.asset
    def control_adapter():
        return None

    @dg.asset
    def pose_stats():
        return None

    @dg.asset(deps=[control_adapter, pose_stats])
    def dpo_preferences():
        return None

    @dg.asset(deps=[dpo_preferences])
    def aligned_checkpoint():
        return None

    toy = dg.Definitions(assets=automation.with_automation([control_adapter, pose_stats, dpo_preferences,
                                                            aligned_checkpoint]))
    with dg.DagsterInstance.ephemeral() as instance:
        for key in ("control_adapter", "pose_stats", "dpo_preferences", "aligned_checkpoint"):
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))
        cursor = dg.evaluate_automation_conditions(defs=toy, instance=instance).cursor
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="pose_stats"))
        other = dg.evaluate_automation_conditions(defs=toy, instance=instance, cursor=cursor)
        assert other.total_requested == 0  # another dependency changed: no refresh
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="control_adapter"))
        changed = dg.evaluate_automation_conditions(defs=toy, instance=instance, cursor=other.cursor)
        assert {r.key.to_user_string() for r in changed.results if r.true_subset.size} == {
            "dpo_preferences", "aligned_checkpoint"}
    # registered only for the DPO assets that exist
    assert set(automation.conditions_for([dg.AssetKey("control_adapter")])) == set()


def test_round_sensor_starts_the_next_round_once_checks_pass(defs):
    sensor = defs.resolve_sensor_def("advance_round")
    checks = automation.blocking_check_keys(defs.asset_checks, automation.MINED)
    assert {k.name for k in checks} == {"selection_harder_than_pool", "selected_set_is_whole"}
    shards = shard_partitions.get_partition_keys()
    with dg.DagsterInstance.ephemeral() as instance:
        empty = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(empty, dg.SkipReason)
        assert empty.skip_message == "waiting for mined_hard_set[r0]: not materialised yet"

        storage_id = _materialise(instance, "mined_hard_set", "r0")
        pending = sensor(dg.build_sensor_context(instance=instance))
        assert "waiting for the blocking check(s) selected_set_is_whole, selection_harder_than_pool" in \
            pending.skip_message

        _check(instance, checks[0], "r0", passed=False, storage_id=storage_id)
        _check(instance, checks[1], "r0", passed=True, storage_id=storage_id)
        failed = sensor(dg.build_sensor_context(instance=instance))
        assert "failed blocking check(s) selected_set_is_whole" in failed.skip_message

        # (runless check results cannot be re-reported for a partition: r1's set shows the start)
        r1_id = _materialise(instance, "mined_hard_set", "r1")
        for key in checks:
            _check(instance, key, "r1", passed=True, storage_id=r1_id)
        result = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(result, dg.SensorResult)
        assert [str(r.partition_key) for r in result.run_requests] == [f"r2|{s}" for s in shards]
        assert {r.run_key for r in result.run_requests} == {f"advance:r2|{s}:from:r1@{r1_id}" for s in shards}
        assert all(r.asset_selection == [dg.AssetKey("pose_pool")] for r in result.run_requests)
        assert json.loads(result.cursor) == {"r1": r1_id}

        again = sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
        assert isinstance(again, dg.SkipReason)  # idempotent: the same set starts r1 once


def test_growth_schedule_requests_the_next_missing_shards(defs, monkeypatch):
    schedule = defs.resolve_schedule_def("grow_dataset")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    shards = shard_partitions.get_partition_keys()
    rounds = round_partitions.get_partition_keys()
    when = dt.datetime(2026, 12, 1, 10, tzinfo=dt.timezone.utc)
    with dg.instance_for_test() as instance:  # a schedule context needs an instance reference
        first = schedule.evaluate_tick(dg.build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()))
        keys = [str(r.partition_key) for r in first.run_requests]
        assert keys == [f"{rounds[0]}|{s}" for s in shards[:4]]
        assert first.run_requests[0].run_key == f"grow:{rounds[0]}|{shards[0]}:20261201T100000"
        for key in keys:
            _materialise(instance, "pose_pool", key)
        second = schedule.evaluate_tick(dg.build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()))
        assert [str(r.partition_key) for r in second.run_requests] == [f"{rounds[0]}|{s}" for s in shards[4:8]]


def test_run_retries_relaunch_dead_workers_never_failed_steps(tmp_path):
    import shutil
    from pathlib import Path

    from dagster._daemon.auto_run_reexecution.auto_run_reexecution import should_retry

    shutil.copy(Path(__file__).resolve().parents[1] / "resources" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        for reason, retried in (("STEP_FAILURE", False), ("UNEXPECTED_TERMINATION", True)):
            run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job(), status=dg.DagsterRunStatus.FAILURE,
                                              tags={"dagster/failure_reason": reason, **automation.run_tags()})
            assert should_retry(run, instance) is retried, reason

"""Running for weeks: declarative automation, the round sensor, the growth schedule, run tags.

- `raw_generations`, `filtered_shards` and `mined_hard_set` follow their upstream (eager,
  held back while a blocking check of an upstream partition has failed; see
  `no_upstream_blocking_check_failed` for why not "all passed"). Eager never requests a
  partition that was already missing when automation was turned on: the roots
  (`pose_pool` partitions) are started by a backfill, the growth schedule or the round
  sensor.
- `advance_round` starts `pose_pool[r+1, *]` once `mined_hard_set[r]` is materialised and
  its blocking checks passed (the next round reads that set; Dagster refuses the cycle as
  a declared dependency).
- `grow_dataset` (off by default) adds the next N missing shards of the current round per tick.
- `dpo_preferences` / `aligned_checkpoint`, when defined, re-run when `control_adapter` changes.

Switches (every Dagster process: UI, daemon, CLI): `PD_AUTOMATION=on` starts the automation
sensor and the round sensor RUNNING (default: STOPPED, turned on in the UI's Automation
tab); `PD_AUTOMATION_INTERVAL_S` / `PD_ROUND_SENSOR_INTERVAL_S` (30 s each) set how often they
evaluate; `PD_GROW_CRON` (hourly) and `PD_GROW_SHARDS_PER_TICK` (4) shape the schedule.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

import dagster as dg

from pd_assets.executors import positive_int_env
from pd_assets.partitions import round_partitions, shard_partitions
from pd_assets.round_progress import MinedRoundState, plan_growth, plan_round_starts

FOLLOWERS = ("raw_generations", "filtered_shards", "mined_hard_set")
# refreshed when these upstream keys change (only registered when the asset is defined)
ALIGNMENT_REFRESH = {"dpo_preferences": ("control_adapter",),
                     "aligned_checkpoint": ("control_adapter", "dpo_preferences")}
POSE_POOL = dg.AssetKey("pose_pool")
MINED = dg.AssetKey("mined_hard_set")
AUTOMATION_TAG = "pd_assets/automation"  # on every run the sensors and the schedule start


def automation_default_status() -> dg.DefaultSensorStatus:
    raw = os.environ.get("PD_AUTOMATION", "off").strip().lower()
    if raw not in ("on", "off"):
        raise ValueError(f"PD_AUTOMATION={raw!r}: use 'on' (sensors start RUNNING) or 'off' (STOPPED)")
    return dg.DefaultSensorStatus.RUNNING if raw == "on" else dg.DefaultSensorStatus.STOPPED


# --- declarative automation ------------------------------------------------------------------

def no_upstream_blocking_check_failed() -> dg.AutomationCondition:
    """No blocking check of an upstream partition failed on its latest evaluation.

    Not `all_deps_blocking_checks_passed()`: Dagster 1.13 records the check results of an
    asset-backfill run (even a one-partition one) without a partition, so after a round
    backfill that built-in never sees them pass and the followers would wait forever.
    Runs started by automation, the round sensor and the schedule are one-partition runs
    with a partition key: their failures are recorded per partition and close this gate.
    Inside any run, a failed blocking check stops that run's downstream steps."""
    return ~dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.any_checks_match(dg.AutomationCondition.check_failed(), blocking_only=True)
    ).with_label("an upstream blocking check failed")


def follow_upstream() -> dg.AutomationCondition:
    """Eager, held back while an upstream partition has a failed blocking check."""
    return (dg.AutomationCondition.eager()
            & no_upstream_blocking_check_failed()).with_label("eager, no upstream blocking check failed")


def refresh_when_updated(upstream: Iterable[str]) -> dg.AutomationCondition:
    """Re-run when one of `upstream` (and only those deps) is updated or will be this tick."""
    keys = list(upstream)
    updated = dg.AutomationCondition.any_deps_match(
        (dg.AutomationCondition.newly_updated() & ~dg.AutomationCondition.executed_with_root_target())
        | dg.AutomationCondition.will_be_requested()
    ).allow(dg.AssetSelection.assets(*keys))
    return (updated.since_last_handled()
            & ~dg.AutomationCondition.any_deps_missing()
            & ~dg.AutomationCondition.any_deps_in_progress()
            & ~dg.AutomationCondition.in_progress()
            & no_upstream_blocking_check_failed()).with_label(f"{' or '.join(keys)} changed")


def conditions_for(keys: Iterable[dg.AssetKey]) -> dict[dg.AssetKey, dg.AutomationCondition]:
    present = {k.to_user_string() for k in keys}
    conditions = {dg.AssetKey(k): follow_upstream() for k in FOLLOWERS if k in present}
    for key, upstream in ALIGNMENT_REFRESH.items():
        if key in present:
            conditions[dg.AssetKey(key)] = refresh_when_updated([u for u in upstream if u in present])
    return conditions


def with_automation(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """`assets` with the automation conditions above set on the keys they name (others as is)."""
    conditions = conditions_for(k for a in assets for k in a.keys)

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        condition = conditions.get(spec.key)
        return spec if condition is None else spec.replace_attributes(automation_condition=condition)

    return [a.map_asset_specs(apply) if any(k in conditions for k in a.keys) else a for a in assets]


def run_tags() -> dict[str, str]:
    """Tags on runs started by automation. Run retries (dagster.yaml `run_retries`) re-launch a
    run whose worker died (killed, out of memory, node or pod lost), never one whose step
    raised: bad input fails for good (`retry_on_asset_or_op_failure: false`)."""
    return {AUTOMATION_TAG: "true", "dagster/retry_on_asset_or_op_failure": "false"}


def automation_sensor(targets: Sequence[dg.AssetsDefinition]) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "pd_assets_automation",
        target=dg.AssetSelection.assets(*[k for a in targets for k in a.keys]),
        default_status=automation_default_status(),
        minimum_interval_seconds=positive_int_env("PD_AUTOMATION_INTERVAL_S", 30),
        run_tags=run_tags(),
        # one run per partition (not a backfill): its check results are then recorded per
        # partition, which the followers' gate reads
        emit_backfills=False,
        description="Evaluates the assets' automation conditions: generation, curation and mining follow "
                    "their upstream unless an upstream blocking check failed (pd_assets/automation.py).",
    )


# --- the round sensor ------------------------------------------------------------------------

def blocking_check_keys(checks: Iterable[dg.AssetChecksDefinition], asset: dg.AssetKey) -> list[dg.AssetCheckKey]:
    return sorted((spec.key for c in checks for spec in c.check_specs if spec.asset_key == asset and spec.blocking),
                  key=lambda k: k.name)


def _check_status_for(instance: dg.DagsterInstance, key: dg.AssetCheckKey, storage_id: int, history: int = 200):
    """The status of the latest evaluation of `key` that targeted materialisation `storage_id`
    (None: not evaluated on it). Matched by target, not by partition: a check run by an asset
    backfill is recorded without a partition (Dagster 1.13)."""
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=history):
        evaluation = record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event \
            else None
        target = getattr(evaluation, "target_materialization_data", None)
        if target is not None and target.storage_id == storage_id:
            return record.status
    return None


def mined_round_state(instance: dg.DagsterInstance, round_name: str,
                      check_keys: Sequence[dg.AssetCheckKey]) -> MinedRoundState:
    """The latest materialisation of `mined_hard_set[round_name]` and how its blocking checks went."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=MINED, asset_partitions=[round_name]), limit=1).records
    if not records:
        return MinedRoundState(round_name)
    storage_id = records[0].storage_id
    failed, pending = [], []
    for key in check_keys:
        status = _check_status_for(instance, key, storage_id)
        if status == Status.FAILED:
            failed.append(key.name)
        elif status != Status.SUCCEEDED:
            pending.append(key.name)
    return MinedRoundState(round_name, storage_id, tuple(failed), tuple(pending))


def build_round_sensor(mined_checks: Sequence[dg.AssetCheckKey]) -> dg.SensorDefinition:
    @dg.sensor(
        name="advance_round",
        target=dg.AssetSelection.assets(POSE_POOL),
        minimum_interval_seconds=positive_int_env("PD_ROUND_SENSOR_INTERVAL_S", 30),
        default_status=automation_default_status(),
        description="Starts pose_pool[r+1, *] once mined_hard_set[r] is materialised and its blocking checks "
                    "passed; the rest of round r+1 follows by automation. One run per shard (run_key per "
                    "mined set); a re-materialised set re-draws the next round.",
    )
    def advance_round(context: dg.SensorEvaluationContext):
        rounds = round_partitions.get_partition_keys()
        mined = {r: mined_round_state(context.instance, r, mined_checks) for r in rounds}
        plan = plan_round_starts(rounds, mined, json.loads(context.cursor) if context.cursor else {})
        for reason in plan.reasons:
            context.log.info(reason)
        if not plan.starts:
            return dg.SkipReason("; ".join(plan.reasons))
        requests = [
            dg.RunRequest(
                run_key=start.run_key(shard),
                partition_key=dg.MultiPartitionKey({"round": start.next_round, "shard": shard}),
                asset_selection=[POSE_POOL],
                tags={**run_tags(), "pd_assets/mined_from": f"{start.from_round}@{start.storage_id}"},
            )
            for start in plan.starts for shard in shard_partitions.get_partition_keys()
        ]
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(plan.cursor, sort_keys=True))

    return advance_round


# --- the growth schedule ---------------------------------------------------------------------

def pose_pool_partitions_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """Partition keys of pose_pool runs not finished yet (queued, starting, running)."""
    runs = instance.get_runs(dg.RunsFilter(statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED]))
    return {run.tags["dagster/partition"] for run in runs if "dagster/partition" in run.tags
            and (run.asset_selection is None or POSE_POOL in run.asset_selection)}


def build_growth_schedule() -> dg.ScheduleDefinition:
    per_tick = positive_int_env("PD_GROW_SHARDS_PER_TICK", 4)

    @dg.schedule(
        name="grow_dataset",
        cron_schedule=os.environ.get("PD_GROW_CRON", "0 * * * *").strip() or "0 * * * *",
        target=dg.AssetSelection.assets(POSE_POOL),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Grows the dataset: pose_pool for the next {per_tick} missing shards of the current round "
                    "per tick (PD_GROW_SHARDS_PER_TICK); the rest follows by automation.",
    )
    def grow_dataset(context: dg.ScheduleEvaluationContext):
        materialised = {str(k) for k in context.instance.get_materialized_partitions(POSE_POOL)}
        plan = plan_growth(round_partitions.get_partition_keys(), shard_partitions.get_partition_keys(),
                           materialised, pose_pool_partitions_in_flight(context.instance), per_tick)
        if not plan.keys:
            return dg.SkipReason(plan.reason)
        tick = context.scheduled_execution_time.strftime("%Y%m%dT%H%M%S") if context.scheduled_execution_time else "now"
        return [dg.RunRequest(run_key=f"grow:{key}:{tick}", partition_key=dg.MultiPartitionKey(
                    {"round": key.split("|")[0], "shard": key.split("|")[1]}),
                    asset_selection=[POSE_POOL], tags=run_tags()) for key in plan.keys]

    return grow_dataset


def automation_definitions(assets: Sequence[dg.AssetsDefinition], checks: Sequence[dg.AssetChecksDefinition]):
    """(assets with conditions, sensors, schedules) for the Definitions."""
    automated = with_automation(assets)
    targets = [a for a in automated if any(a.specs_by_key[k].automation_condition for k in a.keys)]
    sensors = [automation_sensor(targets), build_round_sensor(blocking_check_keys(checks, MINED))]
    return automated, sensors, [build_growth_schedule()]

"""The one Definitions object: every stage's assets and checks, jobs, and resources by profile.

`PD_PROFILE` (local | ci | gpu) picks the resources in resources/profiles.py; nothing
else branches on it. `PD_EXECUTOR` picks where steps run (pd_assets/executors.py);
automation (sensors, schedule, conditions) is in pd_assets/automation.py.
"""

from __future__ import annotations

import dagster as dg

from pd_assets.known_warnings import silence_known_dagster_warnings

silence_known_dagster_warnings()  # before the stages below define their assets and checks

from pd_assets.alignment.assets import ALIGNMENT_ASSETS, ALIGNMENT_CHECKS  # noqa: E402
from pd_assets.automation import automation_definitions  # noqa: E402
from pd_assets.curation.assets import CURATION_ASSETS  # noqa: E402
from pd_assets.curation.checks import CURATION_CHECKS  # noqa: E402
from pd_assets.generation.adapter_assets import ADAPTER_ASSETS, ADAPTER_CHECKS  # noqa: E402
from pd_assets.generation.assets import GENERATION_ASSETS  # noqa: E402
from pd_assets.generation.checks import GENERATION_CHECKS  # noqa: E402
from pd_assets.executors import current_executor_name, executor_for  # noqa: E402
from pd_assets.mining.assets import MINING_ASSETS  # noqa: E402
from pd_assets.mining.checks import MINING_CHECKS  # noqa: E402
from pd_assets.partitions import round_shard_partitions  # noqa: E402
from pd_assets.poses.assets import POSES_ASSETS  # noqa: E402
from pd_assets.poses.checks import POSES_CHECKS  # noqa: E402
from resources.profiles import resources_for_profile  # noqa: E402

# The main job: labels -> images -> filtered shards for one round x shard partition.
generate_dataset_job = dg.define_asset_job(
    name="generate_dataset",
    selection=dg.AssetSelection.assets("pose_pool", "raw_generations", "filtered_shards"),
    partitions_def=round_shard_partitions,
    description="Sample labelled bodies, generate images, filter and shard them (one partition per run).",
)

ASSETS = [*POSES_ASSETS, *GENERATION_ASSETS, *ADAPTER_ASSETS, *ALIGNMENT_ASSETS, *CURATION_ASSETS, *MINING_ASSETS]
CHECKS = [*POSES_CHECKS, *GENERATION_CHECKS, *ADAPTER_CHECKS, *ALIGNMENT_CHECKS, *CURATION_CHECKS, *MINING_CHECKS]
# eager conditions on the followers, the automation and round sensors, the growth schedule
AUTOMATED_ASSETS, SENSORS, SCHEDULES = automation_definitions(ASSETS, CHECKS)

defs = dg.Definitions(
    assets=AUTOMATED_ASSETS,
    asset_checks=CHECKS,
    jobs=[generate_dataset_job],
    sensors=SENSORS,
    schedules=SCHEDULES,
    resources=resources_for_profile(),
    executor=executor_for(current_executor_name()),
)

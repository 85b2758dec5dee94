"""`make demo`: run the main job on one partition the way the UI does, then report.

Usage: `python -m pd_assets.demo --partition 'r0|s0000'` (with `DAGSTER_HOME` set).

1. The partition key is checked against `PD_NUM_ROUNDS` / `PD_NUM_SHARDS` first.
2. `dagster job launch -w workspace.yaml -j generate_dataset` records the run with the
   `pd_assets` code location as its origin, so `make dev` (same `DAGSTER_HOME`) lists it
   under the job and its partition, linked to the live job, not to a snapshot.
3. The instance queues launched runs (its run queue holds runs to `max_concurrent_runs`),
   so a `dagster-daemon` started here dequeues and runs it; the run's log streams to this
   terminal, and the daemon is stopped when the run ends. (If `make dev` is already open
   on the same `DAGSTER_HOME`, its daemon may pick the run up instead; the demo still waits.)
4. `pd_assets.report` prints what the partition holds. The exit status is the run's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

JOB_NAME = "generate_dataset"
LOCATION_NAME = "pd_assets"  # workspace.yaml
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def partition_tags(round_name: str, shard: str) -> dict[str, str]:
    """The tags a partitioned run of the job carries when the UI launches it."""
    return {"dagster/partition": f"{round_name}|{shard}",
            "dagster/partition/round": round_name, "dagster/partition/shard": shard}


def launch(round_name: str, shard: str, workspace: Path) -> str:
    """Queue one run of the main job for a partition through the workspace; returns its id."""
    run_id = str(uuid.uuid4())
    subprocess.run(
        [_bin("dagster"), "job", "launch", "-w", str(workspace), "-l", LOCATION_NAME, "-j", JOB_NAME,
         "--run-id", run_id, "--tags", json.dumps(partition_tags(round_name, shard))],
        cwd=workspace.parent, check=True,
    )
    return run_id


def wait_for(run_id: str, workspace: Path, poll_s: float = 1.0) -> str:
    """Run a daemon until the run finishes; returns its final status name."""
    import dagster as dg

    daemon = subprocess.Popen(
        [_bin("dagster-daemon"), "run", "-w", str(workspace), "--log-level", "warning"],
        cwd=workspace.parent, start_new_session=True,  # its own group: stopped with its code server
    )
    try:
        with dg.DagsterInstance.get() as instance:
            while True:
                status = instance.get_run_by_id(run_id).status.value
                if status in FINISHED:
                    return status
                if daemon.poll() is not None:
                    raise RuntimeError(f"dagster-daemon exited ({daemon.returncode}) before run "
                                       f"{run_id} finished: see its log above")
                time.sleep(poll_s)
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partition", default="r0|s0000")
    parser.add_argument("--workspace", default=None, help="default: workspace.yaml in the checkout")
    args = parser.parse_args(argv)

    from pd_assets.partitions import check_partition_key

    try:
        round_name, shard = check_partition_key(args.partition)
    except ValueError as exc:
        print(f"make demo: {exc}", file=sys.stderr)
        return 2
    if not os.environ.get("DAGSTER_HOME"):
        print("make demo: DAGSTER_HOME is not set: set it to the folder `make dev` uses "
              "(the Makefile's default is ./dagster_home)", file=sys.stderr)
        return 2
    from resources.paths import REPO_ROOT

    workspace = Path(args.workspace or REPO_ROOT / "workspace.yaml").resolve()
    run_id = launch(round_name, shard, workspace)
    print(f"run {run_id}: {JOB_NAME} on {round_name}|{shard} (queued; a daemon runs it)", flush=True)
    status = wait_for(run_id, workspace)
    print(f"run {run_id}: {status}  (open it with `make dev`: Runs, or Jobs > {JOB_NAME})", flush=True)

    from pd_assets.report import report
    from resources.profiles import data_root

    print(report(Path(data_root()), round_name, shard))
    return 0 if status == "SUCCESS" else 1


if __name__ == "__main__":
    sys.exit(main())

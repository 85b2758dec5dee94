"""Launch, watch and re-run round backfills from the command line (Dagster 1.13 has no
asset-backfill CLI): a thin client of the webserver's GraphQL API.

    python -m pd_assets.backfill --round r0                       # the whole round, every stage
    python -m pd_assets.backfill --round r1 --assets pose_pool    # only the roots; automation does the rest
    python -m pd_assets.backfill --round r0 --shards s0000,s0003 --wait
    python -m pd_assets.backfill --status BACKFILL_ID
    python -m pd_assets.backfill --rerun-failed BACKFILL_ID       # failed and unfinished partitions only

The webserver (`make dev`, or `dagster-webserver -w workspace.yaml`) is at `--url`
(default `$PD_DAGSTER_URL` or http://127.0.0.1:3000) and a `dagster-daemon` must run:
the backfill daemon launches the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from pd_assets.partitions import NUM_SHARDS, check_partition_key, round_partitions, shard_partitions

STAGES = ("pose_pool", "raw_generations", "filtered_shards", "mined_hard_set")
ROUND_ONLY = {"mined_hard_set"}  # partitioned by round, not round x shard
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
SUCCESS = {"COMPLETED", "COMPLETED_SUCCESS"}

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionKeysNotFoundError { message partitionKeys }
    ... on Error { message }
  }
}"""

STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions error { message } }
    ... on Error { message }
  }
}"""

RERUN = """
mutation Rerun($params: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""


class BackfillError(RuntimeError):
    pass


def graphql(url: str, query: str, variables: dict, timeout: float = 60.0) -> dict:
    request = urllib.request.Request(f"{url.rstrip('/')}/graphql", method="POST",
                                     data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read().decode())
    except urllib.error.HTTPError as exc:  # the server answered: say what it said
        raise BackfillError(f"the webserver at {url} answered {exc.code}: {exc.read().decode(errors='replace')[:2000]}") \
            from exc
    except (urllib.error.URLError, OSError) as exc:
        raise BackfillError(f"no Dagster webserver answers at {url} ({exc}): start it with `make dev` "
                            "(or dagster-webserver -w workspace.yaml) or pass --url") from exc
    if payload.get("errors"):
        raise BackfillError(f"GraphQL errors from {url}: {payload['errors']}")
    return payload["data"]


def round_selection(round_name: str, assets: Sequence[str], shards: Sequence[str] | None = None) -> dict:
    """`LaunchBackfillParams` for one round: every (or the given) shard of the round x shard
    stages, and the round itself for mined_hard_set."""
    if round_name not in round_partitions.get_partition_keys():
        check_partition_key(f"{round_name}|s0000")  # raises naming PD_NUM_ROUNDS
    unknown = [a for a in assets if a not in STAGES]
    if unknown:
        raise ValueError(f"unknown asset(s) {unknown}: choose from {', '.join(STAGES)}")
    shards = list(shards or shard_partitions.get_partition_keys())
    for shard in shards:
        check_partition_key(f"{round_name}|{shard}")
    # contiguous runs of shards as ranges (keys sort by round, then shard)
    chosen, ranges, run = set(shards), [], []
    for shard in [*shard_partitions.get_partition_keys(), None]:
        if shard in chosen:
            run.append(shard)
        elif run:
            ranges.append({"start": f"{round_name}|{run[0]}", "end": f"{round_name}|{run[-1]}"})
            run = []
    by_asset = []
    for asset in assets:
        selected = [{"start": round_name, "end": round_name}] if asset in ROUND_ONLY else ranges
        by_asset.append({"assetKey": {"path": [asset]}, "partitions": {"ranges": selected}})
    return {"partitionsByAssets": by_asset,
            "title": f"round {round_name}: {', '.join(assets)}",
            "tags": [{"key": "pd_assets/round", "value": round_name}]}


def launch_round(url: str, round_name: str, assets: Sequence[str] = STAGES, shards: Sequence[str] | None = None) -> str:
    result = graphql(url, LAUNCH, {"params": round_selection(round_name, assets, shards)})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"backfill of {round_name} refused ({result['__typename']}): {result.get('message')}")
    return result["backfillId"]


def status(url: str, backfill_id: str) -> dict:
    result = graphql(url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    if result["__typename"] != "PartitionBackfill":
        raise BackfillError(f"no backfill {backfill_id!r}: {result.get('message')}")
    return result


def rerun_failed(url: str, backfill_id: str) -> str:
    params = {"parentRunId": backfill_id, "strategy": "FROM_FAILURE"}
    result = graphql(url, RERUN, {"params": params})["reexecutePartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"re-run of backfill {backfill_id} refused: {result.get('message')}")
    return result["backfillId"]


def wait(url: str, backfill_id: str, timeout_s: float = 24 * 3600, poll_s: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        state = status(url, backfill_id)
        if state["status"] in DONE:
            return state
        if time.monotonic() > deadline:
            raise BackfillError(f"backfill {backfill_id} still {state['status']} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pd_assets.backfill", description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--round", help="launch a backfill of this round (r0, r1, ...)")
    what.add_argument("--status", metavar="BACKFILL_ID", help="print a backfill's status")
    what.add_argument("--rerun-failed", metavar="BACKFILL_ID", help="re-run the failed partitions of a backfill")
    parser.add_argument("--assets", default=",".join(STAGES), help=f"comma-separated, from {', '.join(STAGES)}")
    parser.add_argument("--shards", default="", help=f"comma-separated shards (default: all {NUM_SHARDS})")
    parser.add_argument("--url", default=os.environ.get("PD_DAGSTER_URL", "http://127.0.0.1:3000"))
    parser.add_argument("--wait", action="store_true", help="wait until the backfill ends; exit 1 unless it succeeded")
    args = parser.parse_args(argv)
    try:
        if args.status:
            state = status(args.url, args.status)
            print(f"{state['id']}: {state['status']} ({state['numPartitions']} partitions)")
            return 0
        if args.rerun_failed:
            backfill_id = rerun_failed(args.url, args.rerun_failed)
        else:
            assets = [a.strip() for a in args.assets.split(",") if a.strip()]
            shards = [s.strip() for s in args.shards.split(",") if s.strip()] or None
            backfill_id = launch_round(args.url, args.round, assets, shards)
        print(f"backfill {backfill_id}: {args.url.rstrip('/')}/runs/b/{backfill_id}")
        if args.wait:
            state = wait(args.url, backfill_id)
            print(f"backfill {backfill_id}: {state['status']}")
            return 0 if state["status"] in SUCCESS else 1
        return 0
    except (BackfillError, ValueError) as exc:
        print(f"pd_assets.backfill: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""The Dagster UI serves this project: start `dagster-webserver` on workspace.yaml and query GraphQL.

Starts the real webserver (ci profile, temp DAGSTER_HOME and data root) on a free
127.0.0.1 port, waits for the `pd_assets` code location to load, then checks the
asset graph, partitions, asset checks and the `generate_dataset` job over /graphql.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WEBSERVER = Path(sys.executable).parent / "dagster-webserver"
STARTUP_TIMEOUT_S = 90.0

MAIN_ASSETS = ("pose_pool", "raw_generations", "filtered_shards")
POSE_POOL_CHECKS = {
    "labels_finite_and_unique",
    "visible_keypoints_inside_image",
    "bbox_area_above_minimum",
    "camera_within_ranges",
    "one_control_per_sample",
}

WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation {
            name
            repositories { name jobs { name } }
          }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message stack }
  }
}
"""

ASSET_NODES_QUERY = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    isPartitioned
    partitionDefinition {
      type
      dimensionTypes { name type }
    }
    dependencyKeys { path }
    jobNames
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name blocking } }
      ... on AssetCheckNeedsMigrationError { message }
      ... on AssetCheckNeedsUserCodeUpgrade { message }
      ... on AssetCheckNeedsAgentUpgradeError { message }
    }
  }
}
"""

REPOSITORIES_QUERY = """
query Repositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } jobs { name } }
    }
    ... on PythonError { message }
  }
}
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "<no output captured>"


class _Server:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.log = log

    def graphql(self, query: str, timeout: float = 30.0) -> dict:
        req = urllib.request.Request(
            f"{self.base}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = json.loads(resp.read().decode())
        assert "errors" not in payload, f"GraphQL errors: {payload['errors']}"
        return payload["data"]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory):
    if not WEBSERVER.exists():
        pytest.skip(f"{WEBSERVER} not installed")
    tmp = tmp_path_factory.mktemp("webserver")
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "resources" / "dagster.yaml", home / "dagster.yaml")
    data_root = tmp / "data"
    data_root.mkdir()
    log = tmp / "webserver.log"

    env = dict(os.environ)
    env.update(PD_PROFILE="ci", PD_DATA_ROOT=str(data_root), DAGSTER_HOME=str(home))
    port = _free_port()
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(
            [str(WEBSERVER), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: teardown signals the whole tree
        )
    server = _Server(proc, port, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last_err: object = None
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster-webserver exited with {proc.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"dagster-webserver not ready after {STARTUP_TIMEOUT_S:.0f}s "
                    f"(last: {last_err!r}):\n{_tail(log)}"
                )
            try:
                with urllib.request.urlopen(f"{server.base}/server_info", timeout=5) as resp:
                    if resp.status == 200:
                        # The HTTP server is up; the code location may still be loading.
                        entries = server.graphql(WORKSPACE_QUERY)["workspaceOrError"]
                        locs = entries.get("locationEntries", [])
                        if locs and all(e["loadStatus"] == "LOADED" for e in locs):
                            break
                        last_err = [(e["name"], e["loadStatus"]) for e in locs]
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                last_err = exc
            time.sleep(0.5)
        yield server
    finally:
        _stop(proc)


def test_code_location_loads(webserver: _Server):
    ws = webserver.graphql(WORKSPACE_QUERY)["workspaceOrError"]
    assert ws["__typename"] == "Workspace", ws
    entries = {e["name"]: e for e in ws["locationEntries"]}
    assert "pd_assets" in entries, list(entries)
    loc = entries["pd_assets"]["locationOrLoadError"]
    assert loc["__typename"] == "RepositoryLocation", (
        f"pd_assets failed to load: {loc.get('message')}\n{loc.get('stack')}"
    )
    jobs = {j["name"] for repo in loc["repositories"] for j in repo["jobs"]}
    assert "generate_dataset" in jobs, sorted(jobs)

    repos = webserver.graphql(REPOSITORIES_QUERY)["repositoriesOrError"]
    assert repos["__typename"] == "RepositoryConnection", repos
    pd_repos = [r for r in repos["nodes"] if r["location"]["name"] == "pd_assets"]
    assert pd_repos, repos["nodes"]
    assert any("generate_dataset" in {j["name"] for j in r["jobs"]} for r in pd_repos)


def test_asset_graph_partitions_and_checks(webserver: _Server):
    nodes = webserver.graphql(ASSET_NODES_QUERY)["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    for key in MAIN_ASSETS:
        assert key in by_key, f"asset {key} missing from the UI: {sorted(by_key)}"
        node = by_key[key]
        assert node["isPartitioned"], key
        pdef = node["partitionDefinition"]
        assert pdef is not None, key
        assert pdef["type"] == "MULTIPARTITIONED", (key, pdef)
        assert {d["name"] for d in pdef["dimensionTypes"]} == {"round", "shard"}, (key, pdef)
        assert "generate_dataset" in node["jobNames"], (key, node["jobNames"])

    def deps(key: str) -> set[str]:
        return {"/".join(d["path"]) for d in by_key[key]["dependencyKeys"]}

    assert "pose_pool" in deps("raw_generations"), deps("raw_generations")
    assert {"pose_pool", "raw_generations"} <= deps("filtered_shards"), deps("filtered_shards")

    checks_or_error = by_key["pose_pool"]["assetChecksOrError"]
    assert checks_or_error["__typename"] == "AssetChecks", checks_or_error
    checks = {c["name"]: c for c in checks_or_error["checks"]}
    missing = POSE_POOL_CHECKS - set(checks)
    assert not missing, f"missing pose_pool checks {sorted(missing)}; have {sorted(checks)}"
    not_blocking = sorted(name for name in POSE_POOL_CHECKS if not checks[name]["blocking"])
    assert not not_blocking, f"pose_pool checks not blocking: {not_blocking}"

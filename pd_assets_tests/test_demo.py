"""`make demo` and `make dev`: the partition is checked first, the demo's run belongs to the
job in the UI, and `dagster dev` starts without the stray-dagster.yaml warning."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from pd_assets import demo
from pd_assets.partitions import NUM_ROUNDS, NUM_SHARDS, check_partition_key

REPO = Path(__file__).resolve().parents[1]
DAGSTER_YAML_WARNING = "Found a dagster instance configuration value"


def test_a_partition_outside_the_range_names_the_setting_that_bounds_it():
    assert check_partition_key("r0|s0000") == ("r0", "s0000")
    with pytest.raises(ValueError, match=rf"'r99' is outside r0..r{NUM_ROUNDS - 1} \(PD_NUM_ROUNDS={NUM_ROUNDS}\)"
                                         r": set PD_NUM_ROUNDS=100 or more"):
        check_partition_key("r99|s0000")
    with pytest.raises(ValueError, match=rf"PD_NUM_SHARDS={NUM_SHARDS}\): set PD_NUM_SHARDS=10000 or more"):
        check_partition_key("r0|s9999")
    with pytest.raises(ValueError, match="write shard 's1' as 's0001'"):
        check_partition_key("r0|s1")
    with pytest.raises(ValueError, match="not a round|shard key"):
        check_partition_key("r0-s0000")


def test_the_demo_refuses_a_bad_partition_before_launching(monkeypatch, capsys):
    monkeypatch.setattr(demo, "launch", lambda *a: pytest.fail("launched a run for a bad partition"))
    assert demo.main(["--partition", "r99|s0000"]) == 2
    err = capsys.readouterr().err
    assert "make demo: partition 'r99|s0000'" in err and "PD_NUM_ROUNDS=100" in err


def _instance_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "resources" / "dagster.yaml", home / "dagster.yaml")  # what `make instance` does
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PD_PROFILE", "ci")
    monkeypatch.setenv("PD_DATA_ROOT", str(tmp_path / "data"))
    return home


def test_a_demo_run_is_a_run_of_the_job_in_the_ui(tmp_path, monkeypatch):
    """The UI's job page lists runs by job name and the `.dagster/repository` tag, which
    only runs launched through the workspace carry; the run also has its partition."""
    _instance_home(tmp_path, monkeypatch)
    run_id = demo.launch("r0", "s0001", REPO / "workspace.yaml")  # queued: no daemon here
    with dg.DagsterInstance.get() as instance:
        ui_filter = dg.RunsFilter(job_name="generate_dataset",
                                  tags={".dagster/repository": "__repository__@pd_assets"})
        assert [r.run_id for r in instance.get_runs(ui_filter)] == [run_id]
        run = instance.get_run_by_id(run_id)
    assert run.remote_job_origin is not None
    assert run.remote_job_origin.location_name == "pd_assets"
    assert run.tags["dagster/partition"] == "r0|s0001"
    assert (run.tags["dagster/partition/round"], run.tags["dagster/partition/shard"]) == ("r0", "s0001")
    assert run.status == dg.DagsterRunStatus.QUEUED  # the instance's run queue holds it


def test_make_dev_starts_without_the_stray_dagster_yaml_warning(tmp_path, monkeypatch):
    recipe = re.search(r"^dev:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M).group(1)
    assert recipe.strip() == ".venv/bin/dagster dev -w workspace.yaml"  # run from the repo root
    _instance_home(tmp_path, monkeypatch)
    log = tmp_path / "dev.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml", "-p", "0"],
            cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "Launching Dagster services" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert "Launching Dagster services" in text, text
    assert DAGSTER_YAML_WARNING not in text, text

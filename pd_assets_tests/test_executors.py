"""Beyond one machine: the executor switch, each GPU step's Kubernetes pod as dagster-k8s
renders it (no cluster), and a real dagster-dask LocalCluster whose outputs equal the
in-process executor's."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pd_assets import executors
from pd_assets_tests.helpers import ci_resources

PARTITIONS = ["r0|s0000", "r0|s0001"]
IMAGE = "registry.example.com/pd-assets:1.0"


@pytest.fixture(scope="module")
def defs():
    from pd_assets.definitions import defs

    return defs


def _gpu_assets(defs) -> dict[str, dg.AssetsDefinition]:
    return {a.key.to_user_string(): a for a in defs.assets
            if isinstance(a, dg.AssetsDefinition) and a.is_executable and a.op.pool == "gpu"}


def test_every_gpu_step_is_in_the_gpu_pool_and_tagged_for_both_executors(defs):
    gpu = _gpu_assets(defs)
    assert {"raw_generations", "control_adapter"} <= set(gpu)
    for name, asset in gpu.items():
        tags = asset.op.tags
        assert json.loads(tags[executors.DASK_RESOURCE_TAG]) == {"GPU": 1}, name
        limits = json.loads(tags[executors.K8S_CONFIG_TAG])["container_config"]["resources"]["limits"]
        assert limits == {"nvidia.com/gpu": "1"}, name


def test_each_gpu_step_pod_requests_a_gpu_and_the_image(defs):
    """dagster-k8s's own code turns the step's tags into the Job the k8s executor submits."""
    for name, asset in _gpu_assets(defs).items():
        job = executors.k8s_step_job(asset.op.tags, step_key=name, image=IMAGE, namespace="pd")
        (container,) = job.spec.template.spec.containers
        assert container.image == IMAGE, name
        assert container.resources.limits == {"nvidia.com/gpu": "1"}, name
        assert container.resources.requests == {"nvidia.com/gpu": "1"}, name
        assert job.spec.template.metadata.labels["dagster/op"] == name
    # a CPU step gets no GPU; an executor-level per-step override reaches the pod
    pose_pool = next(a for a in defs.assets if a.key == dg.AssetKey("pose_pool"))
    cpu_job = executors.k8s_step_job(pose_pool.op.tags, step_key="pose_pool", image=IMAGE)
    cpu_resources = cpu_job.spec.template.spec.containers[0].resources
    assert cpu_resources is None or not (cpu_resources.limits or cpu_resources.requests)
    override = {"raw_generations": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "2"}}}}}
    two = executors.k8s_step_job(_gpu_assets(defs)["raw_generations"].op.tags, "raw_generations", IMAGE,
                                 per_step_k8s_config=override)
    assert two.spec.template.spec.containers[0].resources.limits == {"nvidia.com/gpu": "2"}


def test_the_executor_switch(monkeypatch):
    monkeypatch.delenv("PD_EXECUTOR", raising=False)
    assert executors.executor_for(executors.current_executor_name()) is None  # Dagster's default
    monkeypatch.setenv("PD_EXECUTOR", "in_process")
    assert executors.executor_for(executors.current_executor_name()) is dg.in_process_executor
    monkeypatch.setenv("PD_EXECUTOR", "dask")
    assert executors.executor_for("dask").name == "dask_pd_assets"
    assert executors.dask_cluster_config({}) == {"local": {"n_workers": 2, "threads_per_worker": 1,
                                                           "processes": True, "resources": {"GPU": 1}}}
    assert executors.dask_cluster_config({"PD_DASK_ADDRESS": "tcp://10.0.0.5:8786"}) == {
        "existing": {"address": "tcp://10.0.0.5:8786"}}
    monkeypatch.delenv("PD_K8S_IMAGE", raising=False)
    with pytest.raises(ValueError, match="PD_EXECUTOR=k8s needs PD_K8S_IMAGE"):
        executors.executor_for("k8s")
    monkeypatch.setenv("PD_K8S_IMAGE", IMAGE)
    assert executors.executor_for("k8s").name == "k8s_pd_assets"
    assert executors.k8s_executor_config({"PD_K8S_IMAGE": IMAGE}) == {"job_image": IMAGE, "job_namespace": "dagster"}
    monkeypatch.setenv("PD_EXECUTOR", "spark")
    with pytest.raises(ValueError, match="PD_EXECUTOR='spark' is not one of"):
        executors.current_executor_name()


def dask_generation_job() -> dg.JobDefinition:
    """pose_pool + raw_generations on the executor `PD_EXECUTOR=dask` selects (reconstructed by
    name in each Dask worker process, so it lives at module level)."""
    from pd_assets.definitions import defs
    from pd_assets.partitions import round_shard_partitions

    job = dg.define_asset_job("generate_images_dask", selection=["pose_pool", "raw_generations"],
                              partitions_def=round_shard_partitions, executor_def=executors.executor_for("dask"))
    return dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job],
                          resources=defs.resources).resolve_job_def("generate_images_dask")


def _outputs(root: Path, partition: str) -> dict[str, object]:
    round_name, shard = partition.split("|")
    pool, gen = root / "pose_pool" / round_name / shard, root / "raw_generations" / round_name / shard
    images = sorted((gen / "images").glob("*.png"))
    return {
        "labels": pl.read_parquet(pool / "labels.parquet"),
        "provenance": pl.read_parquet(gen / "provenance.parquet"),
        "images": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in images},
    }


def test_dask_local_cluster_with_gpu_slots_matches_in_process(defs, tmp_path, monkeypatch):
    """Two worker processes, one GPU slot each; pose_pool + raw_generations of two partitions
    through dagster-dask, against the same partitions materialised in process."""
    from dask.distributed import Client, LocalCluster

    dask_root, local_root = tmp_path / "dask", tmp_path / "local"
    selection = dg.AssetSelection.assets("pose_pool", "raw_generations")
    for partition in PARTITIONS:
        result = dg.materialize(defs.assets, selection=selection, partition_key=partition,
                                resources=ci_resources(local_root))
        assert result.success

    # the worker processes import pd_assets.definitions with this environment
    monkeypatch.setenv("PD_PROFILE", "ci")
    monkeypatch.setenv("PD_DATA_ROOT", str(dask_root))
    # Dask starts workers with OMP_NUM_THREADS=1; torch then sums in another order than this
    # process does and a diffusion image can differ in its last bits: give workers this
    # process's thread count, as a fleet would run one GPU step per worker with its own setting
    import dask
    import torch

    threads = str(torch.get_num_threads())
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"), "OMP_NUM_THREADS": threads,
               "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, resources={"GPU": 1},
                         dashboard_address=None) as cluster, Client(cluster) as client:
        slots = client.run(lambda dask_worker: dict(dask_worker.state.total_resources))
        assert sorted(slots.values(), key=str) == [{"GPU": 1}, {"GPU": 1}]
        monkeypatch.setenv("PD_DASK_ADDRESS", cluster.scheduler_address)  # the executor switch reads it
        (tmp_path / "home").mkdir()
        # no compute-log capture: its `tail` helpers, started from a Dask worker, can ignore
        # SIGTERM and cost 2 x 30 s per step (measured here); this test checks outputs, not logs
        no_capture = {"compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager",
                                       "class": "NoOpComputeLogManager"}}
        with dg.instance_for_test(temp_dir=str(tmp_path / "home"), overrides=no_capture) as instance:
            for partition in PARTITIONS:
                with dg.execute_job(dg.reconstructable(dask_generation_job), instance=instance,
                                    tags={"dagster/partition": partition}) as res:
                    assert res.success, [e.message for e in res.all_events if e.is_failure]
                    steps = {e.step_key: e.pid for e in res.all_events if e.is_step_success}
                    assert {"pose_pool", "raw_generations"} <= set(steps), partition  # and their checks
                    assert os.getpid() not in steps.values(), steps  # every step ran in a worker process
    for partition in PARTITIONS:
        dask_out, local_out = _outputs(dask_root, partition), _outputs(local_root, partition)
        assert dask_out["labels"].equals(local_out["labels"]), partition
        assert dask_out["provenance"].equals(local_out["provenance"]), partition
        assert dask_out["images"] == local_out["images"] and len(dask_out["images"]) == 8, partition

"""Where steps run: one process, several, a Dask cluster or Kubernetes pods (`PD_EXECUTOR`).

| `PD_EXECUTOR` | executor | for |
|---|---|---|
| unset | Dagster's default (multiprocess; in-process for `dg.materialize`) | local use |
| `in_process` / `multiprocess` | Dagster's own | debugging / one machine |
| `dask` | dagster-dask (pd_assets/dask_compat.py) on `PD_DASK_ADDRESS`, else a LocalCluster of `PD_DASK_WORKERS` (2) worker processes, each declaring `PD_DASK_GPUS_PER_WORKER` (1) `GPU` slot | several machines or GPUs without Kubernetes |
| `k8s` | dagster-k8s `k8s_job_executor`: one pod per step, image `PD_K8S_IMAGE`, namespace `PD_K8S_NAMESPACE` | production |

GPU steps carry both executors' tags (`gpu_op_tags`): the Dask scheduler puts a step on a
worker with a free `GPU` slot, and Kubernetes schedules the pod on a node with a free
`nvidia.com/gpu`. Other executors ignore the tags. The executor libraries are imported only
when selected (dagster-dask / dagster-k8s 0.29.N require dagster 1.13.N exactly).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import dagster as dg

EXECUTORS = ("in_process", "multiprocess", "dask", "k8s")
DASK_RESOURCE_TAG = "dagster-dask/resource_requirements"
K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_RESOURCE = "GPU"  # the Dask worker resource name each GPU step asks one of


def k8s_gpu_tags(gpus: int = 1) -> dict:
    """The `dagster-k8s/config` tag asking Kubernetes for `gpus` GPUs for a step."""
    limits = {"nvidia.com/gpu": str(gpus)}
    return {K8S_CONFIG_TAG: {"container_config": {"resources": {"limits": limits, "requests": limits}}}}


def dask_gpu_tags(gpus: int = 1) -> dict:
    """The `dagster-dask/resource_requirements` tag: the step holds `gpus` `GPU` slots of its worker."""
    return {DASK_RESOURCE_TAG: json.dumps({GPU_RESOURCE: gpus})}


def gpu_op_tags(gpus: int = 1) -> dict:
    """Op tags of a GPU step for every executor (pair with `pool="gpu"`)."""
    return {**k8s_gpu_tags(gpus), **dask_gpu_tags(gpus)}


def positive_int_env(name: str, default: int, env: Mapping[str, str] | None = None) -> int:
    """A positive integer setting from the environment (unset or empty: `default`)."""
    raw = (os.environ if env is None else env).get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise ValueError(f"{name}={value} must be positive")
    return value


def current_executor_name() -> str | None:
    name = os.environ.get("PD_EXECUTOR", "").strip()
    if not name:
        return None
    if name not in EXECUTORS:
        raise ValueError(f"PD_EXECUTOR={name!r} is not one of {', '.join(EXECUTORS)} (or unset for Dagster's default)")
    return name


def dask_cluster_config(env: Mapping[str, str] | None = None) -> dict:
    """`existing: {address}` when `PD_DASK_ADDRESS` is set, else a local cluster of worker processes."""
    env = os.environ if env is None else env
    address = env.get("PD_DASK_ADDRESS", "").strip()
    if address:
        return {"existing": {"address": address}}
    workers = positive_int_env("PD_DASK_WORKERS", 2, env)
    gpus = positive_int_env("PD_DASK_GPUS_PER_WORKER", 1, env)
    # processes: Dagster steps are not thread-safe (one thread per worker process)
    return {"local": {"n_workers": workers, "threads_per_worker": 1, "processes": True,
                      "resources": {GPU_RESOURCE: gpus}}}


def k8s_executor_config(env: Mapping[str, str] | None = None) -> dict:
    env = os.environ if env is None else env
    image = env.get("PD_K8S_IMAGE", "").strip()
    if not image:
        raise ValueError("PD_EXECUTOR=k8s needs PD_K8S_IMAGE: the image holding this project (with its "
                         ".cache model assets or a volume providing them), e.g. registry/pd-assets:1.0")
    config: dict = {"job_image": image, "job_namespace": env.get("PD_K8S_NAMESPACE", "dagster").strip() or "dagster"}
    if env.get("PD_K8S_KUBECONFIG"):  # running outside the cluster
        config.update(load_incluster_config=False, kubeconfig_file=env["PD_K8S_KUBECONFIG"])
    return config


def executor_for(name: str | None) -> dg.ExecutorDefinition | None:
    """The executor `PD_EXECUTOR` names, configured from the environment (None: Dagster's default)."""
    if name is None:
        return None
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "dask":
        # dagster-dask's executor, its task arguments kept opaque to current Dask (dask_compat.py)
        from pd_assets.dask_compat import opaque_dask_executor

        return opaque_dask_executor.configured({"cluster": dask_cluster_config()}, name="dask_pd_assets")
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(k8s_executor_config(), name="k8s_pd_assets")
    raise ValueError(f"executor {name!r} is not one of {', '.join(EXECUTORS)}")


def k8s_step_job(op_tags: Mapping[str, object], step_key: str, image: str, namespace: str = "dagster",
                 per_step_k8s_config: Mapping[str, dict] | None = None):
    """The Kubernetes Job the k8s executor would create for one step, built by dagster-k8s's own
    code (`get_user_defined_k8s_config` on the step's tags, the executor's per-step override,
    `construct_dagster_k8s_job`), with no cluster: what a pod of that step will request."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job,
                                 get_k8s_job_name, get_user_defined_k8s_config)

    tags = {k: v if isinstance(v, str) else json.dumps(v) for k, v in op_tags.items()}
    context = K8sContainerContext(namespace=namespace).merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags))).merge(
        K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            dict(per_step_k8s_config or {}).get(step_key, {}))))
    job_name = f"dagster-step-{get_k8s_job_name('render', step_key)}"
    return construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(job_image=image, dagster_home="/opt/dagster/dagster_home",
                                       instance_config_map="dagster-instance"),
        args=["dagster", "api", "execute_step"], job_name=job_name, pod_name=job_name, component="step_worker",
        user_defined_k8s_config=context.run_k8s_config, labels={"dagster/op": step_key},
    )

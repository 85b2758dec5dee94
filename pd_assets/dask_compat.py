"""dagster-dask's executor, with its task arguments kept opaque to current Dask.

dagster-dask 0.29.27 hands the run (`DagsterRun`), the reconstructable job and the known
state to `Client.submit` as plain arguments. Dask >= 2024.12 walks every tuple argument
looking for futures (`dask._task_spec.parse_input`), and these Dagster records are named
tuples that forbid iteration: every step then fails with "Iteration is not allowed on
`@record` RunOpConcurrency" (measured with dask/distributed 2026.8). This executor is
dagster-dask's (same config schema, same `dagster-dask/resource_requirements` tag, same
worker function) except that the arguments travel inside an object Dask does not open.
Only the `existing` (a scheduler address) and `local` cluster types are offered: start
any other cluster (dask-jobqueue, dask-kubernetes) yourself and pass its address.
"""

from __future__ import annotations

import dask.distributed
import dagster as dg
from dagster._core.errors import raise_execution_interrupts
from dagster._core.events import DagsterEvent
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._utils import iterate_with_context
from dagster_dask.executor import DaskExecutor, dask_executor, get_dask_resource_requirements, query_on_dask_worker


class _Opaque:
    """Carries a value through `Client.submit` without Dask looking inside it."""

    def __init__(self, value):
        self.value = value


def _run_step(dependencies, packed: _Opaque):
    return query_on_dask_worker(dependencies, *packed.value)


class OpaqueArgsDaskExecutor(DaskExecutor):
    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan):
        if not plan_context.instance.is_persistent:
            raise dg.DagsterInvariantViolationError("Dask execution requires a persistent DagsterInstance "
                                                    "(set DAGSTER_HOME)")
        job_name = plan_context.job_name
        if self.cluster_type == "existing":
            cluster = self.cluster_configuration["address"]
        elif self.cluster_type == "local":
            cluster = dask.distributed.LocalCluster(**self.build_dict(job_name))
        else:
            raise dg.DagsterInvariantViolationError(
                f"cluster type {self.cluster_type!r}: start that cluster yourself and use "
                "cluster: {existing: {address: ...}} (PD_DASK_ADDRESS)")
        with dask.distributed.Client(cluster) as client:
            futures, by_step = [], {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    # the futures of upstream steps stay visible to Dask: it sequences on them
                    dependencies = [by_step[key] for step_input in step.step_inputs
                                    for key in step_input.dependency_keys]
                    packed = _Opaque((plan_context.reconstructable_job, plan_context.dagster_run,
                                      plan_context.run_config, [step.key], plan_context.instance.get_ref(),
                                      execution_plan.known_state))
                    future = client.submit(_run_step, dependencies, packed, key=f"{job_name}.{step.key}",
                                           resources=get_dask_resource_requirements(step.tags))
                    futures.append(future)
                    by_step[step.key] = future
            for _, result in iterate_with_context(raise_execution_interrupts,
                                                  dask.distributed.as_completed(futures, with_results=True)):
                for event in result:
                    if not isinstance(event, DagsterEvent):
                        raise TypeError(f"a Dask worker returned {type(event).__name__}, not a DagsterEvent")
                    yield event


@dg.executor(name="dask", config_schema=dask_executor.config_schema,
             requirements=dg.multiple_process_executor_requirements())
def opaque_dask_executor(init_context: dg.InitExecutorContext) -> OpaqueArgsDaskExecutor:
    """dagster-dask's executor (config: `cluster: {existing: {address}} | {local: {...}}`)."""
    ((cluster_type, cluster_configuration),) = init_context.executor_config["cluster"].items()
    return OpaqueArgsDaskExecutor(cluster_type, cluster_configuration)

"""great-expectations 1.x suites run on a dataframe, for Dagster asset checks.

Checks build a list of expectations, this runs them in an ephemeral context (no
project files, no network) and returns the failures in plain words for the UI.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass
class SuiteResult:
    success: bool
    evaluated: int
    failures: list[str]


def run_suite(name: str, frame: pd.DataFrame, expectations: list) -> SuiteResult:
    import great_expectations as gx

    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # progress bars would flood the Dagster compute logs
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas(f"{name}_source")
    asset = source.add_dataframe_asset(name=f"{name}_frame")
    batch_def = asset.add_batch_definition_whole_dataframe(f"{name}_batch")
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for expectation in expectations:
        suite.add_expectation(expectation)
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite)
    failures = []
    for r in result.results:
        if not r.success:
            cfg = r.expectation_config
            observed = {k: r.result.get(k) for k in ("observed_value", "unexpected_count", "partial_unexpected_list") if k in r.result}
            failures.append(f"{cfg.type} {dict(cfg.kwargs)} -> {observed}")
    return SuiteResult(success=bool(result.success), evaluated=len(result.results), failures=failures)


def expectations_module():
    """`great_expectations.expectations`, imported lazily (the import takes seconds)."""
    import great_expectations.expectations as gxe

    return gxe

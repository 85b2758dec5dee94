"""What a run prints: no known Dagster preview/beta notices, while real warnings still show."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_loading_the_definitions_prints_no_known_notices_but_real_warnings_show():
    # what every step subprocess does first: load the code location, here with all warnings on
    script = textwrap.dedent("""
        import warnings
        import dagster as dg
        import pd_assets.definitions as d
        d.defs.resolve_job_def("generate_dataset")
        warnings.warn("a deliberate user warning", UserWarning)
        warnings.warn("an unrelated preview feature", dg.PreviewWarning)
    """)
    out = subprocess.run([sys.executable, "-W", "default", "-c", script], cwd=REPO,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "partitions_def on an AssetCheckSpec" not in out.stderr
    assert "BetaWarning" not in out.stderr and "varying BackfillPolicies" not in out.stderr
    assert "UserWarning: a deliberate user warning" in out.stderr
    assert "PreviewWarning: an unrelated preview feature" in out.stderr

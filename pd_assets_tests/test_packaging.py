"""What a fresh install resolves: the exact pins of pyproject.toml and the constraints file
`make setup` installs under (resources/constraints.txt) agree."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _exact_pins(*, extras: bool) -> dict[str, str]:
    """name -> version of every `name==version` requirement in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    if extras:
        deps += [d for extra in project["optional-dependencies"].values() for d in extra]
    return {m[1].lower(): m[2] for d in deps if (m := re.fullmatch(r"([\w.-]+)==([\w.]+)", d.replace(" ", "")))}


def test_dask_and_distributed_are_pinned_together_and_installed_so():
    """dagster-dask leaves dask loose; a fresh resolve once paired dask 2026.11.0 with
    distributed 2021.4.1, which cannot import (CI, stop 21): both are pinned to one version."""
    pins = {name: v for name, v in _exact_pins(extras=False).items() if name in ("dask", "distributed")}
    assert set(pins) == {"dask", "distributed"} and pins["dask"] == pins["distributed"], pins
    assert {name: importlib.metadata.version(name) for name in pins} == pins


def test_the_constraints_file_agrees_with_every_exact_pin():
    """`make setup` installs under resources/constraints.txt; an exact pin in pyproject.toml
    that the constraints contradict would make every fresh install fail to resolve."""
    pins = _exact_pins(extras=True)
    constraints = {}
    for line in (ROOT / "resources" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            constraints[name.lower()] = version
    assert "torch" in pins and "dask" in pins
    wrong = {n: (v, constraints[n]) for n, v in pins.items() if n in constraints and constraints[n] != v}
    assert not wrong, f"pyproject pins vs resources/constraints.txt: {wrong}"

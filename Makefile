# make setup: idempotent install (Debian EGL packages, .venv, locally built model assets)
# make demo:  setup, then run the main job on one partition (DEMO_PARTITION) through workspace.yaml, and report
# make test:  setup, then the test suite
SHELL := /bin/bash
PY := .venv/bin/python
CONSTRAINTS := resources/constraints.txt
VENV_STAMP := .venv/.installed-$(shell cat pyproject.toml $(CONSTRAINTS) | sha256sum | cut -c1-12)
APT_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri
export PD_CACHE_DIR ?= $(CURDIR)/.cache
export ANNY_CACHE_DIR ?= $(PD_CACHE_DIR)/anny
export PD_DATA_ROOT ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
DEMO_PARTITION ?= r0|s0000

.PHONY: setup apt venv assets instance demo test dev bench clean-data

setup: apt venv assets

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	@rm -f .venv/.installed-*; touch $@

assets: venv
	$(PY) -m pd_assets.setup_assets

# the run goes through workspace.yaml, so `make dev` lists it under the generate_dataset job
demo: setup instance
	PD_PROFILE=$${PD_PROFILE:-local} $(PY) -m pd_assets.demo --partition '$(DEMO_PARTITION)'

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

dev: setup instance
	.venv/bin/dagster dev -w workspace.yaml

# the instance settings live in resources/dagster.yaml, not at the top level, where
# `dagster dev` would warn that a dagster.yaml there is not DAGSTER_HOME's
instance:
	@mkdir -p $(DAGSTER_HOME) && cp resources/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-data:
	rm -rf $(PD_DATA_ROOT) $(DAGSTER_HOME)

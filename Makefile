# make setup: idempotent install (Debian EGL packages, .venv, locally built model assets)
# make demo:  setup, then materialise the main job for one partition on the embedded defaults
# make test:  setup, then the test suite
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
APT_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri
export PD_CACHE_DIR ?= $(CURDIR)/.cache
export ANNY_CACHE_DIR ?= $(PD_CACHE_DIR)/anny
export PD_DATA_ROOT ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
DEMO_PARTITION ?= r0|s0000

.PHONY: setup apt venv assets demo test dev bench clean-data

setup: apt venv assets

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f .venv/.installed-*; touch $@

assets: venv
	$(PY) -m pd_assets.setup_assets

demo: setup
	@mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	PD_PROFILE=$${PD_PROFILE:-local} .venv/bin/dagster asset materialize -m pd_assets.definitions \
	  --select 'pose_pool,raw_generations,filtered_shards' --partition '$(DEMO_PARTITION)'
	PD_PROFILE=$${PD_PROFILE:-local} $(PY) -m pd_assets.report --partition '$(DEMO_PARTITION)'

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

dev: setup
	@mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	.venv/bin/dagster dev -w workspace.yaml

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-data:
	rm -rf $(PD_DATA_ROOT) $(DAGSTER_HOME)

# gastown — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv test unit integration lint fmt crds crds-check run bench demo clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@command -v git >/dev/null || { echo "installing git"; apt-get update -qq && apt-get install -y -qq git >/dev/null; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP) ## Create .venv with gastown and the test tools

test: $(STAMP) ## Lint, check generated files, run every test (e2e only when a cluster is reachable)
	$(MAKE) --no-print-directory lint crds-check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: $(STAMP) ## Unit tests only
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP) ## Integration tests only (real git, real subprocesses, API test double)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

lint: $(STAMP) ## ruff
	$(BIN)/ruff check operator tests bench

fmt: $(STAMP) ## Fix what ruff can fix
	$(BIN)/ruff check --fix operator tests bench

crds: $(STAMP) ## Regenerate crds/ from the API models
	$(BIN)/python -m gastown.api.crdgen crds

crds-check: $(STAMP) ## Fail when crds/ drifted from the models
	$(BIN)/python -m gastown.api.crdgen crds --check

run: $(STAMP) ## Run the operator against the current kubeconfig
	$(BIN)/gt operator run

bench: $(STAMP) ## Benchmarks: print figures (never part of `make test`)
	$(BIN)/python bench/ledger_bench.py
	$(BIN)/python bench/scheduler_bench.py
	$(BIN)/python bench/refinery_bench.py

demo: $(STAMP) ## A town on this machine builds a small library with scripted agents (DEMO_RUNTIME=claude: real ones)
	$(BIN)/python -m gastown.demo

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .demo

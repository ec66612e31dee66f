# gastown — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HELM   := $(BIN)/helm
PYTEST_ARGS ?=

.PHONY: help venv test browser agents agent-contract chart-lint unit integration lint fmt crds crds-check run bench demo clean \
        kind-up image kind-load deploy e2e kind-down

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@command -v git >/dev/null || { echo "installing git"; apt-get update -qq && apt-get install -y -qq git >/dev/null; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@# the bytecode a regular install compiles: an editable one under PYTHONDONTWRITEBYTECODE has none,
	@# and every `gt` would compile its modules again (about 10 ms of each one's CPU)
	$(BIN)/python -m compileall -q operator/gastown >/dev/null
	@touch $@

$(HELM): scripts/fetch_helm.py | $(STAMP)
	$(BIN)/python scripts/fetch_helm.py $@

venv: $(STAMP) $(HELM) ## Create .venv with gastown, the test tools and helm

AGENT_WORKERS ?= 6
# the main suite's pytest-xdist workers: most tests wait on git, processes and polls, so two
# workers halve the time even on a loaded 2-core machine (TEST_WORKERS=0: one process)
TEST_WORKERS ?= 2

test: $(STAMP) $(HELM) agents browser ## Lint, check generated files, the chart, run every test (e2e only with a cluster)
	$(MAKE) --no-print-directory lint crds-check chart-lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)
	$(BIN)/python -m pytest tests/agents -n $(AGENT_WORKERS) --dist load $(PYTEST_ARGS)

chart-lint: $(HELM) ## helm lint --strict, with the default values and with every option on
	$(HELM) lint --strict charts/gastown
	$(HELM) lint --strict charts/gastown --set 'watchNamespaces={team-a,team-b}' --set serviceMonitor.enabled=true \
	  --set replicas=1 --set leaderElection.leaseDurationSeconds=15

browser: ## Install headless Chromium (Debian's package) for the dashboard's browser test; skipped without apt-get
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { command -v apt-get >/dev/null \
	  && { echo "installing chromium"; apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "no apt-get here: install chromium yourself, or the dashboard's browser test skips"; }

agents: $(STAMP) ## Install the agent CLIs the contract suite runs (pinned, from npm; skipped without npm)
	$(BIN)/python scripts/fetch_agents.py

agent-contract: $(STAMP) agents ## The agent contract suite only: each real agent CLI against a model stand-in
	$(BIN)/python -m pytest tests/agents -n $(AGENT_WORKERS) --dist load $(PYTEST_ARGS)

unit: $(STAMP) ## Unit tests only
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP) ## Integration tests only (real git, real subprocesses, API test double)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

lint: $(STAMP) ## ruff, the import contracts (the layers) and mypy (the ports' Protocols)
	$(BIN)/ruff check operator tests bench scripts
	$(BIN)/ruff check --preview --select PLR0917 operator/gastown  # at most four positional parameters
	$(BIN)/python scripts/positional_calls.py operator/gastown tests bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

fmt: $(STAMP) ## Fix what ruff can fix
	$(BIN)/ruff check --fix operator tests bench

crds: $(STAMP) ## Regenerate crds/ from the API models
	$(BIN)/python -m gastown.api.crdgen crds charts/gastown/crds

crds-check: $(STAMP) ## Fail when crds/ drifted from the models
	$(BIN)/python -m gastown.api.crdgen crds charts/gastown/crds --check

run: $(STAMP) ## Run the operator against the current kubeconfig
	$(BIN)/gt operator run

bench: $(STAMP) ## Benchmarks: print figures (never part of `make test`)
	$(BIN)/python -m compileall -q operator/gastown >/dev/null  # `gt` as installed: its bytecode up to date
	$(BIN)/python bench/ledger_bench.py
	$(BIN)/python bench/scheduler_bench.py
	$(BIN)/python bench/idle_bench.py
	$(BIN)/python bench/refinery_bench.py
	$(BIN)/python bench/dogs_bench.py
	$(BIN)/python bench/witness_bench.py
	$(BIN)/python bench/failover_bench.py
	$(BIN)/python bench/operator_bench.py
	$(BIN)/python bench/cli_bench.py
	$(BIN)/python bench/dashboard_bench.py

demo: $(STAMP) ## A town on this machine builds a small library with scripted agents (DEMO_RUNTIME=claude: real ones)
	$(BIN)/python -m gastown.demo

# --- a local cluster with kind (needs Docker and kind) ------------------------------------------
KIND_CLUSTER ?= gastown
IMAGE_TAG    ?= dev
AGENTS       ?= claude
NAMESPACE    ?= gastown-system

kind-up: ## Create the kind cluster (kind-config.yaml: a control plane and an agents node)
	kind create cluster --name $(KIND_CLUSTER) --config kind-config.yaml

image: $(STAMP) ## Build the operator and agent images (AGENTS: runtime presets, e.g. AGENTS="claude omp")
	@$(BIN)/python -m gastown.runtimes.packages $(AGENTS) >/dev/null  # a name that is no preset fails here, not in docker
	docker build -f images/operator/Dockerfile -t gastown/operator:$(IMAGE_TAG) .
	docker build -f images/agent/Dockerfile --build-arg AGENTS="$(AGENTS)" -t gastown/agent:$(IMAGE_TAG) .

kind-load: image ## Load the images into the kind cluster
	kind load docker-image gastown/operator:$(IMAGE_TAG) gastown/agent:$(IMAGE_TAG) --name $(KIND_CLUSTER)

deploy: $(HELM) ## Install or upgrade the chart with the local images (CRDs applied first: Helm never upgrades them)
	kubectl apply --server-side --force-conflicts -f charts/gastown/crds/
	$(HELM) upgrade --install gastown charts/gastown --namespace $(NAMESPACE) --create-namespace \
	  --set image.tag=$(IMAGE_TAG) --set agentImage.tag=$(IMAGE_TAG) --wait
	$(HELM) test gastown --namespace $(NAMESPACE)

e2e: $(STAMP) $(HELM) ## The end-to-end suite against the cluster of KUBECONFIG (installs its own release)
	GT_E2E_IMAGE_TAG=$(IMAGE_TAG) $(BIN)/python -m pytest tests/e2e -rs $(PYTEST_ARGS)

kind-down: ## Delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .demo

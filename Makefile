# The front door. `make run` starts everything with demo data; `make test` runs every tier.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE := .run
# Tools built from source into a cache shared by every clone (Helm from the Go module proxy).
TOOLS_BIN := $(or $(PAYMENTS_CACHE_DIR),$(HOME)/.cache/payments-infra)/bin
HELM_VERSION := v3.22.0
HELM := $(TOOLS_BIN)/helm
export PAYMENTS_HELM := $(HELM)
# mypy --strict covers every package: the published language, the platform, each service, the client, and
# deploy/ (the runtime, the process launcher, the demo), which is on the path as scripts.
TYPED_PACKAGES := shared/contracts/src/payments_contracts shared/platform/src/payments_platform \
	$(wildcard services/*/src/*/__init__.py) \
	clients/python/src/payments_portal_client \
	deploy/runtime deploy/processes.py deploy/system.py deploy/run_demo.py

.PHONY: help install helm up down topics contracts lint imports typecheck test test-unit test-integration test-e2e chaos run services bench clean

help:
	@echo "make run     start Kafka, PostgreSQL, the services, the sandbox provider and the portal with demo data"
	@echo "make test    install what is missing and run every test tier on real infrastructure"
	@echo "make up|down start/stop only Kafka and PostgreSQL (endpoints in $(STATE)/env)"
	@echo "make services the four services (no demo) on PAYMENTS_KAFKA_BOOTSTRAP/PAYMENTS_DATABASE_URL or make up's"
	@echo "make topics  apply the topic registry      make contracts  regenerate JSON Schema/AsyncAPI/OpenAPI"
	@echo "make lint    ruff and the import contracts (.importlinter)   make typecheck  mypy --strict on every package"
	@echo "make chaos   the full fault suite (kills services, Kafka, PostgreSQL); prints its figures"
	@echo "make bench   every figure x3 in 15 min, CPU per process, anchors -> bench/results/<date>.md (--full: goal sizes)"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml uv.lock $(wildcard shared/*/pyproject.toml) clients/python/pyproject.toml $(wildcard services/*/pyproject.toml)
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	uv sync --frozen --all-packages --compile-bytecode
	@# Our own packages are editable installs, outside what uv compiles; with
	@# PYTHONDONTWRITEBYTECODE set, every start would compile them again.
	$(BIN)/python -m compileall -q $(wildcard shared/*/src) $(wildcard services/*/src)
	@touch $@

helm: $(HELM)

$(HELM):
	@command -v go >/dev/null 2>&1 || { echo "Go is needed to build Helm (go install)"; exit 1; }
	GOBIN=$(TOOLS_BIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

up:
	$(PYTHON) deploy/runtime up --state-dir $(STATE)

down:
	$(PYTHON) deploy/runtime down --state-dir $(STATE)

topics: install up
	source $(STATE)/env && $(BIN)/payments-topics

contracts: install
	$(BIN)/payments-contracts --out contracts
	$(BIN)/status-projector-ops openapi
	$(BIN)/python -m sandbox_provider.entrypoints.openapi
	$(BIN)/python -m payments_portal_client.generate
	$(BIN)/python -m demo_portal.entrypoints.asyncapi

lint: install imports
	$(BIN)/ruff check .

# The import contracts in .importlinter: domains free of I/O, services independent, layers.
imports: install
	$(BIN)/lint-imports --no-cache --no-logo

typecheck: install
	MYPYPATH=deploy $(BIN)/mypy --strict $(patsubst %/__init__.py,%,$(TYPED_PACKAGES))

# Kafka and PostgreSQL come from PAYMENTS_KAFKA_BOOTSTRAP / PAYMENTS_DATABASE_URL when
# set, else testcontainers when Docker answers, else fresh local ones for this run.
test: install lint imports typecheck helm
	$(BIN)/pytest tests clients/python/tests

test-unit: install helm
	$(BIN)/pytest tests/unit

test-integration: install
	$(BIN)/pytest tests/integration

test-e2e: install
	$(BIN)/pytest tests/e2e

# The whole system under kill -9 of service instances, the broker and PostgreSQL, with a
# bad-input flood; a short version of the same test runs inside `make test`.
chaos: install
	PAYMENTS_CHAOS=full $(BIN)/pytest tests/chaos -s

run: install
	$(BIN)/python deploy/run_demo.py --state-dir $(STATE)

# The sandbox provider and the three services, without the demo, honouring
# PAYMENTS_MERCHANT_CONFIG and every other setting in the environment (docs/settings.md).
services: install
	@if [ -z "$$PAYMENTS_KAFKA_BOOTSTRAP" ] && [ ! -f $(STATE)/env ]; then $(MAKE) up; fi
	$(BIN)/python deploy/services.py --state-dir $(STATE)

# Every figure 3 times with CPU per process and same-run anchors -> bench/results/<date>.md,
# within 15 minutes on 2 cores; BENCH_ARGS passes options (BENCH_ARGS="--full --scale": the
# goals' own sizes and the rebuild at 1M/5M/20M events; see bench/run.py --help).
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean: down
	rm -rf $(VENV) $(STATE) .pytest_cache .ruff_cache .mypy_cache

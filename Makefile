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
# Stripe's own mock server: the Stripe connectors' tests send every request to it.
STRIPE_MOCK_VERSION := v0.203.0
STRIPE_MOCK := $(TOOLS_BIN)/stripe-mock
export PAYMENTS_STRIPE_MOCK := $(STRIPE_MOCK)
# promtool checks and unit-tests the alerting rules (deploy/observability). The Go module is
# Prometheus's own (v0.316.0 is Prometheus 3.16.0). remove_all_sd leaves out the service
# discovery plugins (cloud SDKs) that checking rules never uses: on an empty module cache
# the download falls from over 1.8 GB to 964 MB, and the build to 203 s of CPU.
PROMTOOL_VERSION := v0.316.0
PROMTOOL := $(TOOLS_BIN)/promtool
export PAYMENTS_PROMTOOL := $(PROMTOOL)
# mypy --strict covers every package: the published language, the platform, each service, the client, and
# deploy/ (the runtime, the process launcher, the demo), which is on the path as scripts.
TYPED_PACKAGES := shared/contracts/src/payments_contracts shared/platform/src/payments_platform \
	$(wildcard services/*/src/*/__init__.py) \
	clients/python/src/payments_portal_client \
	deploy/runtime deploy/processes.py deploy/system.py deploy/run_demo.py

.PHONY: help install tools helm stripe-mock promtool up down topics contracts lint imports typecheck test test-unit test-integration test-e2e test-cluster chaos chaos-cluster run services bench clean

help:
	@echo "make run     start Kafka, PostgreSQL, the services, the sandbox provider and the portal with demo data"
	@echo "make test    install what is missing and run every test tier on real infrastructure"
	@echo "make up|down start/stop only Kafka and PostgreSQL (endpoints in $(STATE)/env)"
	@echo "make services the four services (no demo) on PAYMENTS_KAFKA_BOOTSTRAP/PAYMENTS_DATABASE_URL or make up's"
	@echo "make topics  apply the topic registry      make contracts  regenerate JSON Schema/AsyncAPI/OpenAPI"
	@echo "make lint    ruff and the import contracts (.importlinter)   make typecheck  mypy --strict on every package"
	@echo "make chaos   the full fault suite (kills services, Kafka, PostgreSQL); prints its figures"
	@echo "make chaos-cluster  the same on three brokers and a read replica (CHAOS_SECURE=1: SASL_SSL + ACLs)"
	@echo "make test-cluster   the walking skeleton on three brokers over SASL_SSL with ACLs"
	@echo "make up KAFKA_BROKERS=3 [KAFKA_SECURE=1] [PG_REPLICA=1]  the production topology locally"
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

stripe-mock: $(STRIPE_MOCK)

$(STRIPE_MOCK):
	@command -v go >/dev/null 2>&1 || { echo "Go is needed to build stripe-mock (go install)"; exit 1; }
	GOBIN=$(TOOLS_BIN) go install github.com/stripe/stripe-mock@$(STRIPE_MOCK_VERSION)

# The Go tools make test needs, built side by side: each is mostly module downloads, so
# three at once take little more than the longest.
tools:
	@$(MAKE) --no-print-directory -j3 helm stripe-mock promtool

promtool: $(PROMTOOL)

$(PROMTOOL):
	@command -v go >/dev/null 2>&1 || { echo "Go is needed to build promtool (go install)"; exit 1; }
	GOBIN=$(TOOLS_BIN) go install -tags remove_all_sd github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

# `make up KAFKA_BROKERS=3` runs the production topology (RF 3, min ISR 2); KAFKA_SECURE=1 adds
# SASL_SSL with ACLs (.run/kafka-<principal>.env), PG_REPLICA=1 a streaming replica for reads.
KAFKA_BROKERS ?= 1
up:
	$(PYTHON) deploy/runtime up --state-dir $(STATE) --kafka-brokers $(KAFKA_BROKERS) \
		$(if $(KAFKA_SECURE),--kafka-secure) $(if $(PG_REPLICA),--replica)

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
test: install lint imports typecheck tools
	$(BIN)/pytest tests clients/python/tests

test-unit: install helm promtool
	$(BIN)/pytest tests/unit

test-integration: install stripe-mock
	$(BIN)/pytest tests/integration

test-e2e: install
	$(BIN)/pytest tests/e2e

# The walking skeleton on three brokers over SASL_SSL with ACLs (also part of `make test`).
test-cluster: install
	$(BIN)/pytest tests/e2e/test_secure_cluster.py

# The whole system under kill -9 of service instances, the broker and PostgreSQL, with a
# bad-input flood; a short version of the same test runs inside `make test`.
chaos: install
	PAYMENTS_CHAOS=full $(BIN)/pytest tests/chaos -s

# The same faults on the production topology: three brokers (each killed in turn, the
# controller first, then a rolling restart of all) and a streaming replica for reads;
# CHAOS_SECURE=1 puts every client on SASL_SSL with ACLs.
chaos-cluster: install
	PAYMENTS_CHAOS=full PAYMENTS_CHAOS_BROKERS=3 PAYMENTS_CHAOS_SECURE=$(if $(CHAOS_SECURE),1,0) \
		$(BIN)/pytest tests/chaos/test_faults.py -s

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

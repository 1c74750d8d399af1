# The front door. `make run` starts everything with demo data; `make test` runs every tier.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE := .run
DOMAIN_PACKAGES := shared/src/payments_shared/domain \
	services/invoice-sync/src/invoice_sync/domain \
	services/payment-intake/src/payment_intake/domain \
	services/status-projector/src/status_projector/domain

.PHONY: help install up down topics contracts lint typecheck test test-unit test-integration test-e2e run bench clean

help:
	@echo "make run     start Kafka, PostgreSQL, the services and the sandbox provider with demo data"
	@echo "make test    install what is missing and run every test tier on real infrastructure"
	@echo "make up|down start/stop only Kafka and PostgreSQL (endpoints in $(STATE)/env)"
	@echo "make topics  apply the topic registry      make contracts  regenerate JSON Schema/AsyncAPI/OpenAPI"
	@echo "make bench   benchmarks -> bench/results.jsonl"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml uv.lock shared/pyproject.toml $(wildcard services/*/pyproject.toml)
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	uv sync --frozen --all-packages
	@touch $@

up:
	$(PYTHON) deploy/runtime.py up --state-dir $(STATE)

down:
	$(PYTHON) deploy/runtime.py down --state-dir $(STATE)

topics: install up
	source $(STATE)/env && $(BIN)/payments-topics

contracts: install
	$(BIN)/payments-contracts --out contracts
	$(BIN)/status-projector-ops openapi --out contracts/openapi/status-projector.json
	$(BIN)/python -m sandbox_provider.entrypoints.openapi

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy --strict $(DOMAIN_PACKAGES)

# Kafka and PostgreSQL come from PAYMENTS_KAFKA_BOOTSTRAP / PAYMENTS_DATABASE_URL when
# set, else testcontainers when Docker answers, else fresh local ones for this run.
test: install lint typecheck
	$(BIN)/pytest tests

test-unit: install
	$(BIN)/pytest tests/unit

test-integration: install
	$(BIN)/pytest tests/integration

test-e2e: install
	$(BIN)/pytest tests/e2e

run: install
	$(BIN)/python deploy/demo.py --state-dir $(STATE)

bench: install
	$(BIN)/python bench/run.py

clean: down
	rm -rf $(VENV) $(STATE) .pytest_cache .ruff_cache .mypy_cache

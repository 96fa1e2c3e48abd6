# One target per developer action. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: help install dev test lint format typecheck unit docker-test e2e inference-image migrate \
        up up-offline up-standin down offline-images export-images load-images build-metrics bench lock clean

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): api/pyproject.toml cli/pyproject.toml flows/requirements.txt tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e 'api[dev]' -e cli -r flows/requirements.txt \
	  -r tests/requirements.txt
	touch $@

install: $(STAMP) ## Create .venv: the API, the CLI, dev tools, Ultralytics (Local orchestrator)

HOST ?= 127.0.0.1
PORT ?= 8000

dev: $(STAMP) ## Run the API on $(HOST):$(PORT) with SQLite, the Local orchestrator and no API keys (no Docker)
	PYTHONPATH=api $(PY) -m app.bootstrap
	REQUIRE_API_KEYS=false $(PY) -m uvicorn --app-dir api app.main:app --host $(HOST) --port $(PORT)

lint: $(STAMP) ## ruff check + ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: $(STAMP) ## mypy (strict) on the app, the CLI, the flow script and the tooling (tests, bench, scripts)
	$(VENV)/bin/mypy

unit: $(STAMP) ## The test suite without lint and types
	$(PY) -m pytest

test: lint typecheck unit ## Everything CI runs: lint, types, all tests (Docker tests included)

docker-test: $(STAMP) ## The Docker tests alone (image build, hardening, compose)
	$(PY) -m pytest tests/docker

e2e: $(STAMP) ## The end-to-end tests alone: the stack under compose, the Kestra stand-in, inference containers
	$(PY) -m pytest tests/e2e

inference-image: ## Build the offline inference image yolo-inference:local (Debian's CPU PyTorch + Ultralytics)
	docker/inference/build.sh

migrate: $(STAMP) ## Apply the Alembic migrations to DATABASE_URL (and lay out SHARED_DATA_DIR)
	PYTHONPATH=api $(PY) -m app.bootstrap

# Builds behind a TLS-inspecting proxy need the system's CA bundle: compose hands it to the
# API build as a BuildKit secret (never a layer) unless BUILD_CA_BUNDLE names another one.
export SYSTEM_CA_BUNDLE := $(wildcard /etc/ssl/certs/ca-certificates.crt)
OFFLINE := -f docker-compose.yml -f docker-compose.offline.yml
# Development only: tests/e2e's override swaps Kestra for the test stand-in (tests/support).
STANDIN := $(OFFLINE) -f tests/e2e/docker-compose.e2e.yml
STANDIN_INFERENCE_IMAGE := yolo-inference:fixture-weights

up: ## docker compose up (the whole stack)
	docker compose up -d --build --wait

up-offline: ## docker compose up with the local stand-in images (no registry; see offline-images)
	docker compose $(OFFLINE) up -d --build --wait
	@echo "api and postgres are up, Kestra is not: uploads wait, queued (README: No registry)."

up-standin: ## Development only: up-offline plus the Kestra *test stand-in*, which runs real inference containers with the fixture model
	docker/inference/build.sh
	. docker/lib.sh && pick_docker_client && $$DOCKER build -q -t $(STANDIN_INFERENCE_IMAGE) \
	  --build-arg MODEL_NAME=shapes.pt -f tests/e2e/inference-weights/Dockerfile tests/fixtures/model
	INFERENCE_IMAGE=$(STANDIN_INFERENCE_IMAGE) MODEL=shapes.pt docker compose $(STANDIN) up -d --build --wait

down: ## Stop the stack, the stand-in too (volumes are kept)
	docker compose $(STANDIN) down

ARCHIVE ?= yolo-stack-images.tar

export-images: ## Save every image the stack needs into ARCHIVE (+ manifest, ARCHIVE.sha256); names what this engine lacks
	$(PYTHON) scripts/airgap.py export $(ARCHIVE)

load-images: ## On an offline host: check and docker-load ARCHIVE, then start the stack from it (nothing built or pulled)
	$(PYTHON) scripts/airgap.py load $(ARCHIVE)

offline-images: ## Build stand-ins for python:3.13-slim and postgres:17 from Debian (root, debootstrap)
	docker/offline/build-images.sh

build-metrics: $(STAMP) ## Build api/Dockerfile and a naive Dockerfile side by side; print the table
	$(PY) -m scripts.build_metrics

bench: $(STAMP) ## The four benchmark tables (upload path, inference pipeline, build metrics, cold start); see BENCHMARKS.md
	$(PY) -m bench.upload_bench
	$(PY) -m bench.pipeline_bench
	$(PY) -m scripts.build_metrics
	$(PY) -m bench.cold_start

lock: $(STAMP) ## Re-pin the API's dependencies for the Docker build (api/requirements.lock)
	$(PY) -m pip install --quiet uv
	cd api && ../$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.13 \
	  --python-platform linux --no-annotate -o requirements.lock

clean: ## Remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache

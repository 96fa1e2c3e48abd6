# One target per developer action. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: help install dev test lint format typecheck unit docker-test e2e inference-image migrate \
        up up-offline down offline-images build-metrics bench lock clean

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

typecheck: $(STAMP) ## mypy (strict) on the API
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

up: ## docker compose up (the whole stack)
	docker compose up -d --wait

up-offline: ## docker compose up with the local stand-in images (no registry; see offline-images)
	docker compose -f docker-compose.yml -f docker-compose.offline.yml up -d --wait

down: ## Stop the stack (volumes are kept)
	docker compose down

offline-images: ## Build stand-ins for python:3.13-slim and postgres:17 from Debian (root, debootstrap)
	docker/offline/build-images.sh

build-metrics: $(STAMP) ## Build api/Dockerfile and a naive Dockerfile side by side; print the table
	$(PY) scripts/build_metrics.py

bench: $(STAMP) ## The three benchmark tables (upload path, inference pipeline, build metrics); see BENCHMARKS.md
	$(PY) bench/upload_bench.py
	$(PY) bench/pipeline_bench.py
	$(PY) scripts/build_metrics.py

lock: $(STAMP) ## Re-pin the API's dependencies for the Docker build (api/requirements.lock)
	$(PY) -m pip install --quiet uv
	cd api && ../$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.13 \
	  --python-platform linux --no-annotate -o requirements.lock

clean: ## Remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache

# One target per developer action. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: help install dev test lint format typecheck unit migrate up down \
        offline-images build-metrics lock clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): api/pyproject.toml flows/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e 'api[dev]' -r flows/requirements.txt -r tests/requirements.txt
	touch $@

install: $(STAMP) ## Create .venv with the API, dev tools and Ultralytics (for the Local orchestrator)

dev: $(STAMP) ## Run the API on 127.0.0.1:8000 with SQLite and the Local orchestrator (no Docker)
	cd api && ../$(PY) -m app.bootstrap
	cd api && LOCAL_DETECT_SCRIPT=../flows/detect.py SHARED_DATA_DIR=../shared-data \
	  DATABASE_URL=sqlite:///../shared-data/dev.sqlite3 LOG_JSON=false \
	  ../$(PY) -m uvicorn app.main:app --host 127.0.0.1 --port 8000

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

migrate: $(STAMP) ## Apply the Alembic migrations to DATABASE_URL
	cd api && ../$(PY) -m alembic upgrade head

up: ## docker compose up (the whole stack)
	docker compose up -d --wait

down: ## Stop the stack (volumes are kept)
	docker compose down

clean: ## Remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache

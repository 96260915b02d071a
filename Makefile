# Everything runs from .venv at the repository root.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test typecheck install install-dev bench serve worker clean openapi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

install: $(STAMP)
install-dev: $(DEV_STAMP)

## The embedded-default demo: SQLite studio.db, migrated, seeded, one booking walked through, dashboard.
demo: $(DEV_STAMP)
	$(BIN)/studioctl db upgrade
	$(BIN)/studioctl seed demo --skip-if-seeded
	$(BIN)/python -m demo.walkthrough
	$(BIN)/studioctl dashboard today

## The whole test suite: SQLite always, PostgreSQL and Redis when reachable (required under CI=true).
## The static checks first (`make typecheck`). Two pytest-xdist workers, one test file per
## worker at a time (`--dist loadfile`: a file's module fixtures and servers stay in one process).
test: typecheck
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

## Static checks, before the tests: lint and format (ruff), types (mypy: workers/ against
## stripe-python's generated parameter types, and models/), one-way layers (import-linter).
typecheck: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

## The OpenAPI document checked in for the app developers (tests/test_openapi_file.py keeps it true).
openapi: $(STAMP)
	$(BIN)/python -m webapi.openapi_file

bench: $(DEV_STAMP)
	$(BIN)/python -m bench.run_all

serve: $(STAMP)
	$(BIN)/studioctl serve

worker: $(STAMP)
	$(BIN)/studioctl worker

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis outbox studio.db studio-huey.db

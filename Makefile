# The README's commands. `.ci/run` calls `make test` unchanged.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= WARNING

.PHONY: demo test services lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Run migrations, synthetic data and every flow on the embedded default (no servers needed).
demo: $(STAMP)
	$(BIN)/steward demo

## Make sure PostgreSQL and Redis run, then run the whole test suite.
test: $(STAMP) services
	$(BIN)/python -m pytest -q

services:
	bash scripts/ensure-services.sh

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP) services
	$(BIN)/python -m bench

clean:
	rm -rf .steward $(VENV)

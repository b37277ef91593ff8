# The README's commands. `.ci/run` calls `make test` unchanged.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= WARNING

.PHONY: demo test services lint bench clean venv prefect-server deploy

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Run migrations, synthetic data and every flow on the embedded default (no servers needed).
demo: $(STAMP)
	$(BIN)/steward demo

## Create .venv with Steward installed (the deploy commands use .venv/bin/...).
venv: $(STAMP)

## Start a Prefect server on the machine's PostgreSQL, in its own database (see the script).
prefect-server: $(STAMP)
	bash scripts/prefect-server.sh

## Register the steward work pool and every deployment on the server at PREFECT_API_URL.
deploy: $(STAMP)
	@test -n "$$PREFECT_API_URL" || { echo "make deploy: set PREFECT_API_URL to the server's API, e.g. http://prefect.internal:4200/api" >&2; exit 2; }
	$(BIN)/prefect work-pool inspect steward >/dev/null 2>&1 || $(BIN)/prefect work-pool create steward --type process
	$(BIN)/prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml

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

# payql: `make serve` runs the service, `make test` runs the suite. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: serve test lock lint format demo migrate apollo-deps bench bench-replicas bench-payouts bench-scale bench-webhooks clean

RUNTIME_STAMP := $(VENV)/.installed-runtime
# Pinned with hashes (pip-tools): requirements/runtime.txt for `make serve`, requirements/test.txt (the same runtime
# versions plus the test tools) for `make test`. `make lock` re-resolves both from pyproject.toml.
PIP_LOCKED := $(BIN)/python -m pip install --quiet --require-hashes --no-deps
PIP_PROJECT := $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
LOCK := pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --all-build-deps \
	--no-emit-index-url --no-emit-find-links

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements/runtime.txt pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r requirements/runtime.txt
	$(PIP_PROJECT)
	touch $(RUNTIME_STAMP)

$(STAMP): requirements/test.txt pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r requirements/test.txt
	$(PIP_PROJECT)
	touch $(STAMP) $(RUNTIME_STAMP)

serve: $(RUNTIME_STAMP)
	$(BIN)/payql serve

migrate: $(RUNTIME_STAMP)
	$(BIN)/payql migrate

demo: $(RUNTIME_STAMP)
	$(BIN)/payql demo

# Re-resolve the locks after a change to pyproject.toml's dependencies (or to take updates); commit both files.
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/$(LOCK) --output-file=requirements/runtime.txt pyproject.toml
	$(BIN)/$(LOCK) --extra test --output-file=requirements/test.txt pyproject.toml

# @apollo/client for tests/e2e/test_apollo_cache.py (README's typePolicies run in Node): installed once from the
# lockfile; without npm the test fails and says why.
APOLLO := tests/apollo
apollo-deps:
	@if [ -d $(APOLLO)/node_modules ]; then :; \
	elif command -v npm >/dev/null 2>&1; then cd $(APOLLO) && npm ci --no-audit --no-fund; \
	else echo "npm not found: tests/e2e/test_apollo_cache.py needs Node 20+ and npm" >&2; fi

# the GraphiQL browser test needs a headless Chromium (tests/browser.py; CHROMIUM=<path> to use another)
test: $(STAMP) apollo-deps
	@command -v chromium >/dev/null || [ -n "$(CHROMIUM)" ] || apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null) || echo "make: could not install chromium; the GraphiQL browser test will fail and say so" >&2
	$(BIN)/ruff check payql tests bench
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check payql tests bench
	$(BIN)/ruff format --check payql tests
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format payql tests
	$(BIN)/ruff check --fix payql tests

clean:
	rm -rf $(VENV) $(APOLLO)/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis payql.db payql.db-wal payql.db-shm

bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get install -y -q wrk >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null))
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Two replicas behind HAProxy on PostgreSQL and Redis (BENCH_DATABASE_URL, default a fresh local database).
bench-replicas: $(STAMP)
	@command -v wrk >/dev/null || (apt-get install -y -q wrk >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null))
	@command -v haproxy >/dev/null || (apt-get install -y -q haproxy >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q haproxy >/dev/null))
	$(BIN)/python bench/replicas.py $(BENCH_ARGS)

# Webhook ingestion on PostgreSQL, 2 workers, 32 concurrent deliveries (BENCH_DATABASE_URL: a database it wipes).
bench-webhooks: $(STAMP)
	$(BIN)/python bench/webhooks_pg.py $(BENCH_ARGS)

bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py $(BENCH_ARGS)

# the weekly payout run at scale against the Stripe fake with 50 ms per request (BENCH_DATABASE_URL for PostgreSQL)
bench-payouts: $(STAMP)
	$(BIN)/python bench/payouts.py $(BENCH_PAYOUTS_ARGS)

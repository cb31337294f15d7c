# payql: `make serve` runs the service, `make test` runs the suite. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: serve test lint format demo migrate apollo-deps bench bench-replicas bench-payouts bench-scale bench-webhooks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/payql serve

migrate: $(STAMP)
	$(BIN)/payql migrate

demo: $(STAMP)
	$(BIN)/payql demo

# @apollo/client for tests/e2e/test_apollo_cache.py (README's typePolicies run in Node): installed once from the
# lockfile; without npm the test fails and says why.
APOLLO := tests/apollo
apollo-deps:
	@if [ -d $(APOLLO)/node_modules ]; then :; \
	elif command -v npm >/dev/null 2>&1; then cd $(APOLLO) && npm ci --no-audit --no-fund; \
	else echo "npm not found: tests/e2e/test_apollo_cache.py needs Node 20+ and npm" >&2; fi

test: $(STAMP) apollo-deps
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

# Each target sets itself up on a fresh machine: the virtualenv, the install, the brokers.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench brokers clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "bus needs Python 3.11+; run make PYTHON=python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m services.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

brokers:
	@tools/ensure-rabbitmq.sh

test: $(STAMP) lint brokers
	@tools/ensure-postgres.sh
	@tools/ensure-chromium.sh
	$(PY) -m pytest
	$(PY) -m pytest tests/services/test_flow.py tests/services/test_shop_on_testbus.py --bus-url "amqp://guest:guest@127.0.0.1:5672/?exchange=bus-kit-$$(date +%s%N)"

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

# The one harness, FastStream beside it; e.g. make bench BENCH_ARGS="--adapters kafka --scenarios consume"
BENCH_ARGS ?=
bench: $(BENCH_STAMP) brokers
	$(PY) -m benchmarks --peers $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

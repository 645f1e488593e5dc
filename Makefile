# cemesh: the two commands are `make run` and `make test`; both bootstrap .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FUNCTION_REQS := $(wildcard functions/*/pyproject.toml functions/*/package.json functions/*/package-lock.json)

.PHONY: install run test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(FUNCTION_REQS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python scripts/function_deps.py | xargs -r $(BIN)/python -m pip install --quiet
	$(BIN)/python -m gateway.hosting.node install functions
	touch $(STAMP)

run: install
	$(BIN)/cemesh up

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not connected and not e2e"

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache

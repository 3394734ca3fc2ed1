# TrackFlow: `make dev` runs the whole pipeline locally, `make test` runs the suite.
# Every target sets up what it needs first (a .venv with the pinned requirements).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help setup dev test lint bench package clean

help:
	@echo "make dev      set up, then run broker + collect API + trigger runner + chDB (Ctrl-C stops)"
	@echo "make test     set up, then lint and run the whole test suite"
	@echo "make bench    set up, then run the benchmarks (table + bench/latest.json)"
	@echo "make package  build the Lambda bundle and CloudFormation template into build/"
	@echo "make clean    remove .venv, build/ and local data (.trackflow/)"

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

setup: $(STAMP)

dev: setup
	$(BIN)/trackflow dev

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app.py chalicelib trackflow bench

test: lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python -m bench

package: setup
	rm -rf build/package
	$(BIN)/chalice package --stage prod --merge-template infra/kafka-trigger.json build/package

clean:
	rm -rf $(VENV) build .trackflow .pytest_cache .mypy_cache .ruff_cache

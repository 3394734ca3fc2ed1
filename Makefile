# TrackFlow: `make dev` runs the whole pipeline locally, `make test` runs the suite.
# Every target sets up what it needs first: a .venv with the pinned Python
# requirements, the tracker's npm packages and build, and (for the browser
# tests) Debian's chromium.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TRACKER_JS := tracker/dist/tracker.js
NODE_STAMP := tracker/node_modules/.installed
DASHBOARD_PAGE := dashboard/dist/index.html
DASHBOARD_STAMP := dashboard/node_modules/.installed

# The Lambda runtime as AWS runs a handler: the Runtime Interface Emulator (a Go
# module) in front of awslambdaric, for python3.12 (the bundle's runtime).
RIE := $(BIN)/aws-lambda-rie
RIE_MODULE := github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d
LAMBDA_RUNTIME := build/lambda-runtime
LAMBDA_RUNTIME_STAMP := $(LAMBDA_RUNTIME)/.installed

# checkov (one of AWS's rule sets for the template) pins versions the project's own
# venv cannot hold, so it gets a venv of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov

.PHONY: help setup tracker dashboard chromium lambda-runtime checkov dev kafka up test lint bench faults package clean

help:
	@echo "make dev      set up, then run broker + collect API + trigger runner + chDB + tracker/demo (Ctrl-C stops)"
	@echo "make kafka    run Apache Kafka (KRaft, from Maven Central; needs java + mvn) on 127.0.0.1:9092, durable in .trackflow/kafka"
	@echo "make up       start Apache Kafka + ClickHouse + moto in Docker (infra/docker-compose.yml), if you have Docker"
	@echo "make test     set up, then lint and run the whole test suite"
	@echo "make bench    set up, then run the benchmarks (table + bench/latest.json)"
	@echo "make faults   set up, then break things under load (table in docs/reliability.md + bench/faults.json)"
	@echo "make tracker  build tracker/dist/ (the core, its variants, the ES modules; TRACKFLOW_ENDPOINT=... bakes in another API URL)"
	@echo "make dashboard build dashboard/dist/index.html (one static page, uPlot bundled)"
	@echo "make lambda-runtime  build the Lambda Runtime Interface Emulator (Go) and awslambdaric for python3.12 (make test does)"
	@echo "make package  build the Lambda bundle (python3.12; ARCH=x86_64 or arm64) and template into build/package"
	@echo "make clean    remove .venv, node_modules, build output and local data (.trackflow/); says what stays in ~"

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the pinned Python requirements into $(VENV) (the first time takes a few minutes: chDB alone is about 200 MB)"
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

setup: $(STAMP) $(TRACKER_JS) $(DASHBOARD_PAGE)

$(NODE_STAMP): tracker/package.json tracker/package-lock.json
	cd tracker && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(TRACKER_JS): $(NODE_STAMP) $(wildcard tracker/src/*.js) tracker/build.mjs
	cd tracker && npm run --silent build

tracker: $(NODE_STAMP)
	cd tracker && npm run --silent build

$(DASHBOARD_STAMP): dashboard/package.json dashboard/package-lock.json
	cd dashboard && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(DASHBOARD_PAGE): $(DASHBOARD_STAMP) $(wildcard dashboard/src/*) dashboard/build.mjs
	cd dashboard && npm run --silent build

dashboard: $(DASHBOARD_STAMP)
	cd dashboard && npm run --silent build

# The browser tests drive Debian's chromium; Playwright's own download is never used.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

$(RIE):
	@command -v go >/dev/null 2>&1 || { echo "the Lambda runtime tests need Go (go install $(RIE_MODULE))"; exit 1; }
	GOBIN=$(abspath $(BIN)) go install $(RIE_MODULE)

$(LAMBDA_RUNTIME_STAMP): infra/lambda-runtime.txt $(STAMP)
	rm -rf $(LAMBDA_RUNTIME)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --target $(LAMBDA_RUNTIME) \
		--implementation cp --python-version 3.12 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		--only-binary=:all: -r infra/lambda-runtime.txt
	@touch $@

$(CHECKOV): infra/checkov-requirements.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@echo "installing checkov into $(CHECKOV_VENV) (once)"
	$(CHECKOV_VENV)/bin/python -m pip install --disable-pip-version-check -r infra/checkov-requirements.txt
	@touch $@

checkov: $(CHECKOV)

# The emulator and awslambdaric that tests/integration/test_lambda_runtime.py runs the bundle under.
lambda-runtime: $(RIE) $(LAMBDA_RUNTIME_STAMP)

dev: setup
	$(BIN)/trackflow dev

kafka: $(STAMP)
	$(BIN)/trackflow kafka

up:
	@docker compose version >/dev/null 2>&1 || { echo "make up needs Docker with its compose plugin. Without Docker: make kafka (Apache Kafka from Maven Central), and make dev's embedded ClickHouse."; exit 1; }
	docker compose -f infra/docker-compose.yml up -d
	@echo "Use them: export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 CLICKHOUSE_URL=http://127.0.0.1:8123; .venv/bin/trackflow migrate; make dev"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app.py chalicelib trackflow bench

# The suite runs in two processes, whole modules each (pytest-xdist): on 2 cores 724 and 750 s of
# pytest in two clean-clone runs of .ci/run, against 934 s in one process (TEST_WORKERS=0) on a
# quieter day of the same machine.
TEST_WORKERS ?= 2
test: setup chromium lambda-runtime checkov lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

bench: setup
	$(BIN)/python -m bench

faults: setup
	$(BIN)/python -m bench.faults

ARCH ?= x86_64
package: $(STAMP)
	$(BIN)/trackflow package --arch $(ARCH) --out build/package

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build tracker/node_modules tracker/dist dashboard/node_modules dashboard/dist .trackflow .pytest_cache .mypy_cache .ruff_cache
	@echo "removed the venvs, node_modules, build output and local data (.trackflow/)."
	@echo "left in your home directory, shared with other projects (remove them yourself if you like):"
	@echo "  ~/.calfkit/bin      the embedded broker's binary (rm -rf ~/.calfkit)"
	@echo "  ~/.m2/repository    Apache Kafka's jars from Maven Central (rm -rf ~/.m2/repository/org/apache/kafka)"
	@echo "  Go's module cache   the Lambda runtime emulator's sources (go clean -modcache)"
	@echo "  pip's and npm's caches (pip cache purge; npm cache clean --force)"

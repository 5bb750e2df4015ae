# Every target sets up what it needs: a fresh clone runs `make run` or `make test` directly.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
PROTOS := $(wildcard proto/sluice/v1/*.proto)
TS := clients/typescript
WEB := clients/web
# The web view's build, served by the server on SLUICE_HTTP_LISTEN (not committed).
WEB_STATIC := server/sluice/web/static
WEB_SOURCES := $(shell find $(WEB)/src -type f 2>/dev/null) $(WEB)/index.html $(WEB)/vite.config.ts \
	$(WEB)/tsconfig.json $(shell find $(TS)/src/gen -name '*.ts' 2>/dev/null)

POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test

.PHONY: help run test test-postgres lint breaking fmt proto check-generated bench bench-quick bench-postgres bench-analytics bench-peers clean web chromium typescript

help:
	@echo "make run     start the server on 127.0.0.1:50051 with the SQLite store in ./var/"
	@echo "            (SLUICE_HTTP_LISTEN=127.0.0.1:8080 make run: the web view there too)"
	@echo "make web    build the web view (clients/web) into $(WEB_STATIC)"
	@echo "make typescript  build the TypeScript client and its example worker into $(TS)/dist"
	@echo "make test    run the whole test suite"
	@echo "make test-postgres  the end-to-end and durability tests on PostgreSQL (POSTGRES_URL)"
	@echo "make lint    ruff, mypy and buf lint"
	@echo "make proto   regenerate generated/ from proto/"
	@echo "make bench   the benchmark suite (several minutes); bench-quick for a smoke run"
	@echo "make bench-postgres  Sluice on PostgreSQL beside SQLite and DBOS on PostgreSQL, 3 rounds"
	@echo "make bench-analytics  GetAnalytics over 1,000,000 runs on SQLite and PostgreSQL (~15 min)"
	@echo "make bench-peers  install DBOS and Temporal into bench/.peers-venv for comparison"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(TS)/node_modules/.installed: $(TS)/package.json $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB)/node_modules/.installed: $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Rebuilt when its sources or the generated TypeScript change.
$(WEB_STATIC)/.built: $(WEB)/node_modules/.installed $(WEB_SOURCES)
	cd $(WEB) && npm run --silent build -- --logLevel warn
	touch $@

web: $(WEB_STATIC)/.built

# The browser tests (tests/browser) drive Debian's chromium: installed here where missing.
chromium:
	@command -v chromium >/dev/null || { echo "installing chromium (Debian) for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: $(VENV)/.installed web
	$(VENV)/bin/sluice serve

# The TypeScript client and its example worker (dist/examples/worker.js).
typescript: $(TS)/node_modules/.installed
	cd $(TS) && npm run --silent build

# The TypeScript client is built first: tests/e2e/test_typescript_worker.py runs its example worker.
test: $(VENV)/.installed node_modules/.installed typescript web chromium
	$(PY) -m pytest -n auto
	cd $(TS) && npm test --silent

# Each test gets a fresh database on that server (created and dropped by the fixture).
test-postgres: $(VENV)/.installed node_modules/.installed
	SLUICE_TEST_DATABASE_URL=$(POSTGRES_URL) $(PY) -m pytest tests/e2e tests/durability tests/integration

lint: $(VENV)/.installed node_modules/.installed $(TS)/node_modules/.installed $(WEB)/node_modules/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(BUF) lint proto
	$(MAKE) --no-print-directory breaking
	cd $(TS) && npx --offline tsc -p tsconfig.json --noEmit
	cd $(WEB) && npx --offline tsc -p tsconfig.json --noEmit

# The contracts may grow but not break: compare proto/ with the parent commit's.
breaking: node_modules/.installed
	@if git rev-parse -q --verify HEAD~1 >/dev/null; then \
		$(BUF) breaking proto --against '.git#subdir=proto,ref=HEAD~1' && echo "buf breaking: no breaking change against HEAD~1"; \
	else echo "buf breaking: no parent commit to compare with"; fi

fmt: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

proto: $(VENV)/.installed node_modules/.installed $(TS)/node_modules/.installed
	$(BUF) lint proto
	rm -rf generated/sluice
	mkdir -p generated
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iproto \
		--python_out=generated --grpc_python_out=generated \
		--mypy_out=generated --mypy_grpc_out=generated \
		$(PROTOS)
	cd $(TS) && npm run --silent generate

# CI: fails when the committed generated code differs from what `make proto` writes.
check-generated: proto
	git diff --exit-code --stat -- generated $(TS)/src/gen
	test -z "$$(git status --porcelain -- generated $(TS)/src/gen)"

# Benchmarks: not part of `make test`. Figures go to bench/results/latest.md. The PostgreSQL
# scenarios create (and drop) their own databases on POSTGRES_URL's server.
bench: $(VENV)/.installed
	SLUICE_BENCH_POSTGRES=$(POSTGRES_URL) $(PY) -m bench.run $(BENCH_ARGS)

bench-quick: $(VENV)/.installed
	SLUICE_BENCH_POSTGRES=$(POSTGRES_URL) $(PY) -m bench.run --quick

# Sluice on PostgreSQL beside Sluice on SQLite and DBOS on PostgreSQL, interleaved, to
# bench/results/postgres.md; BENCH_ARGS="--replicas 1,2,3" adds 2 and 3 servers on one database.
bench-postgres: $(VENV)/.installed
	SLUICE_BENCH_POSTGRES=$(POSTGRES_URL) $(PY) -m bench.run --only postgres --rounds 3 \
		--output bench/results/postgres.md $(BENCH_ARGS)

# GetAnalytics over 1,000,000 runs written straight into a SQLite file and a PostgreSQL database
# on POSTGRES_URL's server (created and dropped), to bench/results/analytics.md;
# BENCH_ARGS="--runs 100000" for a shorter run.
bench-analytics: $(VENV)/.installed
	SLUICE_BENCH_POSTGRES=$(POSTGRES_URL) $(PY) -m bench.analytics $(BENCH_ARGS)

bench-peers:
	PYTHON=$(PYTHON) bench/install_peers.sh

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .mypy_cache .ruff_cache $(TS)/node_modules $(TS)/dist \
		$(WEB)/node_modules $(WEB_STATIC) tests/output

# opencomms: `make demo` runs the platform, `make test` runs the whole suite. Both bootstrap from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: deps system-deps web compiled test lint typecheck unit demo cluster bench bench-security bench-meetings fuzz serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[server,dev]'
	touch $(STAMP)

system-deps:
	@bash scripts/ensure-system-deps.sh

deps: system-deps $(STAMP)

# the browser client (JsSIP) bundled into src/opencomms/web/static/{call,meeting}.js (not committed; no CDN at run time)
WEB := src/opencomms/web/client
web: $(WEB)/node_modules/.package-lock.json
	cd $(WEB) && npm run --silent build

$(WEB)/node_modules/.package-lock.json: $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund

# the compiled media path: the modules in src/opencomms/_compiled/modules.txt, compiled with mypyc (a dev/build
# requirement) into build/compiled/ (not committed); a no-op when current. OPENCOMMS_COMPILED=0 runs pure Python.
compiled: deps
	$(BIN)/python -m opencomms._compiled.build

lint: deps
	$(BIN)/ruff check src tests bench $(wildcard examples)
	$(BIN)/ruff format --check src tests bench $(wildcard examples)

typecheck: deps
	$(BIN)/mypy

unit: deps compiled
	$(BIN)/pytest -q tests/unit

test: lint typecheck web compiled
	$(BIN)/pytest -q -p no:cacheprovider

demo: deps web compiled
	$(BIN)/python -m opencomms.demo

# a local cluster: redis-server, Kamailio and NODES nodes on loopback (Ctrl-C stops them)
NODES ?= 3
cluster: deps compiled
	$(BIN)/opencomms cluster up --nodes $(NODES)

bench: deps compiled
	$(BIN)/python bench/run.py

bench-security: deps compiled
	$(BIN)/python bench/run.py --only security

bench-meetings: deps compiled
	$(BIN)/python bench/run.py --only meetings

fuzz: deps
	$(BIN)/python bench/fuzz_sip.py --sip 1000000 --sdp 100000

clean:
	rm -rf $(VENV) build/compiled build/compiled-tmp .pytest_cache .mypy_cache .ruff_cache var $(WEB)/node_modules src/opencomms/web/static

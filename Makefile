# perfmon: `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
CARGO ?= cargo
VENV := .venv
VENV_STAMP := $(VENV)/.installed
# Every Node.js fixture (a fixtures/* directory with a package-lock.json), installed with npm ci.
NODE_FIXTURES := $(patsubst %/package-lock.json,%,$(wildcard fixtures/*/package-lock.json))
NODE_STAMPS := $(addsuffix /node_modules/.installed,$(NODE_FIXTURES))
# The TypeScript examples (examples/*/package-lock.json): npm ci, then tsc into examples/*/dist.
NODE_EXAMPLES := $(patsubst %/package-lock.json,%,$(wildcard examples/*/package-lock.json))
NODE_STAMPS += $(addsuffix /dist/.built,$(NODE_EXAMPLES))
# Root runs apt-get directly; anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The Node.js fixture is prepared by `make test` only where node is installed.
HAVE_NODE := $(shell command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && echo yes)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-8s %s\n", $$1, $$2}'

# apt-get, one at a time: `make test` prepares its parts side by side, and two apt-gets at once fail on
# dpkg's lock (flock queues them; the lock timeout covers an apt-get started outside make).
APT := flock /tmp/perfmon-apt.lock $(SUDO) apt-get -o DPkg::Lock::Timeout=600
# apt-get install PACKAGES (only where a target needs them; on a machine without apt-get, say what is missing).
define apt_install
	{ command -v apt-get >/dev/null 2>&1 || { echo "missing, and no apt-get to install it: $(1)" >&2; exit 1; }; \
	  echo "installing $(1) with apt-get"; \
	  $(APT) install -y -q $(1) >/dev/null 2>&1 || { $(APT) update -q >/dev/null && $(APT) install -y -q $(1) >/dev/null; }; }
endef
# $(call ensure_tool,COMMAND,PACKAGE): apt-get install PACKAGE unless COMMAND exists.
ensure_tool = command -v $(1) >/dev/null 2>&1 || $(call apt_install,$(2))

.PHONY: venv
venv: $(VENV_STAMP) ## create .venv from requirements-test.txt (moto, boto3, awslambdaric, statsd, cfn-lint); no-op when up to date

$(VENV_STAMP): requirements-test.txt
	@if [ ! -x $(VENV)/bin/python ]; then \
	  $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	    rm -rf $(VENV); $(call apt_install,python3-venv); $(PYTHON) -m venv $(VENV); }; \
	fi
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	@touch $@

.PHONY: node
node: $(NODE_STAMPS) ## install the Node.js fixtures and build the TypeScript examples (npm ci; aws-lambda-ric and unix-dgram are built natively: cmake, g++, make)

fixtures/%/node_modules/.installed: fixtures/%/package.json fixtures/%/package-lock.json
	@if grep -q '"aws-lambda-ric"' fixtures/$*/package.json; then \
	  $(call ensure_tool,cmake,cmake); $(call ensure_tool,g++,g++); fi
	@if grep -q '"unix-dgram"' fixtures/$*/package.json; then \
	  $(call ensure_tool,g++,g++); $(call ensure_tool,make,make); fi
	cd fixtures/$* && npm ci --no-audit --no-fund --loglevel=error
	@if grep -q '"aws-lambda-ric"' fixtures/$*/package.json; then \
	  test -f fixtures/$*/node_modules/aws-lambda-ric/rapid-client.node || { echo "aws-lambda-ric: native client not built" >&2; exit 1; }; fi
	@if grep -q '"unix-dgram"' fixtures/$*/package.json; then \
	  test -f fixtures/$*/node_modules/unix-dgram/build/Release/unix_dgram.node || { echo "unix-dgram (hot-shots' Unix socket transport): native module not built" >&2; exit 1; }; fi
	@touch $@

examples/%/dist/.built: examples/%/package.json examples/%/package-lock.json examples/%/tsconfig.json $(wildcard examples/*/src/*.ts)
	cd examples/$* && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build
	@touch $@

.PHONY: build
build: ## build every binary of the workspace and the lambda-extension crate's README examples
	$(CARGO) build --workspace --bins
	scripts/build-crate-examples.sh

# `make test` prepares everything side by side (`make -j`): the venv and npm installs wait on the network
# and on small native builds, the debug build and the test binaries take the cores, and the layer's two LTO
# builds (niced) fill what is left. Then the tests: first all but the `_measured_alone` ones on TEST_THREADS
# threads (most tests wait on processes and sockets, not on the CPU), then those one at a time, because
# they measure CPU time or the duration of CPU-bound work and another test's processes would take the CPU
# they measure.
TEST_THREADS ?= 6
PREPARE_JOBS ?= 6

.PHONY: test
test: ## run all tests (prepares venv, Node fixtures, binaries and the layer first)
	$(MAKE) --no-print-directory -j$(PREPARE_JOBS) --output-sync=target test-prepare
	rc=0; \
	$(CARGO) test --workspace --no-fail-fast -- --skip _measured_alone --test-threads $(TEST_THREADS) || rc=$$?; \
	$(CARGO) test --workspace --test suite -- _measured_alone --test-threads 1 || rc=$$?; \
	exit $$rc

.PHONY: test-prepare
test-prepare: layer-check test-build venv $(if $(HAVE_NODE),node)
	@$(call ensure_tool,strace,strace)

.PHONY: test-build
test-build: build ## compile every test binary without running it
	$(CARGO) test --workspace --no-run

.PHONY: nextest
nextest: venv $(if $(HAVE_NODE),node) build ## like `test`, with cargo-nextest (one process per test), then the doctests
	@$(call ensure_tool,strace,strace)
	$(CARGO) nextest run --workspace --no-fail-fast
	$(CARGO) test --workspace --doc

.PHONY: test-proxy
test-proxy: venv $(if $(HAVE_NODE),node) build ## every end-to-end test with each function run through layer-build/perfmon-wrapper (the Runtime API proxy), ~4 min; not CI
	@$(call ensure_tool,strace,strace)
	SANDBOX_EXEC_WRAPPER=$(CURDIR)/layer-build/perfmon-wrapper $(CARGO) test -p perfmon-tests --no-fail-fast

.PHONY: demo
demo: venv build ## run the Rust sample function with perfmon in the local sandbox: 1 cold + 30 warm invokes, embedded CloudWatch (PROFILE=release: the shipped build)
	$(if $(filter release,$(PROFILE)),$(CARGO) build --release -p perfmon -p sample-function -p perfmon-sandbox)
	scripts/demo.sh

.PHONY: check
check: ## cargo fmt --check and clippy (all targets, warnings denied)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: fmt
fmt: ## format the code
	$(CARGO) fmt --all

# ---- the Lambda layer (layer engineer): layer-build/, tests/tests/suite/layer_*.rs, README "Attach it" ----
# Static musl binaries for x86_64 and arm64, cross-built with cargo-zigbuild (zig and cargo-zigbuild from
# PyPI, pinned in layer-build/requirements.txt, installed into the layer-build/.tools venv).
LAYER_DIR := $(or $(CARGO_TARGET_DIR),target)/layer
LAYER_TOOLS := layer-build/.tools
LAYER_TOOLS_STAMP := $(LAYER_TOOLS)/.installed
LAYER_TARGETS := x86_64-unknown-linux-musl aarch64-unknown-linux-musl

$(LAYER_TOOLS_STAMP): layer-build/requirements.txt
	@missing=""; for t in zip:zip unzip:unzip file:file qemu-aarch64-static:qemu-user-static; do \
	  command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; done; \
	  if [ -n "$$missing" ]; then $(call apt_install,$$missing); fi
	@installed=$$(rustup target list --installed); for t in $(LAYER_TARGETS); do \
	  grep -qx "$$t" <<<"$$installed" || rustup target add "$$t"; done
	@if [ ! -x $(LAYER_TOOLS)/bin/python ]; then \
	  $(PYTHON) -m venv $(LAYER_TOOLS) 2>/dev/null || { \
	    rm -rf $(LAYER_TOOLS); $(call apt_install,python3-venv); $(PYTHON) -m venv $(LAYER_TOOLS); }; \
	fi
	$(LAYER_TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check -r layer-build/requirements.txt
	@touch $@

.PHONY: layer
layer: $(LAYER_TOOLS_STAMP) ## build the layer zips (static musl, x86_64 and arm64) into target/layer/
	PATH="$(abspath $(LAYER_TOOLS))/bin:$$PATH" LAYER_DIR=$(LAYER_DIR) layer-build/build.sh

# The CDK example's npm packages (tsc, aws-cdk-lib), where node exists: layer_template.rs synthesizes it.
LAYER_CDK := layer-build/examples/cdk
LAYER_CDK_STAMP := $(LAYER_CDK)/node_modules/.installed

$(LAYER_CDK_STAMP): $(LAYER_CDK)/package.json $(LAYER_CDK)/package-lock.json
	cd $(LAYER_CDK) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: layer-check
layer-check: layer venv $(if $(HAVE_NODE),$(LAYER_CDK_STAMP)) ## check the layer zips: layout, modes, static ELF, arm64 under qemu, end to end in the sandbox, cfn-lint
	LAYER_DIR=$(LAYER_DIR) layer-build/check.sh
# Under `make test` the workspace run that follows runs these tests: run them here only for `make layer-check`.
	$(if $(filter test test-prepare,$(MAKECMDGOALS)),@echo "layer_e2e and layer_template: run by cargo test --workspace",$(CARGO) test -p perfmon-tests --test suite -- layer_e2e:: layer_template::)

CARGO_TARGET_DIR_OR_DEFAULT := $(or $(CARGO_TARGET_DIR),target)
BENCH_PACKAGES := -p perfmon -p noop-extension -p sample-function -p perfmon-sandbox -p perfmon-bench

.PHONY: bench
bench: ## benchmarks (not part of test): perfmon vs the floor in the sandbox, ~10 min; writes benches/results/
	$(CARGO) build --release $(BENCH_PACKAGES)
	$(CARGO_TARGET_DIR_OR_DEFAULT)/release/perfmon-bench run --mode full $(BENCH_ARGS)

SOAK_MINUTES ?= 30

.PHONY: soak
soak: ## soak run (not part of test or CI): perfmon in the sandbox for SOAK_MINUTES (default 30); writes benches/results/soak.{json,md}
	$(CARGO) build --release -p perfmon -p sample-function -p perfmon-bench
	$(CARGO_TARGET_DIR_OR_DEFAULT)/release/perfmon-bench soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

.PHONY: simulate
simulate: ## many sandboxes against one PutMetricData quota, simulated clock (~1 min); writes benches/results/simulation.{json,svg,md}
	$(CARGO) build --release -p perfmon-bench
	$(CARGO_TARGET_DIR_OR_DEFAULT)/release/perfmon-bench simulate

.PHONY: bench-check
bench-check: ## pre-merge: quick fresh run vs benches/results/bench.json, fails on a >20 % regression (~5 min)
	$(CARGO) build --release $(BENCH_PACKAGES)
	$(CARGO_TARGET_DIR_OR_DEFAULT)/release/perfmon-bench check --mode quick $(BENCH_ARGS)

.PHONY: fuzz
fuzz: ## fuzz every parser and decoder (cargo-fuzz, nightly) for FUZZ_SECONDS each (default 1800), all at once; not CI; writes protocol/fuzz/results/
	scripts/fuzz.sh

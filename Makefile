# perfmon: `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
CARGO ?= cargo
VENV := .venv
VENV_STAMP := $(VENV)/.installed
NODE_DIR := fixtures/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed
# Root runs apt-get directly; anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The Node.js fixture is prepared by `make test` only where node is installed.
HAVE_NODE := $(shell command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && echo yes)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-8s %s\n", $$1, $$2}'

# apt-get install PACKAGES (only where a target needs them; on a machine without apt-get, say what is missing).
define apt_install
	{ command -v apt-get >/dev/null 2>&1 || { echo "missing, and no apt-get to install it: $(1)" >&2; exit 1; }; \
	  echo "installing $(1) with apt-get"; \
	  $(SUDO) apt-get install -y -q $(1) >/dev/null 2>&1 || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q $(1) >/dev/null; }; }
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
node: $(NODE_STAMP) ## install the Node.js fixture's runtime client (npm aws-lambda-ric, built natively: needs cmake)

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@$(call ensure_tool,cmake,cmake)
	@$(call ensure_tool,g++,g++)
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@test -f $(NODE_DIR)/node_modules/aws-lambda-ric/rapid-client.node || { echo "aws-lambda-ric: native client not built" >&2; exit 1; }
	@touch $@

.PHONY: build
build: ## build every binary of the workspace and the lambda-extension crate's README examples
	$(CARGO) build --workspace --bins
	scripts/build-crate-examples.sh

.PHONY: test
test: venv $(if $(HAVE_NODE),node) build ## run all tests (prepares venv, Node fixture and binaries first)
	$(CARGO) test --workspace

.PHONY: nextest
nextest: venv $(if $(HAVE_NODE),node) build ## like `test`, with cargo-nextest (one process per test), then the doctests
	$(CARGO) nextest run --workspace
	$(CARGO) test --workspace --doc

.PHONY: demo
demo: venv build ## run the Rust sample function with perfmon in the local sandbox: 1 cold + 30 warm invokes, embedded CloudWatch
	scripts/demo.sh

.PHONY: check
check: ## cargo fmt --check and clippy (all targets, warnings denied)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: fmt
fmt: ## format the code
	$(CARGO) fmt --all

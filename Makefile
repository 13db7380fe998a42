# PrivateLink Gatekeeper: the commands a user and CI run. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
SAMVENV   := .venv-sam
PY        := $(VENV)/bin/python
PORT      ?= 4566
STATE     ?= .local/stack.json
LOCAL_BIN := target/debug/gatekeeper-local
CARGO     := cargo
FUZZ_SECONDS      ?= 300
FUZZ_SECONDS_TEST ?= 10

CARGO_LAMBDA_VERSION := 1.9.2
CARGO_DENY_VERSION   := 0.18.9
LAMBDA_FUNCTIONS     := IngestFunction DecideFunction ReconcileFunction

.PHONY: help setup build up demo test lint fmt clean bench fuzz package deploy

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: tests/emulator/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r tests/emulator/requirements.txt
	touch $@

$(SAMVENV)/.installed: infra/requirements-sam.txt
	python3 -m venv $(SAMVENV)
	$(SAMVENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAMVENV)/bin/python -m pip install --quiet -r infra/requirements-sam.txt
	touch $@

setup: $(VENV)/.installed $(SAMVENV)/.installed ## Install what the local AWS, the tests and the lint need (Python venvs; cargo-nextest, cargo-fuzz if missing)
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz@0.13.2
	@command -v cargo-deny >/dev/null || $(CARGO) install --locked cargo-deny@$(CARGO_DENY_VERSION)

# One build of every target with the test features, so the SDK crates compile once for tests and `up`.
build: ## Build every crate (debug) with the features the tests use
	$(CARGO) build --workspace --all-targets --locked

up: setup build ## Run Gatekeeper on a local AWS (127.0.0.1:$(PORT)) until Ctrl-C; writes $(STATE)
	$(LOCAL_BIN) up --port $(PORT) --state $(STATE) $(if $(DEFAULT_ACTION),--default-action $(DEFAULT_ACTION)) $(if $(KMS),--encrypt-with-kms)

demo: setup build ## Start `up` in the background and play a story with four consumer accounts
	@rm -f $(STATE); mkdir -p .local
	@$(LOCAL_BIN) up --port $(PORT) --state $(STATE) > .local/up.log 2>&1 & echo $$! > .local/up.pid
	@for i in $$(seq 1 150); do [ -f $(STATE) ] && break; sleep 0.2; done; \
	  if [ ! -f $(STATE) ]; then echo "local AWS did not come up; see .local/up.log"; kill $$(cat .local/up.pid); exit 1; fi
	@$(LOCAL_BIN) demo --state $(STATE); rc=$$?; kill -INT $$(cat .local/up.pid) 2>/dev/null; wait; exit $$rc

lint: setup ## fmt check, clippy -D warnings, cargo deny (deny.toml), cfn-lint and sam validate --lint of the template
	$(CARGO) fmt --all --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@# cargo deny reads `cargo metadata`, which wants every crate of the lock file, those of other targets
	@# (Android, Windows) too; a build fetches only this machine's. Fetched here, so a fresh machine has them.
	$(CARGO) fetch --locked
	$(CARGO) deny --offline check --hide-inclusion-graph licenses bans sources
	@# Advisories need the RustSec database from GitHub: checked wherever it can be fetched, and said
	@# loudly where it cannot (a machine that reaches only the package registries).
	@out=$$($(CARGO) deny check advisories 2>&1); rc=$$?; \
	  if [ $$rc -ne 0 ] && grep -q "failed to fetch advisory database" <<< "$$out"; then \
	    echo "cargo deny check advisories: NOT CHECKED, the RustSec advisory database (github.com) is unreachable here"; \
	  else echo "$$out" | tail -n 20; exit $$rc; fi
	$(VENV)/bin/cfn-lint infra/template.yaml
	cd infra && SAM_CLI_TELEMETRY=0 ../$(SAMVENV)/bin/sam validate --lint --template template.yaml

test: setup lint ## Everything CI runs: lint, emulator and template tests, a short fuzz pass, unit/property/adapter/integration tests
	$(PY) -m pytest -q tests/emulator infra
	$(SAMVENV)/bin/python infra/check_sam_build.py
	fuzz/run.sh $(FUZZ_SECONDS_TEST)
	GATEKEEPER_PYTHON=$(abspath $(PY)) $(CARGO) nextest run --workspace --locked --no-fail-fast

# The real `sam build` (infra/samconfig.toml: language extensions, ManagedServiceIds): cargo-lambda builds each
# function for arm64 in release mode into infra/.aws-sam/build/<Function>/bootstrap. cargo-lambda comes from PyPI
# into the SAM venv if it is not on PATH; its PyPI package brings Zig (ziglang), which it cross-compiles with.
package: $(SAMVENV)/.installed ## sam build of the functions (cargo-lambda, arm64, release) and each artifact's size (not part of make test)
	@command -v cargo-lambda >/dev/null || [ -x $(SAMVENV)/bin/cargo-lambda ] || \
	  $(SAMVENV)/bin/python -m pip install --quiet "cargo-lambda==$(CARGO_LAMBDA_VERSION)"
	@if command -v rustup >/dev/null; then rustup target add aarch64-unknown-linux-gnu; fi
	cd infra && PATH="$(abspath $(SAMVENV))/bin:$$PATH" SAM_CLI_TELEMETRY=0 sam build
	@for fn in $(LAMBDA_FUNCTIONS); do \
	  f=infra/.aws-sam/build/$$fn/bootstrap; \
	  if [ ! -f $$f ]; then echo "missing $$f"; exit 1; fi; \
	  wc -c < $$f | awk -v fn=$$fn -v f=$$f '{ printf "  %-18s %10d bytes  %6.1f MiB  %s\n", fn, $$1, $$1 / 1048576, f }'; \
	done

deploy: package ## sam deploy of what `make package` built, as infra/samconfig.toml says, with your AWS credentials (SAM_DEPLOY_ARGS: more flags; not part of make test)
	cd infra && PATH="$(abspath $(SAMVENV))/bin:$$PATH" SAM_CLI_TELEMETRY=0 sam deploy $(SAM_DEPLOY_ARGS)

bench: setup build ## Benchmarks (release build; not part of make test): init, warm latency, bursts, end to end, vs a Python reference
	@start=$$SECONDS; $(CARGO) build --release --locked -p decide -p ingest -p reconcile && \
	  echo "release build of decide, ingest, reconcile: $$((SECONDS - start)) s"
	$(PY) bench/run.py $(BENCH_ARGS)

fuzz: setup ## Fuzz the event, notification, allowlist-item and principal parsers, FUZZ_SECONDS (300) each
	fuzz/run.sh $(FUZZ_SECONDS)

fmt: ## Format the code
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml

clean: ## Remove build output, the venvs and local state
	rm -rf target $(VENV) $(SAMVENV) .local

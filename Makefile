# The one task runner: README, CI (.ci/run) and developers all call these targets.
#
#   make demo   build everything, run the demos on the embedded runtime (the live-model one
#               against the fake provider server)
#   make demo-live   the live-model demo against the real API (ANTHROPIC_API_KEY, or
#               OPENAI_API_KEY with PROVIDER=openai)
#   make test   build everything, start Kafka + Redis, run every check and test, stop them
#   make studio  Studio (the browser UI) on the Acme example, at http://127.0.0.1:4111/
#
# Everything installs itself on a fresh machine: the venv and Python packages, the Rust
# extension, the broker jars and redis-server (scripts/services/services), and Debian's
# chromium and chromium-driver for Studio's browser tests (browser-deps).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
SERVICES := scripts/services/services
# Packages the engine crate must never depend on (it is pure: no Python, async runtime,
# randomness, clock or I/O).
IMPURE_CRATES := pyo3|tokio|rand|rand_core|getrandom|chrono|time|reqwest|mio|socket2

.PHONY: help setup build demo test check check-rust check-python check-stub test-rust test-python \
        services-up services-down bench golden schemas clean demo-live studio browser-deps \
        studio-screenshots wheel asyncapi release-schemas docs

help:
	@echo "make demo | make demo-live | make studio | make test | make build | make check | make bench | make services-up | make services-down | make wheel | make docs | make asyncapi | make release-schemas"

# Fresh venv with every runtime and dev dependency (re-run when pyproject.toml changes).
$(VENV)/.deps: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'maturin>=1.7,<2'
	. $(VENV)/bin/activate && maturin develop --release -q -E dev,kafka,studio,fast
	touch $@

setup: $(VENV)/.deps

# Rebuild the Rust extension in place (cargo makes this a no-op when nothing changed).
build: setup
	. $(VENV)/bin/activate && maturin develop --release -q

demo: build
	$(PY) examples/hello.py
	$(PY) -m examples.acme
	$(PY) examples/live_agent.py

studio: build
	$(PY) -m flowai_harness.studio --app examples.acme.studio:runtime --evals examples.acme.evals:SUITES

# Debian's Chromium and its WebDriver, for Studio's browser tests (tests/studio); installed
# once (we run as root), nothing is downloaded by the tests themselves.
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

# The screenshots in docs/studio, taken by the browser tests as they run.
studio-screenshots: build browser-deps
	FLOWAI_STUDIO_SCREENSHOTS=docs/studio $(PY) -m pytest tests/studio -q

demo-live: build
	$(PY) examples/live_agent.py --real --provider $(or $(PROVIDER),anthropic)

check-rust:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	@impure=$$(cargo tree -p flowai-engine -e normal --prefix none | awk '{print $$1}' | { grep -Ex '$(IMPURE_CRATES)' || true; } | sort -u); \
	  if [ -n "$$impure" ]; then echo "core/engine must stay pure, but depends on: $$impure"; exit 1; fi; \
	  echo "core/engine dependency tree is pure"

check-python: setup
	$(PY) -m ruff check python services tests bench examples scripts
	$(PY) -m ruff format --check python services tests bench examples scripts
	$(PY) -m mypy

# The native module's stub (python/flowai_harness/_internal.pyi) must describe the built module
# exactly: mypy's stubtest imports it and compares (so it needs the extension built).
check-stub: build
	$(PY) -m mypy.stubtest flowai_harness._internal

check: check-rust check-python check-stub

test-rust:
	cargo test --workspace -q

test-python: build
	$(PY) -m pytest

services-up: setup
	$(SERVICES) start

services-down:
	$(SERVICES) stop

# The services script starts ONE broker, so the run log cannot be replicated: say so
# explicitly (FLOWAI_ALLOW_UNREPLICATED). The three-broker tests (marker `brokers3`) start a
# cluster of their own.
test: build check test-rust docs browser-deps
	$(SERVICES) start
	set -a; . "$${FLOWAI_SERVICES_DIR:-var/services}/env"; set +a; \
	  trap '$(SERVICES) stop' EXIT; \
	  FLOWAI_ALLOW_UNREPLICATED=1 $(PY) -m pytest

bench: build
	$(PY) bench/embedded.py

# schemas/v1 from the Pydantic message models, and the AsyncAPI document of the bus that
# references them (tests fail when either drifts).
schemas: setup
	$(PY) -m flowai_harness.messages --out schemas/v1 --docs docs/wire.md
	$(PY) -m flowai_harness.kafka.asyncapi --out schemas/asyncapi.yaml

# The distribution an operator installs (the services included): dist/*.whl.
wheel: setup
	$(VENV)/bin/maturin build --release --out dist

# When a version ships: its message schemas become the contract later ones are checked
# against (tests/unit/test_schema_evolution.py).
release-schemas: schemas
	rm -rf schemas/released/v1
	cp -r schemas/v1 schemas/released/v1
	$(PY) -c "from flowai_harness import __version__; print(__version__)" > schemas/released/VERSION

# The documentation site (docs/, mkdocs.yml) with the API reference from the docstrings,
# in strict mode: a broken link, page or reference fails.
docs: setup
	$(PY) -m mkdocs build --strict --quiet

# The AsyncAPI document alone (`make schemas` writes it too, after schemas/v1).
asyncapi: setup
	$(PY) -m flowai_harness.kafka.asyncapi --out schemas/asyncapi.yaml

golden: build
	$(PY) tests/golden/scenarios.py

clean:
	cargo clean
	rm -rf $(VENV) var

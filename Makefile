# Two commands do everything on a fresh machine (Python 3.11 and Node.js/npm installed):
#   make demo   - the nightly job end to end against Azurite and the simulated tenant
#   make test   - lint, type-check and the whole test suite (what .ci/run calls)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# checkov + tree-sitter-bicep for the offline Bicep checks (tests/infra), apart from the app's pins.
IAC_VENV := .venv-iac

.PHONY: setup demo test lint unit bench clean iac browser

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(IAC_VENV)/.installed: requirements-iac.txt
	$(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(IAC_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-iac.txt
	@touch $@

iac: $(IAC_VENV)/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: setup
	$(PY) -m sim.demo

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: lint $(IAC_VENV)/.installed browser
	$(PY) -m pytest

# Headless Chromium renders the HTML report in a test (tests/browser); Debian's package, as root.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

unit: setup
	$(PY) -m pytest tests/unit

bench: setup
	$(PY) bench/sync_bench.py

clean:
	rm -rf $(VENV) $(IAC_VENV) node_modules demo-output .pytest_cache .mypy_cache .ruff_cache

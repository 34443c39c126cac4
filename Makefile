# make demo   - install what is missing (QEMU, the Python package) and open the demo
# make test   - install what is missing and run the whole test suite
# make bench  - benchmarks (benchmarks/run.py)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.chaintui-installed
PYTEST_ARGS ?=

.PHONY: demo test deps install bench snapshots clean

deps:
	@PYTHON=$(PYTHON) scripts/ensure-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: deps $(STAMP)

demo: install
	$(BIN)/chaintui --demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

snapshots: install
	$(BIN)/python -m pytest tests/test_snapshots.py --snapshot-update

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

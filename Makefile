# make demo         - install what is missing (QEMU, the Python package) and open the demo
# make test         - install what is missing and run the whole test suite
# make test-qemu10  - the whole suite again on Debian 13's QEMU 10, in a debootstrap chroot (root)
# make bench        - benchmarks (benchmarks/run.py)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.chaintui-installed
PYTEST_ARGS ?=
QEMU10_DIR ?= $(CURDIR)/.qemu10

.PHONY: demo test test-qemu10 deps install bench snapshots clean

deps:
	@PYTHON=$(PYTHON) scripts/ensure-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# libvirt-python must match the system's libvirt (9.0.0 on Debian 12, 11.x on 13):
# it is built here against the libvirt-dev that scripts/ensure-deps installs.
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q "libvirt-python==$$(pkg-config --modversion libvirt)"
	touch $(STAMP)

install: deps $(STAMP)

demo: install
	$(BIN)/chaintui --demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-qemu10:
	scripts/test-qemu10 $(QEMU10_DIR)

snapshots: install
	$(BIN)/python -m pytest tests/test_snapshots.py --snapshot-update

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

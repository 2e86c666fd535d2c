# sgc-node: the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch (on local disk on the project's machines); on a GPU host set
# TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" or similar.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp

.PHONY: install deps orthanc viewer-dist viewer run test test-long lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

## install: a virtual environment with the node and its Python dependencies
install: $(STAMP)

## deps: the real DICOM peers the tests use (dcmtk, dicom3tools, Orthanc), if missing
deps:
	scripts/install-system-deps.sh

## orthanc: a local Orthanc archive (HTTP 8042, DICOM 4242) that knows the node as modality "sgc"
orthanc: deps
	scripts/orthanc.sh

## viewer-dist: OHIF's prebuilt viewer (npm @ohif/app, pinned) in viewer/dist
viewer-dist:
	viewer/fetch-ohif.sh

## viewer: OHIF on http://127.0.0.1:3000 reading Orthanc (ORTHANC_URL) through a same-origin proxy
ORTHANC_URL ?= http://127.0.0.1:8042
viewer: install viewer-dist
	$(BIN)/sgc viewer --orthanc $(ORTHANC_URL)

## run: start the node on the embedded default (SQLite, filesystem broker, ./data)
run: install
	$(BIN)/sgc serve

## demo: see it work in one command: a throw-away Orthanc, the node and OHIF on the loopback,
## a synthetic screening set pushed from Orthanc, one line per result and the OHIF address of the
## malignant study with its report; Ctrl-C stops all. Options: make demo ARGS="--once --keep"
.PHONY: demo
ARGS ?=
demo: install
	@command -v Orthanc >/dev/null && [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] \
		|| scripts/install-system-deps.sh
	@viewer/fetch-ohif.sh
	$(BIN)/sgc demo $(ARGS)

## test: lint, then the whole test suite against real peers
test: install deps viewer-dist
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

## test-long: the long fault, fuzz and load variants
test-long: install deps viewer-dist
	$(BIN)/python -m pytest -m long

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# seqflows: the two set-up commands of the README.
#   make run    create .venv, install seqflows, run the main job (the motivating example, Sec. 3.1)
#   make test   create .venv, install seqflows with its dev extras, run the whole test suite
#
# PyTorch is installed first, from TORCH_SPEC, when the environment has none, so that installing
# seqflows (which asks for torch>=2.2) never pulls a second build. Examples:
#   make test TORCH_SPEC="torch==2.5.1 --index-url https://download.pytorch.org/whl/cpu"
#   make run PYTHON=python3.12

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
RUN_ARGS ?= --out runs/motion

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: run test lint bench clean

run: $(VENV)/.installed-plot
	$(BIN)/seqflows motion $(RUN_ARGS)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/train_step.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install $(TORCH_SPEC)
	touch $@

$(VENV)/.installed-%: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[$*]"
	touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache src/*.egg-info

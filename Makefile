# seqflows: the two set-up commands of the README.
#   make run    create .venv, install seqflows, train a 1-AF on bouncing balls for a few minutes,
#               evaluate it, and draw samples and the Fig. 4 rows into $(RUN_DIR)
#   make test   create .venv, install seqflows with its dev extras, run the whole test suite
#   make test-avx2  the same with the AVX-512 kernels off (oneDNN, ATen, MKL): close to a CPU
#               with AVX2 only, where training outcomes take other kernels
# Also: make reproduce (the paper's findings at reduced scale, about 75 min on 2 CPU cores:
# docs/results.md; DIGITS=path/to/t10k-images-idx3-ubyte.gz skips the download), make motion
# (the motivating example of Sec. 3.1), make lint, make bench. reproduce and motion run
# python -m reproduction from this folder: the reproduction is not part of the installed package.
#
# PyTorch is installed first, from TORCH_SPEC, when the environment has none, so that installing
# seqflows (which asks for torch>=2.2) never pulls a second build. Examples:
#   make test TORCH_SPEC="torch==2.5.1 --index-url https://download.pytorch.org/whl/cpu"
#   make run PYTHON=python3.12

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
RUN_DIR ?= runs/bouncing_balls_1af
RUN_ARGS ?=
DIGITS ?=

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: run motion reproduce test test-avx2 lint bench clean

# Re-running continues an interrupted training (--resume) and redraws the figures. Training
# shows its progress and the time left: a bar on a terminal, a line every 15 s in a log.
run: $(VENV)/.installed-train
	$(BIN)/seqflows train configs/bouncing_balls_1af.yaml --out $(RUN_DIR) $(RUN_ARGS) --resume
	$(BIN)/seqflows evaluate $(RUN_DIR)/checkpoints/best.ckpt --output $(RUN_DIR)/evaluation.json
	$(BIN)/seqflows sample $(RUN_DIR)/checkpoints/best.ckpt --out $(RUN_DIR)/figures --num 4 --length 12 --context 4 > /dev/null
	$(BIN)/seqflows sample $(RUN_DIR)/checkpoints/best.ckpt --out $(RUN_DIR)/figures --num 4 --length 12 --context 4 --temperature 0 --name mean_prediction > /dev/null
	$(BIN)/seqflows visualize $(RUN_DIR)/checkpoints/best.ckpt --out $(RUN_DIR)/figures > /dev/null
	@echo
	@echo "evaluation (nats per pixel per channel above): $(RUN_DIR)/evaluation.json"
	@echo "checkpoints: $(RUN_DIR)/checkpoints/{best,last}.ckpt   logs: $(RUN_DIR)/logs"
	@echo "figures: $(RUN_DIR)/figures/{flow_rows,curves,samples,mean_prediction}.png, samples.gif"

motion: $(VENV)/.installed-plot
	$(BIN)/python -m reproduction motion --out runs/motion

# Re-running continues interrupted trainings and redoes the evaluations and figures.
reproduce: $(VENV)/.installed-train
	$(BIN)/python -m reproduction reproduce --out results --runs runs/reproduce $(if $(DIGITS),--digits $(DIGITS))

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-avx2: $(VENV)/.installed-dev
	ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks reproduction
	$(BIN)/ruff format --check src tests benchmarks reproduction

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/train_step.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install $(TORCH_SPEC)
	touch $@

# One stamp per extra, remade when pyproject.toml changes. An extra that includes the one asked
# for (dev: all of them; train: plot) and is installed already needs no pip: `make run` after
# `make test` installs nothing.
INCLUDED_BY_plot := train dev
INCLUDED_BY_train := dev

$(VENV)/.installed-%: pyproject.toml $(VENV)/.torch
	@for wider in $(INCLUDED_BY_$*); do \
		if [ $(VENV)/.installed-$$wider -nt pyproject.toml ]; then \
			echo "seqflows[$*]: installed with seqflows[$$wider]"; touch $@; exit 0; \
		fi; \
	done; \
	echo '$(PIP) install -e ".[$*]"'; $(PIP) install -e ".[$*]" && touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache src/*.egg-info

# Two commands do everything on a fresh machine: `make demo` (main job on the embedded default encoder)
# and `make test`. Both create the virtual environment first, idempotently.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU wheel of torch lies on this machine's disk; an open torch range would pull a CUDA build.
TORCH_PIN := torch==2.13.0

.PHONY: setup demo test test-fast lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: setup
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

test: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q

# ruff, then the import contracts of docs/ARCHITECTURE.md. training/ and inference/ are installed as
# conflict_events.training / .inference (pyproject's package-dir), so import-linter reads a copy laid out
# the way the installed package is.
LINT_TREE := build/lint-imports
lint: setup
	$(BIN)/ruff check .
	rm -rf $(LINT_TREE) && mkdir -p $(LINT_TREE)
	cp -r conflict_events $(LINT_TREE)/conflict_events
	cp -r training $(LINT_TREE)/conflict_events/training
	cp -r inference $(LINT_TREE)/conflict_events/inference
	cd $(LINT_TREE) && PYTHONPATH=. $(abspath $(BIN))/lint-imports $(abspath pyproject.toml)

test-fast: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf mlflow.db mlartifacts checkpoints outputs

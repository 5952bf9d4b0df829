# The README's two commands: `make workflow` and `make test`. Both create the local virtual
# environment .venv on first use (Python >= 3.11; torch and torchvision pinned in pyproject.toml).

VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed

.PHONY: install workflow test lint clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[workflow,dev]"
	touch $@

# The default workflow: generate -> extract -> train (every method x seed) -> tables and figures.
workflow: install
	PATH="$(BIN):$$PATH" $(BIN)/snakemake --cores all

test: install
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	PATH="$(BIN):$$PATH" $(BIN)/snakemake --lint

clean-venv:
	rm -rf $(VENV)

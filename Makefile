# The README's two commands: `make workflow` and `make test`. Both create the local virtual
# environment .venv on first use (Python 3.11, linux x86_64) from requirements.lock: every package
# at the version and hash `make lock` compiled from pyproject.toml (extras workflow and dev), so
# two installs a month apart are the same environment.

VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# The lock's target: Python 3.11 on linux x86_64 (manylinux_2_28: torch 2.14.1's wheels).
LOCK_TARGET := --extra workflow --extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28

.PHONY: install workflow test lint lock lock-upgrade clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --no-deps -e .
	touch $@

# Refresh the lock after editing pyproject.toml's dependencies: versions already in the lock are
# kept where pyproject.toml still allows them. `make lock-upgrade` moves every package to its
# newest allowed version. Both resolve against PyPI (uv, pinned in the dev extra).
lock: install
	$(BIN)/uv pip compile pyproject.toml $(LOCK_TARGET) --generate-hashes -o $(LOCK)

lock-upgrade: install
	$(BIN)/uv pip compile pyproject.toml $(LOCK_TARGET) --generate-hashes --upgrade -o $(LOCK)

# The default workflow: generate -> extract -> train (every method x seed) -> tables and figures,
# then `dvc commit` records in dvc.lock what produced paper_tables/ (commit the two together;
# README, "Regenerating the committed tables"). Outside a git work tree DVC cannot run: skipped.
workflow: install
	PATH="$(BIN):$$PATH" $(BIN)/snakemake --cores all
	if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then \
		PATH="$(BIN):$$PATH" $(BIN)/dvc commit --force; \
	else echo "not a git work tree: dvc.lock not written"; fi

test: install
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	PATH="$(BIN):$$PATH" $(BIN)/snakemake --lint

clean-venv:
	rm -rf $(VENV)

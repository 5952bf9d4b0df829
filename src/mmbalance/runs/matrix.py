"""The runs a ``params.yaml`` configures, where they live and which of them are finished."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmbalance import config, paths
from mmbalance.errors import MMBalanceError
from mmbalance.runs.files import is_finished

SUMMARY = "summary.csv"


def summary_path(params: Mapping[str, Any], dataset: str) -> Path:
    """``<paths.results>/<dataset>/summary.csv``: mean ± std over seeds of the dataset's runs."""
    return Path(params["paths"]["results"]) / dataset / SUMMARY


def configured_runs(params: Mapping[str, Any], dataset: str) -> dict[str, list[Path]]:
    """``{method: [run dir per seed]}`` of the matrix for one dataset: the experiment's methods and the
    runs of its sweeps (:func:`mmbalance.config.run_seeds`)."""
    return {
        m: [paths.run_dir(params, dataset, m, s) for s in seeds]
        for m, seeds in config.run_seeds(params, dataset).items()
    }


def finished_runs(params: Mapping[str, Any], dataset: str) -> dict[str, list[Path]]:
    """Configured runs of methods with at least one finished seed; a method with some seeds
    finished and others not is an error (its mean would silently cover fewer seeds)."""
    finished = {}
    for method, dirs in configured_runs(params, dataset).items():
        done = [d for d in dirs if is_finished(d)]
        if done and len(done) < len(dirs):
            missing = ", ".join(str(d) for d in dirs if d not in done)
            raise MMBalanceError(f"method '{method}' has unfinished seeds: {missing}")
        if done:
            finished[method] = done
    return finished


def run_status(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every configured run with its path and status: ``done`` (outputs written), ``partial`` (a
    checkpoint to resume from) or ``missing``."""
    rows = []
    for dataset in params["experiment"]["datasets"]:
        seeds = config.run_seeds(params, dataset)
        for method, dirs in configured_runs(params, dataset).items():
            for seed, run_dir in zip(seeds[method], dirs, strict=True):
                if is_finished(run_dir):
                    status = "done"
                elif paths.checkpoint_path(params, dataset, method, seed).is_file():
                    status = "partial"
                else:
                    status = "missing"
                rows.append(
                    {
                        "dataset": dataset,
                        "method": method,
                        "seed": seed,
                        "path": str(run_dir),
                        "status": status,
                    }
                )
    return rows

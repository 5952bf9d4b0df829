"""The files of one run directory (``results/<dataset>/<method>/<run id>/seed<k>/``), written by the
engine and read by the report and the analyses.

``metrics.json`` (:data:`METRICS`), schema version :data:`SCHEMA_VERSION`:

=================  ===================================================================================
key                what
=================  ===================================================================================
``dataset``        the dataset's name
``method``         the run's name (a registered method, a variant or a sweep point)
``seed``           the seed (an integer)
``run_id``         the hash of the resolved configuration (:func:`mmbalance.paths.run_id`)
``heads``          the evaluated heads (``fused`` and one per modality)
``modalities``     the dataset's modalities, in the model's order
``protocols``      per protocol (``val_selected``, ``best_test``, ``last``, …) the chosen ``epochs`` per
                   head and per split and head the metrics (:mod:`mmbalance.engine.protocols`)
``convergence``    the selection series' convergence (:mod:`mmbalance.engine.convergence`)
``clips``          (datasets that can miss clips) per split the ``listed``, ``found`` and ``missing``
``epochs_trained`` the number of epochs in ``history.csv``
``skipped_steps``  (``precision`` bf16 or fp16) optimiser steps skipped for non-finite gradients
                   (:mod:`mmbalance.engine.precision`)
``machine``        what the run trained on (:func:`mmbalance.engine.machine.describe`)
``config``         the resolved run configuration; ``config_hash`` its run id again
``environment``    package versions and the device (:mod:`mmbalance.engine.environment`)
=================  ===================================================================================

``history.csv`` (:data:`HISTORY`): one row per epoch, the columns in the order they first appear:
``epoch`` (0-based), ``lr``, what the method logs at the epoch's start, the ``train_*`` means of its
step logs, ``skipped_steps`` (bf16 and fp16 only), ``{val,test}_<head>_<metric>``, the test features'
modality gaps ``test_gap_*``, what the method logs at the epoch's end (its ``Method.curves`` among
them), and ``seconds``; a value a row does not log is an empty cell.

``predictions.npz`` (:data:`PREDICTIONS`): ``labels`` and ``ids`` of the test samples and, per head, the
class probabilities of the val-selected epoch (samples × classes).

Version 1 is the schema above; a file of version 1 carries no version key, so the files of every run
trained so far are version 1. A later version writes ``"schema": <version>`` into ``metrics.json``, and
:func:`read_metrics` refuses a version it does not know instead of misreading it.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.errors import DataError
from mmbalance.io import write_csv, write_json, write_npz

METRICS = "metrics.json"
HISTORY = "history.csv"
PREDICTIONS = "predictions.npz"
SCHEMA_VERSION = 1
SCHEMA_KEY = "schema"
"""The key of ``metrics.json`` that holds the schema version (absent: version 1)."""
_SEED_DIR = re.compile(r"^seed(\d+)$")


def seed_dir(seed: int) -> str:
    """The name of the run directory of ``seed`` (``seed<k>``) under its run id."""
    return f"seed{int(seed)}"


def seed_of(path: Path) -> int:
    """The seed of a run from its directory name (``…/seed<k>/history.csv``, any file of the run)."""
    match = _SEED_DIR.match(Path(path).parent.name)
    if match is None:
        raise DataError(f"{path}: not in a seed<k> run directory")
    return int(match[1])


def is_finished(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` has written its outputs (``metrics.json`` comes last)."""
    return (Path(run_dir) / METRICS).is_file()


# --- writing (the engine) ---------------------------------------------------------------------
def write_history(run_dir: Path, history: Sequence[Mapping[str, Any]]) -> None:
    """``history.csv`` of the epochs so far: every column any row logs, in order of first appearance."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    rows = [{k: row.get(k, "") for k in columns} for row in history]
    write_csv(Path(run_dir) / HISTORY, rows, columns)


def write_outputs(run_dir: Path, metrics: Mapping[str, Any], predictions: Mapping[str, np.ndarray]) -> None:
    """A finished run's ``predictions.npz``, then its ``metrics.json`` (last: it says the run is finished)."""
    write_npz(Path(run_dir) / PREDICTIONS, predictions)
    write_json(Path(run_dir) / METRICS, metrics)


# --- reading (the report, the analyses) -------------------------------------------------------
def read_metrics(path: Path) -> dict[str, Any]:
    """One ``metrics.json`` as a dict; a missing or corrupt file, or one of a schema version this code
    does not know, is a :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: metrics file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: corrupt metrics file ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: corrupt metrics file (top level is not an object)")
    version = data.get(SCHEMA_KEY, 1)
    if version != SCHEMA_VERSION:
        raise DataError(
            f"{path}: metrics schema version {version!r}, this mmbalance reads version {SCHEMA_VERSION}"
        )
    return data


def read_history(path: Path) -> list[dict[str, str]]:
    """The rows of one ``history.csv``; a missing or empty file is a :class:`DataError` naming it."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise DataError(f"{path}: history file not readable ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: empty history file")
    return rows


def history_header(path: Path) -> list[str]:
    """The column names of one ``history.csv`` (empty for an empty file); an unreadable file is a
    :class:`DataError` naming it."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: corrupt history file ({exc})") from exc


def history_columns(path: Path, columns: Mapping[str, str]) -> dict[str, np.ndarray]:
    """``epoch`` and the ``columns`` (name → CSV column) present in one ``history.csv``, as floats (empty
    cells NaN); a missing or corrupt file is a :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: history file not found")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or "epoch" not in rows[0]:
            raise ValueError("no rows or no 'epoch' column")
        present = {"epoch": "epoch"} | {name: col for name, col in columns.items() if col in rows[0]}
        return {
            name: np.array([float(row[col]) if row[col] not in ("", None) else math.nan for row in rows])
            for name, col in present.items()
        }
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, TypeError) as exc:
        raise DataError(f"{path}: corrupt history file ({exc})") from exc


def last_logged(path: Path, column: str) -> float | None:
    """The last non-empty value of ``column`` in one ``history.csv`` (None: no such column, or never
    logged)."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if column not in (reader.fieldnames or ()):
                return None
            values = [row[column] for row in reader if row[column] not in ("", None)]
        return float(values[-1]) if values else None
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise DataError(f"{path}: corrupt history file ({exc})") from exc


def read_predictions(path: Path, head: str = "fused") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, probabilities of head, labels)`` of one ``predictions.npz``; a missing or corrupt file, or
    one without them, is a :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            if head not in data or "labels" not in data or "ids" not in data:
                raise DataError(f"{path}: no '{head}' probabilities, 'labels' or 'ids'")
            probs, labels, ids = data[head], data["labels"], data["ids"]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: corrupt predictions file ({exc})") from exc
    if probs.ndim != 2 or len(probs) != len(labels) or len(ids) != len(labels):
        raise DataError(f"{path}: '{head}' is {probs.shape} for {len(labels)} labels")
    return ids, probs, labels

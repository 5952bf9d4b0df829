"""Aggregate per-seed ``metrics.json`` files into a long-format summary CSV (mean ± std over seeds).

One summary row per (dataset, method, run id, protocol, split, head, metric); ``values`` keeps the
per-seed numbers (in seed order) so any table can show or re-check them. Seeds of one
(dataset, method) must come from one run id: mixing runs with different resolved configs would
average different experiments, so it is an error.

A run of a dataset that reports missing clips (``metrics.json`` ``clips``: per split the listed,
found and missing clips) adds rows with protocol :data:`CLIPS` (split = the split, head ``all``,
metric ``listed``/``found``/``missing``, mean = the count), from which the tables' footnotes are
written. They are not metrics: every seed of a group must report the same counts.

A run's convergence (``metrics.json`` ``convergence``, :mod:`mmbalance.engine.convergence`) adds one
row per selection series with protocol :data:`CONVERGENCE` (split ``val``, head = the series,
metric ``converged``): per seed 1 or 0, so the mean is the share of seeds that converged and the
tables can mark a method whose runs did not all converge.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmbalance.errors import DataError, MMBalanceError
from mmbalance.io import atomic_open
from mmbalance.runs.files import read_metrics

SUMMARY_COLUMNS = (
    "dataset",
    "method",
    "run_id",
    "protocol",
    "split",
    "head",
    "metric",
    "mean",
    "std",
    "n_seeds",
    "seeds",
    "values",
)
FRACTION_METRICS = frozenset({"acc", "macro_f1", "map"})
CLIPS = "clips"
"""The ``protocol`` of the summary rows that carry clip counts (module docstring)."""
CLIP_HEAD = "all"
CLIP_COUNTS = ("listed", "found", "missing")
CONVERGENCE = "convergence"
"""The ``protocol`` of the summary rows that say, per seed, whether a run converged (1) or not (0)."""
CONVERGED = "converged"

Key = tuple[str, str, str, str]  # (protocol, split, head, metric)


def mean_std(values: Sequence[float], ddof: int = 1) -> tuple[float, float]:
    """Mean and standard deviation with ``ddof`` delta degrees of freedom (NaN std when ``n <= ddof``)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n - ddof <= 0:
        return mean, math.nan
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - ddof))


@dataclass(frozen=True)
class _Run:
    """The parts of one ``metrics.json`` that aggregation needs."""

    path: Path
    dataset: str
    method: str
    run_id: str
    seed: int
    cells: dict[Key, float]


def _load_run(path: Path) -> _Run:
    """Read and check one ``metrics.json``; any problem is a :class:`DataError` naming the file."""
    path = Path(path)
    data = read_metrics(path)
    for key, kind in (("dataset", str), ("method", str), ("run_id", str), ("seed", int), ("protocols", dict)):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise DataError(f"{path}: corrupt metrics file ('{key}' missing or not a {kind.__name__})")
    cells: dict[Key, float] = {}
    for protocol, splits in data["protocols"].items():
        if not isinstance(splits, dict):
            raise DataError(f"{path}: corrupt metrics file (protocol '{protocol}' is not an object)")
        for split, heads in splits.items():
            if split == "epochs":
                continue
            for head, metrics in _mapping(path, heads, f"{protocol}.{split}").items():
                for metric, value in _mapping(path, metrics, f"{protocol}.{split}.{head}").items():
                    cells[(protocol, split, head, metric)] = _number(
                        path, value, protocol, split, head, metric
                    )
    if "clips" in data:
        cells.update(_clip_cells(path, data["clips"]))
    if "convergence" in data:
        cells.update(_convergence_cells(path, data["convergence"]))
    return _Run(path, data["dataset"], data["method"], data["run_id"], data["seed"], cells)


def _clip_cells(path: Path, clips: Any) -> dict[Key, float]:
    """The summary cells of a run's ``clips`` block: split → listed, found, missing (counts)."""
    cells: dict[Key, float] = {}
    for split, counts in _mapping(path, clips, "clips").items():
        counts = _mapping(path, counts, f"clips.{split}")
        if set(counts) != set(CLIP_COUNTS):
            raise DataError(
                f"{path}: corrupt metrics file ('clips.{split}' must hold {', '.join(CLIP_COUNTS)})"
            )
        for metric in CLIP_COUNTS:
            value = counts[metric]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise DataError(
                    f"{path}: corrupt metrics file ('clips.{split}.{metric}' = {value!r} is not a count)"
                )
            cells[(CLIPS, split, CLIP_HEAD, metric)] = float(value)
        if counts["listed"] != counts["found"] + counts["missing"]:
            raise DataError(f"{path}: corrupt metrics file ('clips.{split}': listed is not found + missing)")
    return cells


def _convergence_cells(path: Path, convergence: Any) -> dict[Key, float]:
    """The summary cells of a run's ``convergence`` block: 1.0 or 0.0 per selection series."""
    series = _mapping(path, _mapping(path, convergence, "convergence").get("series"), "convergence.series")
    cells: dict[Key, float] = {}
    for name, entry in series.items():
        flag = _mapping(path, entry, f"convergence.series.{name}").get(CONVERGED)
        if not isinstance(flag, bool):
            raise DataError(
                f"{path}: corrupt metrics file ('convergence.series.{name}.{CONVERGED}' is not true/false)"
            )
        cells[(CONVERGENCE, "val", name, CONVERGED)] = float(flag)
    return cells


def _mapping(path: Path, value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{path}: corrupt metrics file ('{where}' is not an object)")
    return value


def _number(path: Path, value: Any, protocol: str, split: str, head: str, metric: str) -> float:
    where = f"{protocol}.{split}.{head}.{metric}"
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{path}: corrupt metrics file ('{where}' = {value!r} is not a number)")
    if metric in FRACTION_METRICS and not (0.0 <= value <= 1.0) and not math.isnan(value):
        raise DataError(f"{path}: '{where}' = {value!r} is not a fraction in [0, 1]")
    return float(value)


def _group_runs(runs: Sequence[_Run]) -> dict[tuple[str, str], list[_Run]]:
    """Group runs by (dataset, method), sorted by seed; reject mixed run ids and repeated seeds."""
    groups: dict[tuple[str, str], list[_Run]] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.method), []).append(run)
    for (dataset, method), members in groups.items():
        by_id: dict[str, list[str]] = {}
        for run in members:
            by_id.setdefault(run.run_id, []).append(str(run.path))
        if len(by_id) > 1:
            listing = "; ".join(f"run {rid}: {', '.join(files)}" for rid, files in sorted(by_id.items()))
            raise MMBalanceError(
                f"{dataset}/{method}: cannot aggregate seeds of different runs (different resolved "
                f"configs) together: {listing}"
            )
        members.sort(key=lambda run: run.seed)
        for first, second in itertools.pairwise(members):
            if first.seed == second.seed:
                raise MMBalanceError(
                    f"{dataset}/{method}: seed {first.seed} given twice: {first.path}, {second.path}"
                )
            clips = [{k: v for k, v in run.cells.items() if k[0] == CLIPS} for run in (first, second)]
            if clips[0] != clips[1]:
                raise MMBalanceError(
                    f"{dataset}/{method}: {first.path} and {second.path} report different clip counts "
                    "(trained on different subsets of the dataset); extract and train them again"
                )
    return dict(sorted(groups.items()))


def _summary_rows(members: Sequence[_Run], ddof: int) -> list[dict[str, Any]]:
    """The summary rows of one (dataset, method) group."""
    keys = list(dict.fromkeys(key for run in members for key in run.cells))
    rows = []
    for key in keys:
        for run in members:
            if key not in run.cells:
                others = ", ".join(str(r.path) for r in members if key in r.cells)
                raise DataError(f"{run.path}: has no {'.'.join(key)}, which {others} report(s)")
        values = [run.cells[key] for run in members]
        mean, std = mean_std(values, ddof)
        protocol, split, head, metric = key
        rows.append(
            {
                "dataset": members[0].dataset,
                "method": members[0].method,
                "run_id": members[0].run_id,
                "protocol": protocol,
                "split": split,
                "head": head,
                "metric": metric,
                "mean": mean,
                "std": std,
                "n_seeds": len(members),
                "seeds": ";".join(str(run.seed) for run in members),
                "values": ";".join(repr(v) for v in values),
            }
        )
    return rows


def aggregate(metrics_files: Sequence[Path], out_csv: Path, ddof: int = 1) -> list[dict[str, Any]]:
    """Aggregate per-seed metrics into ``out_csv`` and return its rows.

    Args:
        metrics_files: ``metrics.json`` files, any number of datasets and methods, one run id per
            (dataset, method).
        out_csv: the long-format summary CSV to write (columns :data:`SUMMARY_COLUMNS`), written
            via a temporary file and ``os.replace``.
        ddof: delta degrees of freedom of the std over seeds (1: sample std, the papers' "mean ± std").

    Returns:
        The rows as dicts keyed by :data:`SUMMARY_COLUMNS` (``mean``/``std`` floats, NaN std when a
        group has ``n_seeds <= ddof``; ``n_seeds`` an int), sorted by (dataset, method).

    Raises:
        DataError: a metrics file is missing, corrupt, or lacks a value its sibling seeds have.
        MMBalanceError: no files, or seeds of one (dataset, method) come from different run ids or
            repeat a seed.
    """
    if not metrics_files:
        raise MMBalanceError(f"{out_csv}: no metrics files to aggregate")
    groups = _group_runs([_load_run(Path(path)) for path in metrics_files])
    rows = [row for members in groups.values() for row in _summary_rows(members, ddof)]
    with atomic_open(Path(out_csv), "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "mean": repr(row["mean"]), "std": repr(row["std"])} for row in rows)
    return rows


def read_summary(summary_csv: Path) -> list[dict[str, Any]]:
    """Read a summary CSV written by :func:`aggregate` (``mean``/``std`` as floats, ``n_seeds`` an int)."""
    summary_csv = Path(summary_csv)
    if not summary_csv.is_file():
        raise DataError(f"{summary_csv}: summary file not found")
    with summary_csv.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != SUMMARY_COLUMNS:
            raise DataError(f"{summary_csv}: not a summary CSV (columns {reader.fieldnames})")
        try:
            return [
                {**row, "mean": float(row["mean"]), "std": float(row["std"]), "n_seeds": int(row["n_seeds"])}
                for row in reader
            ]
        except (TypeError, ValueError) as exc:
            raise DataError(f"{summary_csv}: corrupt summary file (line {reader.line_num}: {exc})") from exc


def index_summary(
    rows: Sequence[Mapping[str, Any]], source: Path, dataset: str
) -> dict[tuple, Mapping[str, Any]]:
    """Summary rows of ``dataset`` keyed by (method, protocol, split, head, metric); no duplicates allowed."""
    index: dict[tuple, Mapping[str, Any]] = {}
    for row in rows:
        if row["dataset"] != dataset:
            continue
        key = (row["method"], row["protocol"], row["split"], row["head"], row["metric"])
        if key in index:
            raise DataError(
                f"{source}: {'/'.join(key)} appears twice (run ids {index[key]['run_id']}, {row['run_id']})"
            )
        index[key] = row
    return index

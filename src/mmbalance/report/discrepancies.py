"""The discrepancy table: the effect of each paper-vs-code switch on the metrics, per dataset.

Pairs of runs come from ``report/discrepancies.yaml``. For each pair and dataset: the first metric of
both runs (mean ± std over seeds), then switched − reference for every metric. The difference is
taken per seed when both runs have the same seeds (runs of one seed share the data order and, for the
same architecture, the initial weights), so its std is the spread of the paired differences;
otherwise it is the difference of the means, without a std.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from mmbalance.errors import ConfigError
from mmbalance.report.convergence import Marks
from mmbalance.report.layouts import OUR_METRICS
from mmbalance.report.paper_tables import PAPER_PROTOCOLS
from mmbalance.report.results import Results, Stat, paired_difference
from mmbalance.report.significance import Settings, compare, rule_notes
from mmbalance.report.tables import NO_STD, NOT_APPLICABLE, NOT_RUN, PROTOCOLS, Table, format_pct, write_table

DISCREPANCY_STEM = "discrepancies"
_PAIR_KEYS = {"method", "difference", "reference", "switched", "switch", "reads"}


@dataclass(frozen=True)
class Pair:
    """Two runs that differ in one paper-vs-code switch."""

    method: str
    difference: str
    reference: str
    switched: str
    switch: str
    reads: str


@functools.cache
def load_pairs() -> tuple[tuple[str, ...], tuple[Pair, ...]]:
    """The metrics (published labels, e.g. ``ACC``) and the pairs of ``discrepancies.yaml``."""
    path = Path(str(resources.files("mmbalance.report").joinpath("discrepancies.yaml")))
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    metrics = tuple(data["metrics"])
    unknown = [m for m in metrics if m not in OUR_METRICS]
    if not metrics or unknown:
        raise ConfigError(f"{path}: metrics {list(metrics)}: each must be one of {list(OUR_METRICS)}")
    pairs = []
    for i, entry in enumerate(data["pairs"]):
        if not isinstance(entry, dict) or set(entry) != _PAIR_KEYS:
            raise ConfigError(f"{path}: pairs[{i}]: expected exactly the keys {sorted(_PAIR_KEYS)}")
        pairs.append(Pair(**{key: str(value) for key, value in entry.items()}))
    return metrics, tuple(pairs)


def discrepancy_stems() -> list[str]:
    """Output stems, one per protocol of the paper tables."""
    return [f"{DISCREPANCY_STEM}_{protocol}" for protocol in PAPER_PROTOCOLS]


def _shown(
    results: Results, marks: Marks, dataset: str, method: str, protocol: str, metric: str, ddof: int
) -> str:
    """One run's mean ± std of ``metric``, or why there is none."""
    if not results.ran(dataset, method):
        return NOT_RUN
    values = results.values(dataset, method, protocol, "fused", OUR_METRICS[metric])
    if values is None:
        return NOT_APPLICABLE
    stat = Stat.of(values, ddof)
    return marks(format_pct(stat.mean, stat.std), dataset, method)


def _effect(
    results: Results,
    marks: Marks,
    dataset: str,
    pair: Pair,
    protocol: str,
    metric: str,
    ddof: int,
    settings: Settings | None,
) -> str:
    """switched − reference of ``metric``: paired per seed where the seeds agree; with ``settings``,
    the significance marks after the difference; the convergence mark when a run did not converge."""
    if not (results.ran(dataset, pair.reference) and results.ran(dataset, pair.switched)):
        return NOT_RUN
    key = OUR_METRICS[metric]
    first = results.values(dataset, pair.reference, protocol, "fused", key)
    second = results.values(dataset, pair.switched, protocol, "fused", key)
    if first is None or second is None:
        return NOT_APPLICABLE
    paired = paired_difference(first, second)
    if paired is not None:
        stat = Stat.of(paired, ddof)
        shown = format_pct(stat.mean, stat.std)
        if settings is not None:
            found = compare(results, dataset, pair.switched, pair.reference, protocol, settings, metric=key)
            mark = found.marks(settings.alpha) if found is not None else ""
            shown += f" {mark}" if mark else ""
    else:
        shown = format_pct(Stat.of(second, ddof).mean - Stat.of(first, ddof).mean, math.nan)
    return marks(shown, dataset, pair.reference, pair.switched)


def build_discrepancy_table(
    results: Results,
    datasets: Sequence[str],
    protocol: str,
    ddof: int = 1,
    pairs: Sequence[Pair] | None = None,
    settings: Settings | None = None,
) -> Table:
    """The discrepancy table under ``protocol``, one column group per dataset of ``datasets``; with
    ``settings``, the Δ ACC cells carry the significance marks (:mod:`mmbalance.report.significance`)."""
    metrics, default_pairs = load_pairs()
    pairs = default_pairs if pairs is None else pairs
    first = metrics[0]
    per_dataset = [f"{first} reference", f"{first} switched", *(f"Δ {m}" for m in metrics)]
    rows = []
    marks = Marks(results.unconverged)
    for pair in pairs:
        cells = [pair.method, pair.difference, f"{pair.reference} → {pair.switched}", pair.switch, pair.reads]
        for dataset in datasets:
            cells += [
                _shown(results, marks, dataset, run, protocol, first, ddof)
                for run in (pair.reference, pair.switched)
            ]
            cells += [
                _effect(
                    results,
                    marks,
                    dataset,
                    pair,
                    protocol,
                    metric,
                    ddof,
                    settings if metric == first else None,
                )
                for metric in metrics
            ]
        rows.append(cells)
    label, definition = PROTOCOLS[protocol]
    std_kind = "sample std (ddof=1)" if ddof == 1 else f"std with ddof={ddof}"
    return Table(
        header=["Method", "Difference", "Runs", "Switch", "Switched reads", *(per_dataset * len(datasets))],
        rows=rows,
        groups=[("", 5), *((dataset, len(per_dataset)) for dataset in datasets)],
        align="l" * 5 + "r" * (len(per_dataset) * len(datasets)),
        caption=f"Paper-vs-code discrepancies: effect of each switch on the fused test metrics — {label}",
        notes=[
            f"{label}: {definition}",
            f"Reference and switched: test-set mean ± {std_kind} over seeds (percent) of the fused "
            "prediction. Δ = switched − reference in points, per seed when both runs have the same seeds "
            f"(its std is the spread of the paired differences), else of the means ({NO_STD}). "
            f"{NOT_RUN} = no results; {NOT_APPLICABLE} = not logged.",
            "Each switched run is a variant in params.yaml that changes only the named switch of the "
            "reference (docs/methods.md lists the differences; the spec section is in brackets). "
            "'Switched reads' says whose reading the switch gives: the released code's, the paper's or "
            "BalanceBenchmark's.",
            *(
                _mark_notes(results, datasets, pairs, protocol, first, settings)
                if settings is not None
                else []
            ),
            *results.missing_clip_notes(datasets),
            *marks.notes(),
        ],
        label=f"tab:{DISCREPANCY_STEM}_{protocol}",
        wide=True,
    )


def _mark_notes(
    results: Results,
    datasets: Sequence[str],
    pairs: Sequence[Pair],
    protocol: str,
    first: str,
    settings: Settings,
) -> list[str]:
    """The significance rule for the marked Δ cells, with the fewest seeds any pair has."""
    seeds = [
        len(values)
        for dataset in datasets
        for pair in pairs
        if (values := results.values(dataset, pair.switched, protocol, "fused", OUR_METRICS[first]))
    ]
    notes = rule_notes(settings, min(seeds) if seeds else None, bootstrap=protocol == "val_selected")
    return [f"Δ {first}: {notes[0]}", *notes[1:]]


def write_discrepancy_tables(
    results: Results,
    out_dir: Path,
    datasets: Sequence[str],
    *,
    ddof: int = 1,
    settings: Settings | None = None,
) -> list[Path]:
    """Write the discrepancy table under each protocol (Markdown, CSV, LaTeX)."""
    written = []
    for protocol, stem in zip(PAPER_PROTOCOLS, discrepancy_stems(), strict=True):
        table = build_discrepancy_table(results, datasets, protocol, ddof, settings=settings)
        written += write_table(table, out_dir, stem)
    return written

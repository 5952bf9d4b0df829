""" "Ours only" tables: experiments of the papers whose published numbers are not available (AUG's
Tables 2–4), from ``report/studies.yaml``.

Each table is written per protocol (``<stem>_val_selected``, ``<stem>_best_test``): per dataset of the
experiment the fused ACC, MAP and macro-F1, each modality head's accuracy and Δ ACC = row − its
reference, paired per seed and marked by :mod:`mmbalance.report.significance`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from mmbalance.errors import ConfigError
from mmbalance.report.paper_tables import PAPER_PROTOCOLS
from mmbalance.report.results import Results, Stat
from mmbalance.report.significance import Settings, compare, rule_notes
from mmbalance.report.tables import NOT_APPLICABLE, NOT_RUN, PROTOCOLS, Table, format_pct, write_table

METRICS = (("ACC", "acc"), ("MAP", "map"), ("F1", "macro_f1"))
_TABLE_KEYS = {"title", "reference", "rows"}
_ROW_KEYS = {"label", "method", "reference"}


@dataclass(frozen=True)
class Row:
    label: str
    method: str
    reference: str


@dataclass(frozen=True)
class Study:
    stem: str
    title: str
    rows: tuple[Row, ...]


@functools.cache
def load_studies() -> tuple[Study, ...]:
    """The tables of ``studies.yaml``; a malformed entry is a :class:`ConfigError` naming it."""
    path = Path(str(resources.files("mmbalance.report").joinpath("studies.yaml")))
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    studies = []
    for stem, entry in data["tables"].items():
        if not isinstance(entry, dict) or set(entry) != _TABLE_KEYS:
            raise ConfigError(f"{path}: tables.{stem}: expected exactly the keys {sorted(_TABLE_KEYS)}")
        rows = []
        for i, row in enumerate(entry["rows"]):
            if not isinstance(row, dict) or not {"label", "method"} <= set(row) <= _ROW_KEYS:
                raise ConfigError(
                    f"{path}: tables.{stem}.rows[{i}]: keys label, method and optionally reference"
                )
            rows.append(
                Row(str(row["label"]), str(row["method"]), str(row.get("reference", entry["reference"])))
            )
        studies.append(Study(stem, str(entry["title"]), tuple(rows)))
    return tuple(studies)


def study_stems() -> list[str]:
    """Output stems: every table of ``studies.yaml`` once per protocol."""
    return [f"{study.stem}_{protocol}" for study in load_studies() for protocol in PAPER_PROTOCOLS]


def build_study_table(
    results: Results,
    study: Study,
    datasets: Sequence[str],
    modalities: Mapping[str, Sequence[str]],
    protocol: str,
    settings: Settings,
    ddof: int = 1,
) -> Table:
    """One study table under ``protocol``, a column group per dataset."""
    rows, seeds = [], set()
    for row in study.rows:
        cells = [row.label, row.method]
        for dataset in datasets:
            heads = [("fused", key) for _, key in METRICS] + [(m, "acc") for m in modalities[dataset]]
            if not results.ran(dataset, row.method):
                cells += [NOT_RUN] * (len(heads) + 1)
                continue
            for head, metric in heads:
                values = results.values(dataset, row.method, protocol, head, metric)
                if values:
                    seeds.add(len(values))
                cells.append(NOT_APPLICABLE if values is None else format_pct(*_mean_std(values, ddof)))
            if row.method == row.reference:
                cells.append(NOT_APPLICABLE)
                continue
            found = compare(results, dataset, row.method, row.reference, protocol, settings)
            cells.append(NOT_RUN if found is None else found.cell(settings.alpha, ddof))
        rows.append(cells)
    per_dataset = {
        d: [m for m, _ in METRICS] + [f"Acc {m}" for m in modalities[d]] + ["Δ ACC"] for d in datasets
    }
    label, definition = PROTOCOLS[protocol]
    std_kind = "sample std (ddof=1)" if ddof == 1 else f"std with ddof={ddof}"
    references = ", ".join(
        dict.fromkeys(f"{r.label}: {r.reference}" for r in study.rows if r.method != r.reference)
    )
    return Table(
        header=["Row", "Run", *(c for d in datasets for c in per_dataset[d])],
        rows=rows,
        groups=[("", 2), *((d, len(per_dataset[d])) for d in datasets)],
        align="ll" + "r" * sum(len(c) for c in per_dataset.values()),
        caption=f"{study.title} — {label}",
        notes=[
            "Ours only: the paper's numbers for this table are not available (paper_numbers/README.md).",
            f"{label}: {definition}",
            f"Cells: test-set mean ± {std_kind} over seeds (percent); ACC, MAP, F1 of the fused prediction, "
            f"Acc <modality> of that head. Δ ACC = the row − its reference, per seed ({references}).",
            *rule_notes(settings, min(seeds) if seeds else None, bootstrap=protocol == "val_selected"),
            *results.missing_clip_notes(datasets),
        ],
        label=f"tab:{study.stem}_{protocol}",
        wide=len(datasets) > 1,
    )


def _mean_std(values: Mapping[int, float], ddof: int) -> tuple[float, float]:
    stat = Stat.of(dict(values), ddof)
    return stat.mean, stat.std


def write_studies(
    results: Results,
    out_dir: Path,
    datasets: Sequence[str],
    modalities: Mapping[str, Sequence[str]],
    settings: Settings,
    *,
    ddof: int = 1,
) -> list[Path]:
    """Write every study table under each protocol (Markdown, CSV, LaTeX)."""
    written = []
    for study in load_studies():
        for protocol in PAPER_PROTOCOLS:
            table = build_study_table(results, study, datasets, modalities, protocol, settings, ddof)
            written += write_table(table, out_dir, f"{study.stem}_{protocol}")
    return written

"""Paper-table layouts: which published number and which of our numbers go in each cell.

One YAML file per paper table under ``report/layouts/`` (the file stem is the table's id and the stem
of its output files), plus ``report/datasets.yaml`` (our dataset names, the labels the CSVs use for
them, their modalities in the papers' order). A layout is data, so a new row, method, variant or
dataset needs no code::

    title: "LFM Table 1: …"          # the caption
    source: lfm_table1_main_comparison  # CSV stem under report/paper_numbers/ (default of every cell)
    row_header: Method               # label of the row-label column (default "Method")
    model_selection: true            # false: values from history.csv, one table instead of one per protocol
    columns: [...]                   # default sub-columns of a group that lists none
    groups:                          # one column group per paper dataset, in the paper's order
      - paper: KineticsSounds        # the CSVs' dataset label
        dataset: kinetics_sounds     # ours; default: the dataset of datasets.yaml with that label
        columns: [{label: ACC, metric: ACC}, {label: MAP, metric: MAP}]
    rows:
      - {label: Concat, method: concat}
      - {label: Unimodal-1, method: unimodal, head: 1}
    notes: ["…"]

A cell's spec is its sub-column's keys overridden by its row's (:data:`SPEC_KEYS`): ``method`` (our run
name: a registered method or a ``variants:`` name; a name with no results renders "not run"),
``paper_method`` (the CSVs' method label; default the row label), ``setting``, ``metric`` (the CSVs'
short metric label), ``head`` (``fused``, ``i`` = the dataset's i-th modality, or ``gap`` = the largest
minus the smallest modality head, per seed), ``history`` (a ``history.csv`` column, ``{modality}``
standing for the head's modality; our value is its last logged value) and ``source`` (a CSV stem).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mmbalance.errors import ConfigError, reject_unknown
from mmbalance.report.published import Published, shipped

SPEC_KEYS = frozenset({"method", "paper_method", "setting", "metric", "head", "history", "source"})
OUR_METRICS = {"ACC": "acc", "MAP": "map", "F1": "macro_f1", "MacroF1": "macro_f1"}
"""Published metric label → our metric key (``metrics.json``, ``summary.csv``)."""
FUSED, GAP = "fused", "gap"
_LAYOUT_KEYS = {"title", "source", "row_header", "model_selection", "columns", "groups", "rows", "notes"}
_DATASET_KEYS = {"labels", "stand_in", "modalities", "kind"}


@dataclass(frozen=True)
class DatasetInfo:
    """One entry of ``datasets.yaml``."""

    name: str
    labels: tuple[str, ...]
    kind: str
    modalities: tuple[str, ...] | None = None
    stand_in: bool = False

    def modality_order(self, registered: Sequence[str] | None) -> tuple[str, ...]:
        """The modalities in the papers' order; the ``registered`` order (the dataset's, None: unknown)
        where the file gives none."""
        registered = None if registered is None else tuple(registered)
        if self.modalities is None:
            if registered is None:
                raise ConfigError(f"datasets.yaml: {self.name}: no modalities listed and not registered")
            return registered
        if registered is not None and set(registered) != set(self.modalities):
            raise ConfigError(
                f"datasets.yaml: {self.name}: modalities {list(self.modalities)} differ from the "
                f"registered {list(registered)}"
            )
        return self.modalities


@dataclass(frozen=True)
class CellSpec:
    """What one cell shows: our value and the published value it is compared with."""

    method: str
    paper_method: str
    metric: str
    source: str
    setting: str = ""
    head: str | int = FUSED
    history: str | None = None

    @property
    def percent(self) -> bool:
        """Our value is a fraction shown in percent (summary metrics), not a raw number (history)."""
        return self.history is None


@dataclass(frozen=True)
class Column:
    label: str
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class Group:
    """A column group: one dataset. ``paper`` is None for a stand-in (ours only)."""

    dataset: str
    paper: str | None
    columns: tuple[Column, ...]

    @property
    def stand_in(self) -> bool:
        return self.paper is None

    @property
    def label(self) -> str:
        return f"{self.dataset} (ours only)" if self.stand_in else str(self.paper)


@dataclass(frozen=True)
class Row:
    label: str
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class Layout:
    """One paper table."""

    id: str
    title: str
    source: str
    row_header: str
    model_selection: bool
    groups: tuple[Group, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...]

    def spec(self, row: Row, column: Column) -> CellSpec:
        """The cell spec of ``row`` × ``column``: the column's keys, then the row's."""
        merged = {"source": self.source, "paper_method": row.label, **column.spec, **row.spec}
        return CellSpec(**merged)

    def cells(self, groups: Sequence[Group] | None = None) -> Iterator[tuple[Row, Group, Column, CellSpec]]:
        """Every cell, row by row, over ``groups`` (default: the layout's)."""
        for row in self.rows:
            for group in self.groups if groups is None else groups:
                for column in group.columns:
                    yield row, group, column, self.spec(row, column)

    def published(self, spec: CellSpec, group: Group) -> Published | None:
        """The published number of a cell (None for a stand-in or a cell the paper leaves empty)."""
        if group.paper is None:
            return None
        return shipped()[spec.source].get((spec.paper_method, group.paper, spec.setting, spec.metric))

    def stems(self, protocols: Sequence[str]) -> list[str]:
        """Output file stems: one per protocol, or the id alone without model selection."""
        return [f"{self.id}_{p}" for p in protocols] if self.model_selection else [self.id]

    def with_stand_ins(self, datasets: Sequence[str]) -> tuple[Group, ...]:
        """For each stand-in dataset of ``datasets``, a copy of the layout's first group of the same
        kind (ours only), then the layout's groups."""
        infos = dataset_infos()
        stand_ins = []
        for name in datasets:
            info = infos.get(name)
            if info is None or not info.stand_in:
                continue
            like = next((g for g in self.groups if infos[g.dataset].kind == info.kind), None)
            if like is not None:
                stand_ins.append(Group(name, None, like.columns))
        return (*stand_ins, *self.groups)


def _check_keys(where: str, entry: Any, allowed: set[str] | frozenset[str], required: Sequence[str]) -> None:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping, got {entry!r}")
    reject_unknown(sorted(entry), allowed, context=f"{where}: ")
    missing = [key for key in required if key not in entry]
    if missing:
        raise ConfigError(f"{where}: missing key '{missing[0]}'")


def _package_file(name: str) -> Path:
    return Path(str(resources.files("mmbalance.report").joinpath(name)))


@functools.cache
def dataset_infos() -> Mapping[str, DatasetInfo]:
    """``datasets.yaml`` by our dataset name."""
    path = _package_file("datasets.yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    infos = {}
    for name, entry in data.items():
        _check_keys(f"{path}: {name}", entry, _DATASET_KEYS, ("labels", "kind"))
        modalities = entry.get("modalities")
        infos[name] = DatasetInfo(
            name=name,
            labels=tuple(entry["labels"]),
            kind=entry["kind"],
            modalities=None if modalities is None else tuple(modalities),
            stand_in=bool(entry.get("stand_in", False)),
        )
    labels = [label for info in infos.values() for label in info.labels]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"{path}: label '{repeated[0]}' names two datasets")
    return infos


def _dataset_of(where: str, entry: Mapping[str, Any]) -> str:
    infos = dataset_infos()
    if "dataset" in entry:
        if entry["dataset"] not in infos:
            raise ConfigError(f"{where}: dataset '{entry['dataset']}' is not in datasets.yaml")
        return entry["dataset"]
    for info in infos.values():
        if entry["paper"] in info.labels:
            return info.name
    raise ConfigError(f"{where}: no dataset of datasets.yaml has the label '{entry['paper']}'")


def _check_spec(where: str, spec: Mapping[str, Any], layout_source: str) -> None:
    """Check the keys a cell spec may set and their values (a partial spec: a row or a sub-column)."""
    head = spec.get("head", FUSED)
    if not (head in (FUSED, GAP) or (isinstance(head, int) and not isinstance(head, bool) and head >= 1)):
        raise ConfigError(f"{where}: head {head!r} is not 'fused', 'gap' or a modality number >= 1")
    if "metric" in spec and "history" not in spec and spec["metric"] not in OUR_METRICS:
        raise ConfigError(
            f"{where}: metric '{spec['metric']}' has no counterpart of ours "
            f"({', '.join(OUR_METRICS)}); give a 'history' column"
        )
    if "{modality}" in spec.get("history", "") and not isinstance(head, int):
        raise ConfigError(f"{where}: history column {spec['history']!r} needs a modality number as head")
    source = spec.get("source", layout_source)
    if source not in shipped():
        raise ConfigError(f"{where}: source '{source}' is not a CSV of report/paper_numbers")


def _columns(where: str, entries: Any) -> tuple[Column, ...]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: columns must be a non-empty list")
    columns = []
    for i, entry in enumerate(entries):
        _check_keys(f"{where}[{i}]", entry, SPEC_KEYS | {"label"}, ("label",))
        columns.append(Column(str(entry["label"]), {k: v for k, v in entry.items() if k != "label"}))
    return tuple(columns)


def read_layout(path: Path) -> Layout:
    """One layout file, checked (keys, heads, metrics, sources, datasets, complete cell specs)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    _check_keys(str(path), data, _LAYOUT_KEYS, ("title", "source", "groups", "rows"))
    default_columns = data.get("columns")
    groups = []
    for i, entry in enumerate(data["groups"]):
        where = f"{path}: groups[{i}]"
        _check_keys(where, entry, {"paper", "dataset", "columns"}, ("paper",))
        columns = entry.get("columns", default_columns)
        if columns is None:
            raise ConfigError(f"{where}: no columns (and no layout-level 'columns')")
        groups.append(
            Group(_dataset_of(where, entry), str(entry["paper"]), _columns(f"{where}.columns", columns))
        )
    rows = []
    for i, entry in enumerate(data["rows"]):
        _check_keys(f"{path}: rows[{i}]", entry, SPEC_KEYS | {"label"}, ("label",))
        rows.append(Row(str(entry["label"]), {k: v for k, v in entry.items() if k != "label"}))
    layout = Layout(
        id=path.stem,
        title=str(data["title"]),
        source=str(data["source"]),
        row_header=str(data.get("row_header", "Method")),
        model_selection=bool(data.get("model_selection", True)),
        groups=tuple(groups),
        rows=tuple(rows),
        notes=tuple(str(note) for note in data.get("notes", ())),
    )
    for row in layout.rows:
        for group in layout.groups:
            for column in group.columns:
                where = f"{path}: row '{row.label}' × {group.paper} '{column.label}'"
                merged = {**column.spec, **row.spec}
                for key in ("method", "metric"):
                    if key not in merged:
                        raise ConfigError(f"{where}: no '{key}' (give it in the row or the column)")
                _check_spec(where, merged, layout.source)
    return layout


def layouts_dir() -> Path:
    return _package_file("layouts")


@functools.cache
def load_layouts() -> Mapping[str, Layout]:
    """Every shipped layout by id, in file-name order."""
    return {path.stem: read_layout(path) for path in sorted(layouts_dir().glob("*.yaml"))}

"""The protocol table: how much selecting the epoch on the test set inflates each method's accuracy.

For every method with results (``unimodal`` as one row per modality) and every dataset: the fused test
accuracy under validation selection (the headline), at the last epoch, and under best-on-test selection
(the papers' protocol), and the inflation best-on-test − val-selected, per seed, then mean ± std.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mmbalance.report.convergence import Marks
from mmbalance.report.results import Results, Stat, paired_difference
from mmbalance.report.tables import (
    NO_STD,
    NOT_APPLICABLE,
    NOT_RUN,
    PROTOCOLS,
    UNIMODAL,
    Table,
    format_pct,
    write_table,
)

PROTOCOL_STEM = "protocols"
COLUMNS = (
    ("val_selected", "val-selected"),
    ("last", "last epoch"),
    ("best_test", "best-on-test"),
)


def _entries(methods: Sequence[str], modalities: Mapping[str, Sequence[str]]) -> list[tuple[str, str, int]]:
    """(row label, method, head) per row; head 0 is the fused prediction, ``i`` the i-th modality:
    ``unimodal`` expands into one row per modality."""
    entries = []
    for method in methods:
        if method != UNIMODAL:
            entries.append((method, method, 0))
            continue
        for i in range(1, max(map(len, modalities.values()), default=0) + 1):
            names = {m[i - 1] for m in modalities.values() if len(m) >= i}
            suffix = f" ({names.pop()})" if len(names) == 1 else ""
            entries.append((f"Unimodal-{i}{suffix}", method, i))
    return entries


def _cells(
    results: Results, marks: Marks, dataset: str, method: str, head: str | None, ddof: int
) -> list[str]:
    if not results.ran(dataset, method):
        return [NOT_RUN] * (len(COLUMNS) + 1)
    if head is None:
        return [NOT_APPLICABLE] * (len(COLUMNS) + 1)
    values = {p: results.values(dataset, method, p, head, "acc") for p, _ in COLUMNS}
    cells = []
    for protocol, _ in COLUMNS:
        found = values[protocol]
        cells.append(NOT_APPLICABLE if found is None else format_pct(*_mean_std(found, ddof)))
    val, best = values["val_selected"], values["best_test"]
    inflation = None if val is None or best is None else paired_difference(val, best)
    cells.append(NOT_APPLICABLE if inflation is None else format_pct(*_mean_std(inflation, ddof)))
    return [cell if cell == NOT_APPLICABLE else marks(cell, dataset, method) for cell in cells]


def _mean_std(values: dict[int, float], ddof: int) -> tuple[float, float]:
    stat = Stat.of(values, ddof)
    return stat.mean, stat.std


def build_protocol_table(
    results: Results, methods: Sequence[str], modalities: Mapping[str, Sequence[str]], ddof: int = 1
) -> Table:
    """Rows: ``methods`` (``unimodal`` once per modality); a column group per dataset of ``modalities``
    (dataset → its modalities in order)."""
    datasets = list(modalities)
    per_dataset = [label for _, label in COLUMNS] + ["inflation"]
    rows = []
    marks = Marks(results.unconverged)
    for label, method, index in _entries(methods, modalities):
        cells = [label]
        for dataset in datasets:
            names = modalities[dataset]
            head = "fused" if index == 0 else (names[index - 1] if index <= len(names) else None)
            cells += _cells(results, marks, dataset, method, head, ddof)
        rows.append(cells)
    std_kind = "sample std (ddof=1)" if ddof == 1 else f"std with ddof={ddof}"
    return Table(
        header=["Method", *(per_dataset * len(datasets))],
        rows=rows,
        groups=[("", 1), *((dataset, len(per_dataset)) for dataset in datasets)],
        caption="Evaluation protocols: fused test accuracy (%) by model selection, and the inflation of "
        "best-on-test selection",
        notes=[
            *(f"{label}: {definition}" for label, definition in PROTOCOLS.values()),
            "last epoch: the final epoch's model.",
            "inflation = best-on-test − val-selected, per seed, then mean ± std: what choosing the epoch on "
            "the test set (the LFM, MIE and AUG code bases) adds to a number. Unimodal rows: each "
            "modality's own model, selected on its own accuracy.",
            f"Cells: mean ± {std_kind} over seeds in percent (points for the inflation); {NO_STD} = std "
            f"undefined; {NOT_RUN} = no results.",
            *results.missing_clip_notes(datasets),
            *marks.notes(),
        ],
        label=f"tab:{PROTOCOL_STEM}",
        wide=len(datasets) > 1,
    )


def write_protocol_table(
    results: Results,
    out_dir: Path,
    methods: Sequence[str],
    modalities: Mapping[str, Sequence[str]],
    *,
    ddof: int = 1,
) -> list[Path]:
    """Write ``protocols.{md,csv,tex}`` (see :func:`build_protocol_table`)."""
    table = build_protocol_table(results, methods, modalities, ddof)
    return write_table(table, out_dir, PROTOCOL_STEM)

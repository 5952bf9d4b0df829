"""``<dataset>_significance``: every method of the main table against Concat, with both tests' numbers.

For each method (``unimodal``, whose rows are single modalities, and the reference itself excepted):
Δ fused ACC = method − Concat per seed (mean ± std), the seed test's ``t`` and ``p``, the bootstrap's
observed Δ and interval, and the marks, under the val-selected protocol; the seed test under
best-on-test (its predictions are not kept, so no bootstrap). The same marks go on the main table's
val-selected ACC cells (:func:`main_table_marks`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from mmbalance.report.results import Results
from mmbalance.report.significance import Comparison, Settings, compare, rule_notes
from mmbalance.report.tables import NOT_APPLICABLE, NOT_RUN, UNIMODAL, Table, write_table

REFERENCE = "concat"
SIGNIFICANCE_STEM = "significance"


def _compared(methods: Sequence[str]) -> list[str]:
    return [m for m in methods if m not in (UNIMODAL, REFERENCE)]


def main_table_marks(
    results: Results, dataset: str, methods: Sequence[str], settings: Settings
) -> dict[str, str]:
    """Method → the marks of its val-selected fused ACC against Concat (empty: none, or not comparable)."""
    marks = {}
    for method in _compared(methods):
        found = compare(results, dataset, method, REFERENCE, "val_selected", settings)
        if found is not None:
            marks[method] = found.marks(settings.alpha)
    return marks


def main_table_notes(settings: Settings, dataset: str, n_seeds: int) -> list[str]:
    """The main table's notes on its marks (the numbers are in ``<dataset>_significance``)."""
    rule, *caveat = rule_notes(settings, n_seeds, bootstrap=True)
    return [
        f"Val-selected ACC against {REFERENCE} ({dataset}_{SIGNIFICANCE_STEM} has the numbers). {rule}",
        *caveat,
    ]


def _number(value: float, digits: int = 2) -> str:
    if math.isnan(value):
        return NOT_APPLICABLE
    return "∞" if math.isinf(value) else f"{value:.{digits}f}"


def _cells(found: Comparison | None, settings: Settings, ddof: int, bootstrap: bool) -> list[str]:
    width = 6 if bootstrap else 3
    if found is None:
        return [NOT_RUN] * width
    cells = [found.cell(settings.alpha, ddof), _number(found.seeds.t), _number(found.seeds.p, 3)]
    if bootstrap:
        boot = found.bootstrap
        cells += (
            [NOT_APPLICABLE] * 3
            if boot is None
            else [
                f"{100 * boot.delta:+.2f}",
                f"[{100 * boot.low:+.2f}, {100 * boot.high:+.2f}]",
                str(boot.n_samples),
            ]
        )
    return cells


def build_significance_table(
    results: Results, dataset: str, methods: Sequence[str], settings: Settings, ddof: int = 1
) -> Table:
    rows, n_seeds = [], set()
    for method in _compared(methods):
        if not results.ran(dataset, method) or not results.ran(dataset, REFERENCE):
            rows.append([method] + [NOT_RUN] * 9)
            continue
        val = compare(results, dataset, method, REFERENCE, "val_selected", settings)
        best = compare(results, dataset, method, REFERENCE, "best_test", settings)
        if val is not None:
            n_seeds.add(val.seeds.n)
        rows.append([method, *_cells(val, settings, ddof, True), *_cells(best, settings, ddof, False)])
    level = f"{100 * settings.level:g} % interval"
    return Table(
        header=["Method", "Δ ACC", "t", "p", "bootstrap Δ", level, "test samples", "Δ ACC", "t", "p"],
        rows=rows,
        groups=[("", 1), ("val-selected (ours)", 6), ("best-on-test (papers)", 3)],
        caption=f"{dataset}: is each method's fused test accuracy different from {REFERENCE}'s?",
        notes=[
            f"Δ ACC = method − {REFERENCE}, fused test accuracy per seed, then mean ± std over the common "
            "seeds (points), with the marks. t, p: the paired t-test over those seeds (two-sided). bootstrap "
            "Δ and its interval: the mean over seeds of the accuracy difference recomputed from the "
            "val-selected test predictions, resampling test samples (one draw for both runs and every seed).",
            *rule_notes(settings, min(n_seeds) if n_seeds else None, bootstrap=True),
        ],
        label=f"tab:{dataset}_{SIGNIFICANCE_STEM}",
        wide=True,
    )


def write_significance_table(
    results: Results,
    out_dir: Path,
    dataset: str,
    methods: Sequence[str],
    settings: Settings,
    *,
    ddof: int = 1,
) -> list[Path]:
    table = build_significance_table(results, dataset, methods, settings, ddof)
    return write_table(table, out_dir, f"{dataset}_{SIGNIFICANCE_STEM}")

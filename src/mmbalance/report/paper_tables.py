"""The papers' tables regenerated: every layout of ``report/layouts/`` with our numbers beside the
published ones.

Each cell of a paper dataset's column group is three columns: ours (test-set mean ± std over seeds,
under one model-selection protocol), the published number (± its std where the paper gives one) and
Δ = ours − published (means, in points for percentages). A run that has no results renders
"not run"; a value that is not applicable or not reported renders "—". A stand-in dataset (the
embedded ``synthav``) gets a group of our numbers only. One table is written per protocol
(``<id>_val_selected``, the headline, and ``<id>_best_test``, the papers' protocol); a layout
without model selection (values from ``history.csv``) is written once (``<id>``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from mmbalance.report.convergence import Marks
from mmbalance.report.layouts import (
    FUSED,
    GAP,
    OUR_METRICS,
    CellSpec,
    Group,
    Layout,
    Row,
    dataset_infos,
    load_layouts,
)
from mmbalance.report.published import Published, shipped_dir
from mmbalance.report.results import Results, SeedValues, Stat, spread
from mmbalance.report.tables import NO_STD, NOT_APPLICABLE, NOT_RUN, PROTOCOLS, Table, format_pct, write_table

PAPER_PROTOCOLS = ("val_selected", "best_test")
"""Model-selection protocols a paper table is written for; ``val_selected`` is the headline."""


def paper_table_stems(layouts: Mapping[str, Layout] | None = None) -> list[str]:
    """Every paper table's output stem, known before any result exists (the workflow's outputs)."""
    layouts = load_layouts() if layouts is None else layouts
    return [stem for layout in layouts.values() for stem in layout.stems(PAPER_PROTOCOLS)]


def _decimals(x: float) -> int:
    """Decimals that show 4 significant digits of ``x``, at most 1 from 100 up."""
    if x == 0 or not math.isfinite(x):
        return 1
    return 1 if abs(x) >= 100 else max(1, 3 - math.floor(math.log10(abs(x))))


def format_raw(mean: float, std: float) -> str:
    """A raw number's ``mean ± std``, both with the decimals of the mean (:func:`_decimals`)."""
    if math.isnan(mean):
        return NO_STD
    places = _decimals(mean)
    return f"{mean:.{places}f} ± {NO_STD if math.isnan(std) else f'{std:.{places}f}'}"


def format_delta(delta: float, percent: bool) -> str:
    """A signed difference: 2 decimals for percentage points, else :func:`_decimals`'s."""
    if math.isnan(delta):
        return NO_STD
    return f"{delta:+.{2 if percent else _decimals(delta)}f}"


def head_name(spec: CellSpec, modalities: Sequence[str]) -> str | None:
    """The summary head of a numbered head (None: the dataset has no such modality)."""
    if isinstance(spec.head, int):
        return modalities[spec.head - 1] if spec.head <= len(modalities) else None
    return spec.head


def our_values(
    results: Results, dataset: str, spec: CellSpec, protocol: str, modalities: Sequence[str]
) -> SeedValues | str:
    """Our per-seed values of a cell, or :data:`NOT_RUN` / :data:`NOT_APPLICABLE`."""
    if not results.ran(dataset, spec.method):
        return NOT_RUN
    heads = list(modalities) if spec.head == GAP else [head_name(spec, modalities)]
    per_head = []
    for head in heads:
        if head is None:
            return NOT_APPLICABLE
        if spec.history is not None:
            values = results.history_values(dataset, spec.method, spec.history.format(modality=head))
        else:
            values = results.values(dataset, spec.method, protocol, head, OUR_METRICS[spec.metric])
        if values is None:
            return NOT_APPLICABLE
        per_head.append(values)
    if spec.head == GAP:
        return spread(per_head) or NOT_APPLICABLE
    return per_head[0]


class _Notes:
    """Collects what a table's notes must say about the cells it rendered."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], tuple[int, str | None]] = {}
        self.caveats: dict[str, list[str]] = {}

    def used(self, dataset: str, method: str, n: int, run_id: str | None) -> None:
        self.runs[(dataset, method)] = (n, run_id)

    def published(self, row: Row, cell: Published) -> None:
        metric = f"published metric {cell.metric}: {cell.metric_caveat}" if cell.metric_caveat else ""
        for text in (cell.note, metric):
            if text:
                labels = self.caveats.setdefault(text, [])
                if row.label not in labels:
                    labels.append(row.label)

    def lines(self) -> list[str]:
        lines = []
        if self.runs:
            counts = {n for n, _ in self.runs.values()}
            same = len(counts) == 1
            runs = ", ".join(
                f"{d}/{m} {rid}" + ("" if same else f" ({n} seeds)") for (d, m), (n, rid) in self.runs.items()
            )
            prefix = f"Seeds: {counts.pop()} per run. " if same else ""
            lines.append(f"{prefix}Run ids: {runs}.")
        else:
            lines.append("No run of this table has results yet.")
        lines += [f"Caveat ({', '.join(labels)}): {text}" for text, labels in self.caveats.items()]
        return lines


def _ours_text(values: SeedValues | str, spec: CellSpec, ddof: int) -> tuple[str, float]:
    """Rendered ours and its mean (NaN when there is none)."""
    if isinstance(values, str):
        return values, math.nan
    stat = Stat.of(values, ddof)
    if spec.percent:
        return format_pct(stat.mean, stat.std), 100 * stat.mean
    return format_raw(stat.mean, stat.std), stat.mean


def build_paper_table(
    layout: Layout, results: Results, protocol: str | None, datasets: Sequence[str], ddof: int = 1
) -> Table:
    """The table of ``layout`` under ``protocol`` (None for a layout without model selection).

    Args:
        layout: the paper table.
        results: our numbers.
        protocol: ``val_selected`` or ``best_test``; ignored by history-based cells.
        datasets: the configured datasets; the stand-ins among them get a group of their own.
        ddof: delta degrees of freedom of the std over seeds.
    """
    infos = dataset_infos()
    groups = layout.with_stand_ins(datasets)
    with_run = any("method" in row.spec for row in layout.rows)
    header = [layout.row_header, *(["Run"] if with_run else [])]
    spans: list[tuple[str, int]] = [("", len(header))]
    for group in groups:
        labels = [[c.label] if group.stand_in else [f"{c.label} ours", f"{c.label} paper", f"{c.label} Δ"]
                  for c in group.columns]  # fmt: skip
        header += [label for trio in labels for label in trio]
        spans.append((group.label, sum(len(trio) for trio in labels)))
    notes = _Notes()
    marks = Marks(results.unconverged)
    rows = []
    for row in layout.rows:
        cells = [row.label]
        if with_run:
            cells.append(_run_label(row))
        for group in groups:
            has_results = group.dataset in results.datasets
            modalities = (
                infos[group.dataset].modality_order(results.modalities(group.dataset)) if has_results else ()
            )
            for column in group.columns:
                spec = layout.spec(row, column)
                values = our_values(results, group.dataset, spec, protocol or "last", modalities)
                if not isinstance(values, str):
                    run_id = results.run_id(group.dataset, spec.method)
                    notes.used(group.dataset, spec.method, len(values), run_id)
                ours, mean = _ours_text(values, spec, ddof)
                cells.append(ours if isinstance(values, str) else marks(ours, group.dataset, spec.method))
                if group.stand_in:
                    continue
                published = layout.published(spec, group)
                if published is None:
                    cells += [NOT_APPLICABLE, NOT_APPLICABLE]
                    continue
                notes.published(row, published)
                delta = mean - published.value
                shown = NOT_APPLICABLE if math.isnan(delta) else format_delta(delta, spec.percent)
                cells += [published.display(), shown]
        rows.append(cells)
    return Table(
        header=header,
        rows=rows,
        groups=spans,
        align="l" * spans[0][1] + "r" * (len(header) - spans[0][1]),
        caption=_caption(layout, protocol),
        notes=_table_notes(layout, protocol, groups, ddof)
        + notes.lines()
        + list(layout.notes)
        + results.missing_clip_notes([group.dataset for group in groups])
        + marks.notes(),
        label=f"tab:{layout.id}" + (f"_{protocol}" if protocol else ""),
        wide=True,
    )


def _run_label(row: Row) -> str:
    method = row.spec.get("method", "")
    head = row.spec.get("head", FUSED)
    if head == FUSED:
        return method
    return f"{method}, {'modality gap' if head == GAP else f'modality {head}'}"


def _caption(layout: Layout, protocol: str | None) -> str:
    if protocol is None:
        return f"{layout.title} (values at the end of training)"
    return f"{layout.title} — ours {PROTOCOLS[protocol][0]}"


def _table_notes(layout: Layout, protocol: str | None, groups: Sequence[Group], ddof: int) -> list[str]:
    std_kind = "sample std (ddof=1)" if ddof == 1 else f"std with ddof={ddof}"
    notes = [
        f"Published numbers: {shipped_dir().name}/{layout.source}.csv (see its README for the citation); "
        "the papers select the reported epoch on the test set (best-on-test).",
    ]
    if protocol is not None:
        label, definition = PROTOCOLS[protocol]
        notes.append(f"Ours: test set, {label}: {definition}")
    else:
        notes.append("Ours: the last value each run logs in history.csv; model selection does not apply.")
    notes.append(
        f"Cells: ours = mean ± {std_kind} over seeds (percent for accuracy, MAP, F1); paper = the published "
        f"number (± its std where reported); Δ = ours − paper (means; points for percentages); "
        f"{NOT_RUN} = no results for that run on that dataset; {NOT_APPLICABLE} = not applicable or not "
        f"reported; {NO_STD} = std undefined (one seed)."
    )
    named = ", ".join(f"{g.paper} = {g.dataset}" for g in groups if not g.stand_in)
    notes.append(f"Datasets (paper = ours): {named}.")
    if any(group.stand_in for group in groups):
        notes.append(
            "Ours-only groups are datasets without published numbers (the embedded synthav stands in for "
            "the papers' datasets of its kind); compare their rows with each other, not with the papers."
        )
    return notes


def write_paper_tables(
    results: Results,
    out_dir: Path,
    datasets: Sequence[str],
    *,
    ddof: int = 1,
    layouts: Mapping[str, Layout] | None = None,
) -> list[Path]:
    """Write every paper table (Markdown, CSV, LaTeX) under each protocol into ``out_dir``."""
    layouts = load_layouts() if layouts is None else layouts
    written = []
    for layout in layouts.values():
        protocols: Sequence[str | None] = PAPER_PROTOCOLS if layout.model_selection else (None,)
        for protocol, stem in zip(protocols, layout.stems(PAPER_PROTOCOLS), strict=True):
            table = build_paper_table(layout, results, protocol, datasets, ddof)
            written += write_table(table, out_dir, stem)
    return written

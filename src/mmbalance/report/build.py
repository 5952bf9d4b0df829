"""Every table and figure of ``mmbalance tables``: what it writes (:func:`report_outputs`, known before
any run exists) and writing it (:func:`write_report`), from a :class:`~mmbalance.report.plan.ReportPlan`,
the datasets' summaries and the finished runs' files.

The output names are spelt here and in the modules that write them, nowhere else: the CLI, the
workflow's rules and ``dvc.yaml``'s plots (checked by a test) take them from :func:`report_outputs`
through :mod:`mmbalance.pipeline`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

from mmbalance.report.costs import COST_STEM, write_training_cost
from mmbalance.report.discrepancies import discrepancy_stems, write_discrepancy_tables
from mmbalance.report.figures import (
    MODALITY_CURVES_STEM,
    MODALITY_GAP_STEM,
    SINGULAR_VALUES_STEM,
    plot_history_columns,
    plot_modality_curves,
    plot_modality_gap,
    plot_singular_values,
)
from mmbalance.report.headline import HEADLINE, write_headline_metrics
from mmbalance.report.paper_tables import paper_table_stems, write_paper_tables
from mmbalance.report.plan import ReportPlan
from mmbalance.report.protocol_table import PROTOCOL_STEM, write_protocol_table
from mmbalance.report.results import Results
from mmbalance.report.sensitivity import sweep_stem, write_sweeps
from mmbalance.report.significance_table import (
    SIGNIFICANCE_STEM,
    main_table_marks,
    main_table_notes,
    write_significance_table,
)
from mmbalance.report.studies import study_stems, write_studies
from mmbalance.report.tables import MAIN_STEM, TABLE_FORMATS, write_main_table
from mmbalance.runs.files import HISTORY, PREDICTIONS

OUTPUT_GROUPS = (
    "main_csv",
    "main_md",
    "main_tex",
    "paper_md",
    "paper_csv",
    "paper_tex",
    "comparisons",
    "curves",
    "gaps",
    "singular_values",
    "history_figures",
    "significance",
    "studies",
    "sweep_figures",
    "sweep_tables",
    "cost_tables",
    "cost_figures",
    "metrics",
)
"""The groups of :func:`report_outputs`, one per kind of output (the workflow shows each group in
its report under a category and caption of its own)."""


def report_outputs(plan: ReportPlan, out_dir: Path) -> dict[str, list[Path]]:
    """Every file :func:`write_report` writes into ``out_dir`` for ``plan``, by group
    (:data:`OUTPUT_GROUPS`)."""
    out_dir = Path(out_dir)

    def files(stems: Sequence[str], suffixes: Sequence[str]) -> list[Path]:
        return [out_dir / f"{stem}.{suffix}" for stem, suffix in itertools.product(stems, suffixes)]

    def per_dataset(stem: str) -> list[str]:
        return [f"{dataset}_{stem}" for dataset in plan.datasets]

    paper = paper_table_stems()
    sweeps = [sweep_stem(d, sweep.name) for d in plan.datasets for sweep in plan.sweeps[d]]
    curves = [f"{d}_{figure.stem}" for d in plan.datasets for figure in plan.curves[d]]
    return {
        "main_csv": files(per_dataset(MAIN_STEM), ["csv"]),
        "main_md": files(per_dataset(MAIN_STEM), ["md"]),
        "main_tex": files(per_dataset(MAIN_STEM), ["tex"]),
        "paper_md": files(paper, ["md"]),
        "paper_csv": files(paper, ["csv"]),
        "paper_tex": files(paper, ["tex"]),
        "comparisons": files([*discrepancy_stems(), PROTOCOL_STEM], TABLE_FORMATS),
        "curves": files(per_dataset(MODALITY_CURVES_STEM), plan.formats),
        "gaps": files(per_dataset(MODALITY_GAP_STEM), plan.formats),
        "singular_values": files(per_dataset(SINGULAR_VALUES_STEM), plan.formats),
        "history_figures": files(curves, plan.formats),
        "significance": files(per_dataset(SIGNIFICANCE_STEM), TABLE_FORMATS),
        "studies": files(study_stems(), TABLE_FORMATS),
        "sweep_figures": files(sweeps, plan.formats),
        "sweep_tables": files(sweeps, TABLE_FORMATS),
        "cost_tables": files(per_dataset(COST_STEM), TABLE_FORMATS),
        "cost_figures": files(per_dataset(COST_STEM), plan.formats),
        "metrics": [out_dir / HEADLINE],
    }


def write_report(
    plan: ReportPlan,
    summaries: Mapping[str, Path],
    runs: Mapping[str, Mapping[str, Sequence[Path]]],
    out_dir: Path,
) -> list[Path]:
    """Write every table and figure of ``plan`` into ``out_dir``; returns the written files.

    Args:
        plan: what to draw.
        summaries: dataset → its ``summary.csv`` (:func:`mmbalance.report.aggregate.aggregate`).
        runs: dataset → method → the run directories of its finished seeds.
        out_dir: the tables folder.
    """
    out_dir = Path(out_dir)
    ddof, formats, settings = plan.ddof, plan.formats, plan.settings
    methods = list(plan.methods)
    every = {d: {m: [run / HISTORY for run in dirs] for m, dirs in per.items()} for d, per in runs.items()}
    predictions = {
        d: {m: [run / PREDICTIONS for run in dirs] for m, dirs in per.items()} for d, per in runs.items()
    }
    results = Results(summaries, every, predictions, plan.facts)
    modalities = {dataset: list(plan.facts[dataset].modalities) for dataset in plan.datasets}
    written: list[Path] = []
    for dataset in plan.datasets:
        histories = {m: every[dataset].get(m, []) for m in methods}
        written += write_main_table(
            summaries[dataset],
            out_dir,
            dataset,
            methods,
            modalities[dataset],
            ddof=ddof,
            marks=main_table_marks(results, dataset, methods, settings),
            mark_notes=main_table_notes(settings, dataset, plan.n_seeds),
            facts=plan.facts[dataset],
        )
        written += write_significance_table(results, out_dir, dataset, methods, settings, ddof=ddof)
        written += write_sweeps(results, plan.sweeps[dataset], out_dir, dataset, formats, settings, ddof=ddof)
        costs = {m: list(runs[dataset].get(m, [])) for m in methods}
        written += write_training_cost(costs, out_dir, dataset, formats, ddof=ddof)
        figure = out_dir / f"{dataset}_{MODALITY_CURVES_STEM}"
        written += plot_modality_curves(histories, figure, modalities[dataset], formats, ddof=ddof)
        figure = out_dir / f"{dataset}_{MODALITY_GAP_STEM}"
        written += plot_modality_gap(histories, figure, modalities[dataset], formats, ddof=ddof)
        figure = out_dir / f"{dataset}_{SINGULAR_VALUES_STEM}"
        written += plot_singular_values(histories, figure, formats, ddof=ddof)
        for curves in plan.curves[dataset]:
            lines = {label: (histories[m], column) for label, (m, column) in curves.lines.items()}
            title = f"{dataset}: {curves.stem} per epoch"
            figure = out_dir / f"{dataset}_{curves.stem}"
            written += plot_history_columns(lines, figure, curves.ylabel, title, formats, ddof=ddof)
    datasets = list(plan.datasets)
    written += write_paper_tables(results, out_dir, datasets, ddof=ddof)
    written += write_discrepancy_tables(results, out_dir, datasets, ddof=ddof, settings=settings)
    written += write_studies(results, out_dir, datasets, modalities, settings, ddof=ddof)
    written += write_protocol_table(results, out_dir, methods, modalities, ddof=ddof)
    written.append(write_headline_metrics(summaries, out_dir / HEADLINE))
    return written

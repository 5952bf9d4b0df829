"""What a ``params.yaml`` plans, for the command line and the workflow: every path and every output.

The workflow (``workflow/rules/common.smk``) reads ``params.yaml`` with :mod:`mmbalance.config` and takes
every file name from here, the same functions the CLI writes with, so the two cannot disagree:

- the stages' files: :func:`raw_manifest`, :func:`feature_manifest`, :func:`run_matrix` and
  :func:`run_files`, :func:`summary_csv`, and their patterns with the rules' wildcards;
- the report's: :func:`report_outputs` (tables and figures by group), :func:`analysis_inputs` and
  :func:`analysis_outputs` (the papers' analyses), :func:`plots` (every figure, ``dvc.yaml``'s plots);
- the code each stage's outputs depend on: :func:`report_sources`, :func:`analysis_sources`.

:func:`report_plan` turns ``params.yaml`` and the registries (a dataset's modalities and footnote words,
the curves a method declares, the sweeps' points) into the plain :class:`~mmbalance.report.plan.ReportPlan`
the report package draws from, and :func:`write_tables` is ``mmbalance tables``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mmbalance.analysis
import mmbalance.report
import mmbalance.runs
from mmbalance import config, paths, sweeps
from mmbalance.data.datasets._base import MANIFEST
from mmbalance.errors import MMBalanceError
from mmbalance.registry import ANALYSES, DATASETS
from mmbalance.report.build import report_outputs as _report_outputs
from mmbalance.report.build import write_report
from mmbalance.report.outputs import replace_outputs
from mmbalance.report.plan import CurveFigure, DatasetFacts, ReportPlan, SweepPlan, SweepRow
from mmbalance.report.significance import Settings
from mmbalance.runs.matrix import finished_runs, summary_path

UNREPORTED_SUFFIXES = (".tex", ".npz")
"""Analysis outputs not shown in the workflow's report: LaTeX tables and the Grad-CAM maps."""


ID_PATTERN = f"[0-9a-f]{{{paths.HASH_LENGTH}}}"
"""A data, feature or run id's hash (the workflow's wildcard constraint)."""


# --- the stages' files ------------------------------------------------------------------------
def raw_manifest_pattern(params: Mapping[str, Any]) -> str:
    """The raw data's manifest with the ``{dataset}`` and ``{data_id}`` wildcards (the generate rule)."""
    return str(paths.raw_folder(params["paths"]["data"], "{dataset}", "{data_id}") / MANIFEST)


def feature_manifest_pattern(params: Mapping[str, Any]) -> str:
    """The feature store's manifest with the ``{dataset}`` and ``{feature_id}`` wildcards (the extract
    rule)."""
    return str(paths.feature_folder(params["paths"]["data"], "{dataset}", "{feature_id}") / MANIFEST)


def run_file_pattern(params: Mapping[str, Any], seed: int, name: str) -> str:
    """``name`` in the run directory of ``seed`` with the ``{dataset}``, ``{method}`` and ``{run_id}``
    wildcards (a train rule: one job trains every seed of a run)."""
    root = params["paths"]["results"]
    return str(paths.run_folder(root, "{dataset}", "{method}", "{run_id}", seed) / name)


def raw_manifest(params: Mapping[str, Any], dataset: str) -> Path:
    """The manifest that ``mmbalance generate`` writes last, for the configured data."""
    return paths.raw_dir(params, dataset) / MANIFEST


def feature_manifest(params: Mapping[str, Any], dataset: str) -> Path:
    """The manifest that ``mmbalance extract`` writes last, for the configured features."""
    return paths.feature_dir(params, dataset) / MANIFEST


def run_matrix(params: Mapping[str, Any]) -> dict[str, dict[str, list[int]]]:
    """Every run to train, ``{dataset: {method: seeds}}``: per experiment dataset the experiment's methods
    and the runs of its sensitivity sweeps (:func:`mmbalance.config.run_seeds`)."""
    return {dataset: config.run_seeds(params, dataset) for dataset in params["experiment"]["datasets"]}


def run_files(
    params: Mapping[str, Any], name: str, runs: Mapping[str, Mapping[str, Sequence[int]]] | None = None
) -> list[Path]:
    """``name`` (a file of :mod:`mmbalance.runs.files`) in the run directory of every run of ``runs``
    (default: :func:`run_matrix`; resolving it is the slow part, so a caller that asks often passes it)."""
    runs = run_matrix(params) if runs is None else runs
    return [
        paths.run_dir(params, dataset, method, seed) / name
        for dataset, per_method in runs.items()
        for method, seeds in per_method.items()
        for seed in seeds
    ]


def sweep_seeds(params: Mapping[str, Any]) -> list[int]:
    """The seeds every point of a sweep trains (the first ``experiment.sweep_seeds``)."""
    return sweeps.seeds(params)


def summary_csv(params: Mapping[str, Any], dataset: str) -> Path:
    """Mean ± std over seeds of one dataset's runs, where ``mmbalance tables`` reads it."""
    return summary_path(params, dataset)


# --- the report -------------------------------------------------------------------------------
def dataset_facts(dataset: str) -> DatasetFacts:
    """What the tables say about a registered dataset: its modalities and missing-clip words."""
    plugin = DATASETS.get(dataset)
    return DatasetFacts(tuple(plugin.modalities), plugin.unit, plugin.missing_reason)


def curve_figures(
    params: Mapping[str, Any], methods: Sequence[str], modalities: Sequence[str]
) -> list[CurveFigure]:
    """The per-epoch figures the methods (registered ones or variants in ``params``) declare
    (``Method.curves``), in order: one per declared ``history.csv`` column, with a line for every
    method that declares it (``{modality}`` in a column: one line per modality)."""
    figures: dict[str, CurveFigure] = {}
    for method in methods:
        for pattern, ylabel in config.method_class(params, method).curves.items():
            stem = pattern.replace("_{modality}", "").replace("{modality}", "")
            figure = figures.setdefault(stem, CurveFigure(stem, ylabel))
            if "{modality}" in pattern:
                for modality in modalities:
                    figure.lines[f"{method}: {modality}"] = (method, pattern.format(modality=modality))
            else:
                figure.lines[method] = (method, pattern)
    return list(figures.values())


def sweep_plans(params: Mapping[str, Any], dataset: str, rows: bool = True) -> tuple[SweepPlan, ...]:
    """The selected sweeps on ``dataset``, each with its points and the runs that serve them (``rows``;
    without them when only the output names are wanted: resolving the points is the slow part)."""
    plans = []
    for sweep in sweeps.selected_on(params, dataset):
        points = sweeps.points(params, sweep, dataset) if rows else []
        found = [SweepRow(tuple(p.values), p.run, p.is_default) for p in points]
        if rows and not any(p.is_default for p in points):
            default = config.method_options(params, sweep.method, dataset=dataset)
            found.append(SweepRow(tuple(default[o] for o in sweep.options), sweep.method, True))
        plans.append(
            SweepPlan(
                name=sweep.name,
                method=sweep.method,
                options=sweep.options,
                references=sweep.references,
                description=sweep.description,
                seeds=tuple(sweeps.seeds(params)),
                rows=tuple(found),
            )
        )
    return tuple(plans)


def report_plan(params: Mapping[str, Any], sweep_rows: bool = True) -> ReportPlan:
    """What ``mmbalance tables`` draws for ``params`` (:class:`~mmbalance.report.plan.ReportPlan`)."""
    datasets = tuple(params["experiment"]["datasets"])
    methods = tuple(config.experiment_methods(params))
    facts = {dataset: dataset_facts(dataset) for dataset in datasets}
    return ReportPlan(
        datasets=datasets,
        methods=methods,
        n_seeds=len(params["experiment"]["seeds"]),
        facts=facts,
        curves={d: tuple(curve_figures(params, methods, facts[d].modalities)) for d in datasets},
        sweeps={d: sweep_plans(params, d, rows=sweep_rows) for d in datasets},
        formats=tuple(params["report"]["figure_formats"]),
        ddof=params["report"]["std_ddof"],
        settings=Settings.of(params),
    )


def tables_dir(params: Mapping[str, Any]) -> Path:
    """The tables folder, ``paths.tables``."""
    return Path(params["paths"]["tables"])


def report_outputs(params: Mapping[str, Any], out_dir: Path | None = None) -> dict[str, list[Path]]:
    """Every file ``mmbalance tables`` writes, by group (:data:`mmbalance.report.build.OUTPUT_GROUPS`),
    into ``out_dir`` (default: the tables folder); known before any run exists."""
    plan = report_plan(params, sweep_rows=False)
    return _report_outputs(plan, tables_dir(params) if out_dir is None else Path(out_dir))


def write_tables(params: Mapping[str, Any], out_dir: Path | None = None) -> tuple[list[Path], list[Path]]:
    """``mmbalance tables``: every table and figure of :func:`report_outputs` from the summaries and the
    finished runs, then the files the previous call wrote and this one did not removed
    (:mod:`mmbalance.report.outputs`). Returns ``(written, removed)``."""
    out_dir = tables_dir(params) if out_dir is None else Path(out_dir)
    datasets = params["experiment"]["datasets"]
    summaries = {d: summary_path(params, d) for d in datasets}
    for dataset, summary in summaries.items():
        if not summary.is_file():
            raise MMBalanceError(f"{summary}: not found; run `mmbalance aggregate --dataset {dataset}` first")
    finished = {dataset: finished_runs(params, dataset) for dataset in datasets}
    written = write_report(report_plan(params), summaries, finished, out_dir)
    return written, replace_outputs(out_dir, written)


# --- the analyses -----------------------------------------------------------------------------
def analysis_names() -> list[str]:
    """Every registered analysis (:mod:`mmbalance.analysis`): one workflow rule each."""
    return ANALYSES.names()


def analysis_inputs(params: Mapping[str, Any], name: str) -> list[Path]:
    """The run files analysis ``name`` reads (the workflow trains those runs first), every dataset."""
    analysis = ANALYSES.get(name)(params)
    return [path for dataset in params["experiment"]["datasets"] for path in analysis.inputs(dataset)]


def analysis_outputs(
    params: Mapping[str, Any], name: str, reported: bool | None = None, out_dir: Path | None = None
) -> list[Path]:
    """Every file analysis ``name`` writes into ``out_dir`` (default: the tables folder), every dataset;
    only those the workflow's report shows (``reported=True``) or only the others (``False``)."""
    analysis = ANALYSES.get(name)(params)
    out_dir = tables_dir(params) if out_dir is None else Path(out_dir)
    return [
        path
        for dataset in params["experiment"]["datasets"]
        for path in analysis.outputs(dataset, out_dir)
        if reported is None or (path.suffix not in UNREPORTED_SUFFIXES) == reported
    ]


def plots(params: Mapping[str, Any], suffix: str = ".png") -> list[Path]:
    """Every figure of the tables and the analyses in one format (``dvc.yaml``'s plots), in order."""
    report = [path for files in report_outputs(params).values() for path in files]
    analyses = [path for name in ANALYSES.names() for path in analysis_outputs(params, name)]
    return [path for path in report + analyses if path.suffix == suffix]


# --- the code behind the outputs --------------------------------------------------------------
def _package_files(module: Any, pattern: str = "*") -> list[Path]:
    root = Path(module.__file__).parent
    return [path for path in root.rglob(pattern) if path.is_file() and "__pycache__" not in path.parts]


def report_sources() -> list[str]:
    """The tables' own sources: the report code, its layouts, the published numbers and the dataset
    labels, and the reader of the run files; editing one rebuilds the tables."""
    files = _package_files(mmbalance.report) + _package_files(mmbalance.runs, "*.py")
    return sorted(str(path) for path in files)


def analysis_sources() -> list[str]:
    """The analyses' sources and the report helpers they draw and tabulate with."""
    report = Path(mmbalance.report.__file__).parent
    files = [*_package_files(mmbalance.analysis, "*.py"), report / "figures.py", report / "tables.py"]
    return sorted(str(path) for path in files)

"""What the report is asked to draw, as plain data: the report's one input besides the run files.

A :class:`ReportPlan` says which datasets and methods the tables show, what a dataset's modalities are
and how its missing clips are worded, which per-epoch figures the methods declare and which
sensitivity sweeps to draw. :func:`mmbalance.pipeline.report_plan` makes it from ``params.yaml`` and
the registries; the report package itself reads no configuration and imports no method, engine
module or torch, so ``mmbalance tables`` needs only the plan, the summaries and the run files
(:mod:`mmbalance.runs.files`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mmbalance.report.significance import Settings


@dataclass(frozen=True)
class DatasetFacts:
    """What the tables say about a dataset: its modalities (the model's order) and, for its footnote on
    missing clips, what one sample is called (``clips``, ``posts``) and why some are missing."""

    modalities: tuple[str, ...]
    unit: str
    missing_reason: str


@dataclass
class CurveFigure:
    """A figure of ``history.csv`` columns that methods declare (``Method.curves``), named
    ``<dataset>_<stem>``: ``lines`` maps a legend label to (method, column)."""

    stem: str
    ylabel: str
    lines: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepRow:
    """One point of a sweep: its option values, the run that serves it and whether that is the swept
    method's own (default) run."""

    values: tuple[Any, ...]
    run: str
    is_default: bool


@dataclass(frozen=True)
class SweepPlan:
    """One selected sensitivity sweep on one dataset (:mod:`mmbalance.sweeps`).

    ``rows`` are the points in order, the swept method's default appended when no point is it; a plan
    made only to list the outputs (:func:`mmbalance.pipeline.report_plan` with ``sweep_rows=False``)
    leaves them empty.
    """

    name: str
    method: str
    options: tuple[str, ...]
    references: tuple[str, ...]
    description: str
    seeds: tuple[int, ...]
    rows: tuple[SweepRow, ...] = ()


@dataclass(frozen=True)
class ReportPlan:
    """Everything ``mmbalance tables`` draws, for one ``params.yaml``.

    Attributes:
        datasets: the experiment's datasets, in order.
        methods: the experiment's methods (rows of the main table), in order.
        n_seeds: the number of seeds of ``experiment.seeds``.
        facts: dataset → :class:`DatasetFacts`.
        curves: dataset → the per-epoch figures its methods declare.
        sweeps: dataset → the selected sweeps that apply to it.
        formats: the figure formats (``report.figure_formats``).
        ddof: the std convention over seeds (``report.std_ddof``).
        settings: the significance tests' settings (``report.significance``).
    """

    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    n_seeds: int
    facts: Mapping[str, DatasetFacts]
    curves: Mapping[str, tuple[CurveFigure, ...]]
    sweeps: Mapping[str, tuple[SweepPlan, ...]]
    formats: tuple[str, ...]
    ddof: int
    settings: Settings

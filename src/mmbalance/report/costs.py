"""Training cost per method (AUG Figure 5 for every method): wall time from ``history.csv``'s ``seconds``.

``<dataset>_training_cost``: a table (Markdown, CSV, LaTeX) and a bar chart (PNG/PDF) of the wall time
per run (the sum of ``seconds`` over its epochs) and per epoch, mean ± std over seeds, and the ratio
to Concat's per-run time; the notes name the machine(s) the times were measured on (``metrics.json``
``machine``). ``seconds`` covers an epoch's training steps and its evaluation of the validation and
test splits; it does not cover process start, data loading set-up or checkpoint writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.errors import DataError
from mmbalance.report.aggregate import mean_std
from mmbalance.report.figures import _new_figure, _save, _title_and_layout, wrap_title
from mmbalance.report.tables import NO_STD, NOT_APPLICABLE, NOT_RUN, Table, write_table
from mmbalance.runs.files import HISTORY, METRICS, history_columns, read_metrics

COST_STEM = "training_cost"
REFERENCE = "concat"


@dataclass(frozen=True)
class RunCost:
    """One run's epochs, total and per-epoch seconds, and the machine it trained on."""

    epochs: int
    total: float
    per_epoch: float
    machine: str


def run_cost(run_dir: Path) -> RunCost:
    """The cost of one finished run from its ``history.csv`` and ``metrics.json``."""
    history = history_columns(Path(run_dir) / HISTORY, {"seconds": "seconds"})
    if "seconds" not in history or np.isnan(history["seconds"]).any():
        raise DataError(f"{Path(run_dir) / HISTORY}: no 'seconds' for every epoch")
    seconds = history["seconds"]
    machine = read_metrics(Path(run_dir) / METRICS).get("machine")
    total = math.fsum(seconds)
    return RunCost(len(seconds), total, total / len(seconds), machine_label(machine))


def machine_label(machine: dict[str, Any] | None) -> str:
    """One line for a table note, e.g. ``AMD EPYC 7B13, 2 logical CPUs, 1 torch thread, no accelerator``."""
    if not machine:
        return "not recorded (runs trained before mmbalance recorded the machine)"
    threads = machine.get("torch_threads", "?")
    accelerator = machine.get("accelerator", "?")
    accel = "no accelerator" if accelerator.startswith("none") else accelerator
    system, torch_version = machine.get("system", "?"), machine.get("torch", "?")
    return (
        f"{machine.get('cpu', '?')}, {machine.get('logical_cpus', '?')} logical CPUs, {threads} torch "
        f"thread{'s' if threads != 1 else ''}, {accel}; {system}, torch {torch_version}"
    )


def _format_seconds(mean: float, std: float) -> str:
    spread = NO_STD if math.isnan(std) else f"{std:.1f}"
    return f"{mean:.1f} ± {spread}"


def build_cost_table(
    costs: Mapping[str, Sequence[RunCost]], dataset: str, ddof: int = 1
) -> tuple[Table, dict[str, tuple[float, float]]]:
    """The table, and per method with runs the mean ± std seconds per run (for the chart)."""
    reference = costs.get(REFERENCE) or []
    ref_mean = mean_std([c.total for c in reference], ddof)[0] if reference else math.nan
    rows, per_run = [], {}
    for method, runs in costs.items():
        if not runs:
            rows.append([method, NOT_RUN, NOT_RUN, NOT_RUN, NOT_RUN, NOT_RUN])
            continue
        total = mean_std([c.total for c in runs], ddof)
        epoch = mean_std([c.per_epoch for c in runs], ddof)
        per_run[method] = total
        epochs = sorted({c.epochs for c in runs})
        ratio = NOT_APPLICABLE if math.isnan(ref_mean) else f"{total[0] / ref_mean:.2f}×"
        rows.append(
            [
                method,
                "/".join(map(str, epochs)),
                str(len(runs)),
                _format_seconds(*epoch),
                _format_seconds(*total),
                ratio,
            ]
        )
    machines = sorted({c.machine for runs in costs.values() for c in runs})
    by_machine = [
        f"{m}: " + ", ".join(meth for meth, runs in costs.items() if any(c.machine == m for c in runs))
        for m in machines
    ]
    notes = [
        "Seconds: wall time of the training epochs including each epoch's evaluation of the validation and "
        "test splits (history.csv 'seconds'), not process start or checkpoint writes; per run = sum over "
        f"epochs; mean ± std over seeds. × {REFERENCE}: per-run time over {REFERENCE}'s.",
        "Measured on: " + (machines[0] if len(machines) == 1 else "; ".join(by_machine)) + "."
        if machines
        else "Measured on: no run has finished.",
        "Runs that trained side by side (snakemake --cores N) shared the machine, so these are times under "
        "that load; compare methods of one workflow run, not across machines.",
    ]
    table = Table(
        header=["Method", "Epochs", "Seeds", "Seconds per epoch", "Seconds per run", f"× {REFERENCE}"],
        rows=rows,
        caption=f"{dataset}: training cost per method (wall time, seconds)",
        notes=notes,
        label=f"tab:{dataset}_{COST_STEM}",
    )
    return table, per_run


def plot_costs(
    per_run: Mapping[str, tuple[float, float]], out_path: Path, title: str, formats: Sequence[str]
) -> list[Path]:
    """Horizontal bars: seconds per run (mean, ± std whiskers), one bar per method, in table order."""
    fig, axes = _new_figure(out_path, formats, 1)
    fig.set_size_inches(6.4, 1.2 + 0.22 * max(len(per_run), 1))
    ax = axes[0]
    names = list(per_run)
    means = np.array([per_run[n][0] for n in names])
    stds = np.nan_to_num(np.array([per_run[n][1] for n in names]))
    colours = ["C1" if n == REFERENCE else "C0" for n in names]
    ax.barh(np.arange(len(names)), means, xerr=stds, color=colours, capsize=2)
    ax.set_yticks(np.arange(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per run (mean ± std over seeds)")
    ax.grid(axis="x", alpha=0.3)
    if not names:
        ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes, color="grey")
    _title_and_layout(fig, title)
    return _save(fig, out_path, formats)


def write_training_cost(
    run_dirs: Mapping[str, Sequence[Path]],
    out_dir: Path,
    dataset: str,
    formats: Sequence[str],
    *,
    ddof: int = 1,
) -> list[Path]:
    """``<dataset>_training_cost`` table and chart for the methods of ``run_dirs`` (method → its
    finished seeds' run directories)."""
    costs = {method: [run_cost(d) for d in dirs] for method, dirs in run_dirs.items()}
    table, per_run = build_cost_table(costs, dataset, ddof)
    stem = f"{dataset}_{COST_STEM}"
    title = f"{dataset}: training time per run\n" + wrap_title(table.notes[1], 75)
    written = write_table(table, out_dir, stem)
    return written + plot_costs(per_run, Path(out_dir) / stem, title, formats)

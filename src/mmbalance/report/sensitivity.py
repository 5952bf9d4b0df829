"""Sensitivity sweeps (MIE Figure 4, AUG Figure 2, …): fused test accuracy against an option's value.

For every sweep of ``experiment.sweeps`` and dataset, ``<dataset>_sweep_<name>``:

* a figure (PNG/PDF): val-selected fused test accuracy, mean ± std over the sweep's seeds, against
  the value (a log axis when the values are positive and span two decades or more; categories
  when they are not numbers); the method's default marked with a star; each reference run (Concat,
  …) a horizontal line with its ± std band. A two-option sweep draws one line per value of the
  second option.
* a table (Markdown, CSV with the same numbers, LaTeX): per point the run that serves it, the
  accuracy, and the paired differences against the first reference and against the default, each
  marked by :mod:`mmbalance.report.significance`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.report.figures import _new_figure, _save, _title_and_layout, wrap_title
from mmbalance.report.plan import SweepPlan
from mmbalance.report.results import Results, Stat
from mmbalance.report.significance import Settings, compare, rule_notes
from mmbalance.report.tables import NOT_APPLICABLE, NOT_RUN, Table, format_pct, write_table

PROTOCOL = "val_selected"
LOG_SPAN = 100.0
"""Positive values spanning at least this ratio get a log axis."""


def sweep_stem(dataset: str, sweep: str) -> str:
    """The output stem of ``sweep`` on ``dataset``: ``<dataset>_sweep_<name>``."""
    return f"{dataset}_sweep_{sweep}"


def _x(value: Any) -> float | None:
    """A value's position on a numeric axis (a one-element list counts as its element), else None."""
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _label(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_label(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _rows(sweep: SweepPlan) -> list[tuple[tuple[Any, ...], str, bool]]:
    """(values, run, is default) per point of the sweep, the default run last when no point is it."""
    return [(row.values, row.run, row.is_default) for row in sweep.rows]


def _stat(results: Results, dataset: str, run: str, seeds: Sequence[int], ddof: int) -> Stat | None:
    values = results.values(dataset, run, PROTOCOL, "fused", "acc")
    if values is None:
        return None
    chosen = {s: v for s, v in values.items() if s in seeds}
    return Stat.of(chosen, ddof) if chosen else None


def build_sweep_table(
    results: Results,
    sweep: SweepPlan,
    dataset: str,
    settings: Settings,
    ddof: int = 1,
) -> Table:
    """The numbers behind one sweep's figure, with the paired differences and their marks."""
    seeds = list(sweep.seeds)
    reference = sweep.references[0] if sweep.references else None
    rows = []
    for values, run, is_default in _rows(sweep):
        cells = [_label(v) for v in values] + [run + (" (default)" if is_default else "")]
        stat = _stat(results, dataset, run, seeds, ddof)
        if stat is None:
            rows.append(cells + [NOT_RUN] * (1 + (reference is not None) + 1))
            continue
        cells.append(format_pct(stat.mean, stat.std))
        for other in ([reference] if reference else []) + [sweep.method]:
            if other == run:
                cells.append(NOT_APPLICABLE)
                continue
            found = compare(results, dataset, run, other, PROTOCOL, settings, seeds=seeds)
            cells.append(NOT_RUN if found is None else found.cell(settings.alpha, ddof))
        rows.append(cells)
    for name in sweep.references:
        stat = _stat(results, dataset, name, seeds, ddof)
        shown = NOT_RUN if stat is None else format_pct(stat.mean, stat.std)
        rows.append(
            ["reference"] * len(sweep.options)
            + [name, shown]
            + [NOT_APPLICABLE] * (1 + (reference is not None))
        )
    header = (
        [*sweep.options, "Run", "ACC"]
        + ([f"Δ ACC vs {reference}"] if reference else [])
        + ["Δ ACC vs default"]
    )
    std_kind = "sample std (ddof=1)" if ddof == 1 else f"std with ddof={ddof}"
    return Table(
        header=header,
        rows=rows,
        align="l" * (len(sweep.options) + 1) + "r" * (len(header) - len(sweep.options) - 1),
        caption=f"{dataset}: sweep {sweep.name} — {sweep.description or sweep.method}",
        notes=[
            f"Seeds: {', '.join(map(str, seeds))}. ACC: val-selected fused test accuracy, mean ± {std_kind} "
            "over those seeds (percent). Δ = the point − the named run, per seed, then mean ± std (points).",
            "Run: the run that serves the point — a point whose resolved configuration equals a run of the "
            "matrix is that run (trained once); (default) = the swept method's own configuration.",
            *rule_notes(settings, len(seeds), bootstrap=True),
        ],
        label=f"tab:{dataset}_sweep_{sweep.name}",
    )


def plot_sweep(
    results: Results,
    sweep: SweepPlan,
    dataset: str,
    out_path: Path,
    formats: Sequence[str],
    ddof: int = 1,
) -> list[Path]:
    """The sweep's figure (module docstring); points without results are left out and named in the title."""
    seeds = list(sweep.seeds)
    rows = _rows(sweep)
    first = [values[0] for values, _, _ in rows]
    numeric = all(_x(v) is not None for v in first)
    categories = list(dict.fromkeys(_label(v) for v in first))
    positions = {_label(v): (_x(v) if numeric else float(categories.index(_label(v)))) for v in first}
    fig, axes = _new_figure(out_path, formats, 1)
    fig.set_size_inches(6.4, 4.2)
    ax = axes[0]
    groups: dict[str, list[tuple[float, Stat, bool]]] = {}
    missing = []
    for values, run, is_default in rows:
        stat = _stat(results, dataset, run, seeds, ddof)
        if stat is None:
            missing.append(_label(values[0]) if len(values) == 1 else ", ".join(map(_label, values)))
            continue
        key = "" if len(values) == 1 else f"{sweep.options[1]} = {_label(values[1])}"
        groups.setdefault(key, []).append((positions[_label(values[0])], stat, is_default))
    for i, (key, points) in enumerate(groups.items()):
        points.sort(key=lambda p: p[0])
        xs = np.array([p[0] for p in points])
        means = np.array([100 * p[1].mean for p in points])
        stds = np.nan_to_num(np.array([100 * p[1].std for p in points]))
        colour = f"C{i}"
        ax.errorbar(xs, means, yerr=stds, color=colour, marker="o", capsize=3, linewidth=1.4,
                    label=key or sweep.method)  # fmt: skip
        for x, stat, is_default in points:
            if is_default:
                ax.plot([x], [100 * stat.mean], marker="*", markersize=15, color=colour, zorder=5,
                        markeredgecolor="black", linestyle="none")  # fmt: skip
    ax.plot([], [], marker="*", markersize=12, color="grey", markeredgecolor="black", linestyle="none",
            label="default")  # fmt: skip
    for j, name in enumerate(sweep.references):
        stat = _stat(results, dataset, name, seeds, ddof)
        if stat is None:
            continue
        colour = f"C{len(groups) + j}"
        ax.axhline(100 * stat.mean, color=colour, linestyle="--", linewidth=1.2, label=f"{name} (reference)")
        if not math.isnan(stat.std):
            low, high = 100 * (stat.mean - stat.std), 100 * (stat.mean + stat.std)
            ax.axhspan(low, high, color=colour, alpha=0.12, lw=0)
    xs = [positions[c] for c in categories]
    if not numeric:
        ax.set_xticks(xs, categories)
    elif min(xs) > 0 and max(xs) / min(xs) >= LOG_SPAN:
        ax.set_xscale("log")
    ax.set_xlabel(sweep.options[0])
    ax.set_ylabel("val-selected fused test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    title = f"{dataset}: {sweep.description or sweep.name}"
    note = f"mean ± std over {len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
    if missing:
        note += f"; not run: {'; '.join(missing)}"
    _title_and_layout(fig, f"{wrap_title(title)}\n({note})")
    return _save(fig, out_path, formats)


def write_sweeps(
    results: Results,
    sweeps: Sequence[SweepPlan],
    out_dir: Path,
    dataset: str,
    formats: Sequence[str],
    settings: Settings,
    *,
    ddof: int = 1,
) -> list[Path]:
    """Figure and table of every sweep of ``sweeps`` (the selected ones on ``dataset``)."""
    written = []
    for sweep in sweeps:
        stem = sweep_stem(dataset, sweep.name)
        written += plot_sweep(results, sweep, dataset, Path(out_dir) / stem, formats, ddof)
        written += write_table(build_sweep_table(results, sweep, dataset, settings, ddof), out_dir, stem)
    return written

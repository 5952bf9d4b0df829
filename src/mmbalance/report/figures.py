"""Figures from per-epoch ``history.csv`` files (matplotlib, Agg canvas; pyplot is never imported)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mmbalance.errors import DataError, MMBalanceError
from mmbalance.io import atomic_path
from mmbalance.runs.files import history_columns, history_header

MODALITY_CURVES_STEM = "modality_curves"
MODALITY_GAP_STEM = "modality_gap"
SINGULAR_VALUES_STEM = "singular_values"
"""The per-dataset figures of every run's history: ``<dataset>_<stem>``."""
DPI = 150
MAX_COLUMNS = 3
LEGEND_INSIDE = 6
"""Most lines a one-panel figure keeps its legend inside the axes for; more go to the right of it."""
LINE_STYLES = ("-", "--", "-.", ":")
TITLE_PAD = 0.1
"""Inches between the top edge of a figure and its title."""
# Metadata that would make two renders of the same data differ byte for byte.
_NO_TIMESTAMP = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


def _read_curves(path: Path, heads: Sequence[str]) -> dict[str, np.ndarray]:
    """Test accuracy per head (plus ``epoch``) from one ``history.csv``; absent head columns are left out."""
    return history_columns(path, {h: f"test_{h}_acc" for h in heads})


def _seed_stats(curves: Sequence[Mapping[str, np.ndarray]], head: str, ddof: int) -> tuple[np.ndarray, ...]:
    """Epochs, mean and std over seeds of one head; seeds that stopped early count only while they ran."""
    length = max(len(c["epoch"]) for c in curves)
    stack = np.full((len(curves), length), np.nan)
    for i, curve in enumerate(curves):
        stack[i, : len(curve[head])] = curve[head]
    epochs = next(c["epoch"] for c in curves if len(c["epoch"]) == length)
    count = np.sum(~np.isnan(stack), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(stack, axis=0) / count
        var = np.nansum((stack - mean) ** 2, axis=0) / (count - ddof)
    mean[count == 0] = np.nan
    var[count - ddof <= 0] = np.nan
    return epochs, mean, np.sqrt(var)


def _new_figure(
    out_path: Path, formats: Sequence[str], n_panels: int, columns: int | None = None, sharey: bool = True
) -> tuple[Figure, np.ndarray]:
    """A figure of ``n_panels`` axes, ``columns`` per row (at most :data:`MAX_COLUMNS` by default),
    returned flat in reading order; the panels share their y axis unless ``sharey`` is False."""
    n_columns = columns or min(MAX_COLUMNS, n_panels)
    n_rows = math.ceil(n_panels / n_columns)
    fig = Figure(figsize=(4.2 * n_columns, 3.3 * n_rows), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    unsupported = set(formats) - set(canvas.get_supported_filetypes())
    if unsupported:
        raise MMBalanceError(f"{out_path}: unsupported figure format(s) {sorted(unsupported)}")
    return fig, fig.subplots(n_rows, n_columns, squeeze=False, sharey=sharey).ravel()


def _title_and_layout(fig: Figure, title: str) -> None:
    """The figure's title a fixed distance below the top edge, whatever the figure's height (at the
    default fraction of the height it lands inside the first row of a tall grid); ``tight_layout``
    then lays the panels out below it."""
    fig.suptitle(title, fontsize=11, y=1.0 - TITLE_PAD / fig.get_size_inches()[1], va="top")
    fig.tight_layout()


def wrap_title(text: str, width: int = 70) -> str:
    """Break a long title into lines of at most about ``width`` characters, at spaces."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def _save(fig: Figure, out_path: Path, formats: Sequence[str]) -> list[Path]:
    written = []
    for fmt in formats:
        path = Path(out_path).with_suffix(f".{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_NO_TIMESTAMP.get(fmt))
        written.append(path)
    return written


def plot_history_columns(
    lines: Mapping[str, tuple[Sequence[Path], str]],
    out_path: Path,
    ylabel: str,
    title: str,
    formats: Sequence[str] = ("png",),
    *,
    ddof: int = 1,
) -> list[Path]:
    """One panel with a line per label: a ``history.csv`` column over epochs, mean ± std over seeds.

    Args:
        lines: label → (its seeds' ``history.csv`` files, the column to draw). A label with no files
            is listed as "not run" in the legend.
        out_path: output path; its suffix is replaced by each format's.
        ylabel, title: axis label and figure title.
        formats: matplotlib file formats.
        ddof: delta degrees of freedom of the band's std.

    Raises:
        DataError: a history file is missing or corrupt, or lacks the column.
        MMBalanceError: no lines, or an unsupported format.
    """
    if not lines:
        raise MMBalanceError(f"{out_path}: no lines to plot")
    fig, axes = _new_figure(out_path, formats, 1)
    outside = len(lines) > LEGEND_INSIDE
    fig.set_size_inches(6.4 + (2.8 if outside else 0.0), 4.2)
    ax = axes[0]
    for (label, (files, column)), (colour, style) in zip(lines.items(), line_styles(len(lines)), strict=True):
        curves = [history_columns(path, {"value": column}) for path in files]
        missing = [str(p) for p, curve in zip(files, curves, strict=True) if "value" not in curve]
        if missing:
            raise DataError(f"{', '.join(missing)}: no '{column}' column")
        if not curves:
            ax.plot([], [], color=colour, linestyle=style, label=f"{label} (not run)")
            continue
        epochs, mean, std = _seed_stats(curves, "value", ddof)
        ax.plot(epochs, mean, color=colour, linestyle=style, label=label, linewidth=1.4)
        ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if outside:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=8)
    _title_and_layout(fig, f"{title}\n(mean ± std over seeds)")
    return _save(fig, out_path, formats)


def plot_modality_curves(
    history_files: Mapping[str, Sequence[Path]],
    out_path: Path,
    modalities: Sequence[str],
    formats: Sequence[str] = ("png",),
    *,
    ddof: int = 1,
) -> list[Path]:
    """Plot per-epoch test accuracy of the fused and per-modality heads, one panel per method.

    Each curve is the mean over seeds with a ±std band (std with ``ddof``; no band with one seed).
    A head whose ``test_<head>_acc`` column is absent from all of a method's files is not drawn; a
    method with no files gets a "not run" panel.

    Args:
        history_files: method → its seeds' ``history.csv`` files, in panel order.
        out_path: output path; its suffix is replaced by each format's.
        modalities: the modality heads to draw besides ``fused``.
        formats: matplotlib file formats, e.g. ``("png", "pdf")``.
        ddof: delta degrees of freedom of the band's std.

    Returns:
        The written files, one per format (each via temp + rename).

    Raises:
        DataError: a history file is missing or corrupt, or only some seeds of a method log a head.
        MMBalanceError: no methods, or an unsupported format.
    """
    if not history_files:
        raise MMBalanceError(f"{out_path}: no methods to plot")
    heads = ["fused", *modalities]
    colours = {head: f"C{i}" for i, head in enumerate(heads)} | {"fused": "black"}
    fig, axes = _new_figure(out_path, formats, len(history_files))
    n_columns = min(MAX_COLUMNS, len(history_files))
    for ax, (method, files) in zip(axes, history_files.items(), strict=False):
        curves = [_read_curves(path, heads) for path in files]
        ax.set_title(f"{method} ({len(curves)} seed{'s' if len(curves) != 1 else ''})", fontsize=10)
        if not curves:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="grey")
        for head in heads:
            present = [head in curve for curve in curves]
            if not any(present):
                continue
            if not all(present):
                missing = ", ".join(str(p) for p, ok in zip(files, present, strict=True) if not ok)
                raise DataError(f"{missing}: no test_{head}_acc column, which other seeds of {method} have")
            epochs, mean, std = _seed_stats(curves, head, ddof)
            label = "fused" if head == "fused" else f"{head} head"
            ax.plot(
                epochs,
                100 * mean,
                color=colours[head],
                label=label,
                linewidth=1.6 if head == "fused" else 1.2,
            )
            ax.fill_between(
                epochs, 100 * (mean - std), 100 * (mean + std), color=colours[head], alpha=0.2, lw=0
            )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=8, loc="lower right")
    for ax in axes[len(history_files) :]:
        ax.set_visible(False)
    for ax in axes[::n_columns]:
        ax.set_ylabel("test accuracy (%)")
    _title_and_layout(fig, "Test accuracy per head (mean ± std over seeds)")
    return _save(fig, out_path, formats)


def _modality_gap(path: Path, modalities: Sequence[str]) -> dict[str, np.ndarray] | None:
    """Epochs and the largest minus the smallest modality-head test accuracy per epoch (None: the
    file has fewer than two modality heads)."""
    curves = _read_curves(path, modalities)
    heads = [m for m in modalities if m in curves]
    if len(heads) < 2:
        return None
    stacked = np.stack([curves[m] for m in heads])
    return {"epoch": curves["epoch"], "gap": stacked.max(axis=0) - stacked.min(axis=0)}


def plot_modality_gap(
    history_files: Mapping[str, Sequence[Path]],
    out_path: Path,
    modalities: Sequence[str],
    formats: Sequence[str] = ("png",),
    *,
    ddof: int = 1,
) -> list[Path]:
    """The modality performance gap over epochs, one panel per method (mean ± std over seeds).

    The gap is the largest minus the smallest test accuracy of the modality heads (``|audio − video|``
    for two), per seed and epoch. A method with no files gets a "not run" panel, one whose files
    have fewer than two modality heads a "no modality heads" panel.

    Raises:
        DataError: a history file is missing or corrupt, or only some seeds of a method log the heads.
        MMBalanceError: no methods, or an unsupported format.
    """
    if not history_files:
        raise MMBalanceError(f"{out_path}: no methods to plot")
    fig, axes = _new_figure(out_path, formats, len(history_files))
    n_columns = min(MAX_COLUMNS, len(history_files))
    for ax, (method, files) in zip(axes, history_files.items(), strict=False):
        gaps = [_modality_gap(path, modalities) for path in files]
        ax.set_title(f"{method} ({len(files)} seed{'s' if len(files) != 1 else ''})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not files or all(gap is None for gap in gaps):
            why = "not run" if not files else "no modality heads"
            ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="grey")
            continue
        if any(gap is None for gap in gaps):
            missing = ", ".join(str(p) for p, gap in zip(files, gaps, strict=True) if gap is None)
            raise DataError(f"{missing}: fewer than two modality heads, which other seeds of {method} log")
        epochs, mean, std = _seed_stats(gaps, "gap", ddof)
        ax.plot(epochs, 100 * mean, color="C3", linewidth=1.4)
        ax.fill_between(epochs, 100 * (mean - std), 100 * (mean + std), color="C3", alpha=0.2, lw=0)
    for ax in axes[len(history_files) :]:
        ax.set_visible(False)
    for ax in axes[::n_columns]:
        ax.set_ylabel("gap (accuracy points)")
    _title_and_layout(
        fig, "Modality performance gap: best − worst modality head on test (mean ± std over seeds)"
    )
    return _save(fig, out_path, formats)


def _colours(n: int) -> list[Any]:
    """Distinct line colours: the default cycle up to 10 lines, tab20 beyond."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    return [colormaps["tab20"](i % 20) for i in range(n)]


def line_styles(n: int) -> list[tuple[Any, str]]:
    """(colour, line style) of ``n`` lines, no two alike up to 40: :func:`_colours`, solid up to 10
    lines; beyond, tab20's dark and light shade of a hue are solid and dashed, and lines 21–40 repeat
    the colours dash-dotted and dotted."""
    if n <= 10:
        return [(colour, "-") for colour in _colours(n)]
    return [
        (colour, LINE_STYLES[(i % 2 + 2 * (i // 20)) % len(LINE_STYLES)])
        for i, colour in enumerate(_colours(n))
    ]


_SINGULAR = re.compile(r"^sv_(?P<modality>.+)_(?P<layer>[^_]+)_max$")


def _singular_columns(path: Path) -> list[tuple[str, str]]:
    """(modality, layer) of every ``sv_<modality>_<layer>_max`` column of one ``history.csv``."""
    return [(m["modality"], m["layer"]) for m in map(_SINGULAR.match, history_header(path)) if m]


def plot_singular_values(
    history_files: Mapping[str, Sequence[Path]],
    out_path: Path,
    formats: Sequence[str] = ("png",),
    *,
    ddof: int = 1,
) -> list[Path]:
    """MIE's singular values (MIE Tables 5 and 7) at each stage end: a row of panels per method that
    logs them (``mie`` and its variants), a column per head layer.

    Each panel has a colour per modality (the same in every panel): the largest singular value
    (solid) and the average (dashed), mean over seeds, on a log scale shared by all panels. Without
    any ``sv_<modality>_<layer>_max`` column the figure says so (no MIE run yet).

    Raises:
        DataError: a history file is missing or corrupt, or only some seeds of a method log a column.
        MMBalanceError: an unsupported format.
    """
    found = {
        method: sorted({column for path in files for column in _singular_columns(path)})
        for method, files in history_files.items()
    }
    found = {method: columns for method, columns in found.items() if columns}
    layers = sorted({layer for columns in found.values() for _, layer in columns})
    if not layers:
        fig, axes = _new_figure(out_path, formats, 1)
        axes[0].text(0.5, 0.5, "no singular values logged\n(mie runs log them at stage ends)", ha="center",
                     va="center", transform=axes[0].transAxes, color="grey")  # fmt: skip
        axes[0].set_axis_off()
        fig.tight_layout()
        return _save(fig, out_path, formats)
    modalities = list(dict.fromkeys(m for columns in found.values() for m, _ in columns))
    colours = dict(zip(modalities, _colours(len(modalities)), strict=True))
    fig, grid = _new_figure(out_path, formats, len(found) * len(layers), columns=len(layers))
    grid = grid.reshape(len(found), len(layers))
    for row, (method, columns) in zip(grid, found.items(), strict=True):
        for ax, layer in zip(row, layers, strict=True):
            for modality in modalities:
                if (modality, layer) not in columns:
                    continue
                for stat, style, name in (("max", "-", "max"), ("mean", "--", "average")):
                    column = f"sv_{modality}_{layer}_{stat}"
                    files = history_files[method]
                    curves = [history_columns(path, {"value": column}) for path in files]
                    missing = [str(p) for p, curve in zip(files, curves, strict=True) if "value" not in curve]
                    if missing:
                        raise DataError(f"{', '.join(missing)}: no '{column}' column, which other seeds have")
                    epochs, mean, _ = _seed_stats(curves, "value", ddof)
                    logged = np.isfinite(mean)
                    ax.plot(epochs[logged], mean[logged], style, marker="o", markersize=3,
                            color=colours[modality], label=f"{modality} ({name})")  # fmt: skip
            ax.set_title(f"{method}: head Linear '{layer}'", fontsize=9)
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        row[0].set_ylabel("singular value")
    for ax in grid[-1]:
        ax.set_xlabel("epoch (stage ends)")
    grid[0, -1].legend(fontsize=7)
    _title_and_layout(fig, "MIE: singular values of each head layer's input statistic (mean over seeds)")
    return _save(fig, out_path, formats)

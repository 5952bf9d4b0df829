"""The analyses' figures (matplotlib, Agg canvas; the layout helpers of :mod:`mmbalance.report.figures`).

Imported only when an analysis runs: matplotlib is not loaded by every command that validates params.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from mmbalance.report.figures import _colours, _new_figure, _save, _title_and_layout

STAGE_COLOURS = ("tab:green", "tab:blue", "tab:orange", "tab:purple")
"""Band colour of each modality's stages, in the dataset's modality order (MIE Figure 3: audio
green, video blue)."""


def _not_run(ax: Any, text: str = "not run") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def plot_representation_gap(
    curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    points: Mapping[str, Mapping[str, np.ndarray]],
    methods: Sequence[str],
    stem: Path,
    formats: Sequence[str],
    dataset: str,
) -> list[Path]:
    """Gap per epoch (one line per method and modality pair, mean ± std) and one PCA panel per method."""
    fig, axes = _new_figure(stem, formats, 1 + len(methods), sharey=False)
    ax = axes[0]
    colours = dict(zip(methods, _colours(len(methods)), strict=True))
    for method in methods:
        for pair, (mean, std) in curves.get(method, {}).items():
            epochs = np.arange(len(mean))
            label = method if len(curves[method]) == 1 else f"{method}: {pair.replace('_', '–')}"
            ax.plot(epochs, mean, color=colours[method], label=label, linewidth=1.4)
            ax.fill_between(epochs, mean - std, mean + std, color=colours[method], alpha=0.2, lw=0)
    ax.set_title("modality gap ‖c_a − c_b‖ per epoch (test)", fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel("gap (centroid distance)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    else:
        _not_run(ax, "no gap logged\n(not run, or features of different widths)")
    for ax, method in zip(axes[1:], methods, strict=False):
        ax.set_title(f"{method}: test features, last epoch (PCA)", fontsize=10)
        if method not in points:
            _not_run(ax, "not run" if method not in curves else "no projection")
            continue
        for colour, (modality, xy) in zip(_colours(len(points[method])), points[method].items(), strict=True):
            ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.4, color=colour, label=modality, linewidths=0)
            centre = xy.mean(axis=0)
            ax.scatter(*centre, marker="X", s=80, color=colour, edgecolors="black", linewidths=0.8)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, markerscale=3)
    for ax in axes[1 + len(methods) :]:
        ax.set_visible(False)
    _title_and_layout(fig, f"{dataset}: modality gap of the L2-normalised test features (LFM Figure 2)")
    return _save(fig, stem, formats)


def plot_label_fitting(
    bars: Mapping[str, Mapping[str, tuple[float, float]]],
    modalities: Sequence[str],
    stem: Path,
    formats: Sequence[str],
    dataset: str,
) -> list[Path]:
    """Grouped bars per label setting: fused and per-modality test accuracy; and the modality gap."""
    fig, axes = _new_figure(stem, formats, 2, sharey=False)
    labels = list(bars)
    x = np.arange(len(labels))
    heads = ["fused", *modalities]
    width = 0.8 / len(heads)
    colours = ["black", *_colours(len(modalities))]
    for i, (head, colour) in enumerate(zip(heads, colours, strict=True)):
        means = [100 * bars[lab][head][0] if bars[lab] else np.nan for lab in labels]
        stds = [100 * bars[lab][head][1] if bars[lab] else np.nan for lab in labels]
        name = head if head == "fused" else f"{head} head"
        axes[0].bar(
            x + (i - (len(heads) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            color=colour,
            label=name,
            capsize=3,
            alpha=0.85,
        )
    gaps = [100 * bars[lab]["gap"][0] if bars[lab] else np.nan for lab in labels]
    gap_stds = [100 * bars[lab]["gap"][1] if bars[lab] else np.nan for lab in labels]
    axes[1].bar(x, gaps, 0.5, yerr=gap_stds, color="C3", capsize=3, alpha=0.85)
    for ax, ylabel, title in (
        (axes[0], "test accuracy (%)", "accuracy per head"),
        (axes[1], "gap (accuracy points)", "best − worst modality head"),
    ):
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        for i, lab in enumerate(labels):
            if not bars[lab]:
                ax.text(i, 0, "not run", ha="center", va="bottom", color="grey", fontsize=8)
    axes[0].legend(fontsize=8)
    _title_and_layout(
        fig,
        f"{dataset}: Concat fitted to one-hot, uniform and mixed labels (LFM Figure 1; mean ± std, seeds)",
    )
    return _save(fig, stem, formats)


def plot_mie_stages(
    panels: Mapping[str, Mapping[str, Any] | None],
    modalities: Sequence[str],
    stem: Path,
    formats: Sequence[str],
    dataset: str,
) -> list[Path]:
    """One panel per method: per-head test accuracy per epoch over bands coloured by the trained modality."""
    fig, axes = _new_figure(stem, formats, len(panels))
    band = dict(zip(modalities, STAGE_COLOURS, strict=False))
    line = {"fused": "black", **band}  # a head's line in its modality's stage colour
    for ax, (method, panel) in zip(axes, panels.items(), strict=False):
        seeds = "" if panel is None else f" ({panel['seeds']} seed{'s' if panel['seeds'] != 1 else ''})"
        ax.set_title(f"{method}{seeds}", fontsize=10)
        if panel is None:
            _not_run(ax)
            continue
        for epoch, modality in enumerate(panel["stages"]):
            ax.axvspan(epoch - 0.5, epoch + 0.5, color=band.get(modality, "grey"), alpha=0.12, lw=0)
        for head, (mean, std) in panel["curves"].items():
            epochs = np.arange(len(mean))
            name = "fused" if head == "fused" else f"{head} head"
            ax.plot(
                epochs, 100 * mean, color=line[head], label=name, linewidth=1.6 if head == "fused" else 1.2
            )
            ax.fill_between(epochs, 100 * (mean - std), 100 * (mean + std), color=line[head], alpha=0.2, lw=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        stages = [Patch(color=band[m], alpha=0.3, label=f"{m} stage") for m in modalities if m in band]
        ax.legend(handles=[*handles, *stages], fontsize=7, loc="lower right")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    _title_and_layout(
        fig, f"{dataset}: accuracy per epoch, shaded by the modality each stage trains (MIE Figure 3)"
    )
    return _save(fig, stem, formats)


def plot_gradcam(
    grid: Mapping[str, Any],
    inputs: Mapping[str, Sequence[np.ndarray]],
    kinds: Mapping[str, str],
    modalities: Sequence[str],
    stem: Path,
    formats: Sequence[str],
    dataset: str,
) -> list[Path]:
    """Rows = methods × samples; per modality a column of inputs and one per epoch with the map overlaid."""
    methods, epochs, samples = list(grid["methods"]), grid["epochs"], grid["samples"]
    n_rows = max(1, len(methods) * len(samples))
    n_cols = max(1, len(modalities) * (1 + len(epochs)))
    fig, axes = _new_figure(stem, formats, n_rows * n_cols, columns=n_cols, sharey=False)
    fig.set_size_inches(1.9 * n_cols + 0.6, 1.9 * n_rows + 0.8)
    axes = axes.reshape(n_rows, n_cols)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if not modalities:
        _not_run(axes[0, 0], "no modality with a convolutional encoder")
    for block, method in enumerate(methods):
        maps = grid["methods"][method]
        for s, sample in enumerate(samples):
            row = axes[block * len(samples) + s]
            row[0].set_ylabel(f"{method}\n{sample}", fontsize=7)
            for j, modality in enumerate(modalities):
                base = j * (1 + len(epochs))
                _show_input(row[base], kinds[modality], inputs[modality][s])
                for k, epoch in enumerate(epochs):
                    ax = row[base + 1 + k]
                    if maps is None or (modality, epoch) not in maps:
                        _not_run(ax, "not run" if maps is None else "—")
                        continue
                    _show_input(ax, kinds[modality], inputs[modality][s])
                    cam = maps[(modality, epoch)][s]
                    ax.imshow(
                        cam,
                        cmap="jet",
                        alpha=0.45,
                        vmin=0.0,
                        vmax=1.0,
                        aspect="auto",
                        origin="lower" if kinds[modality] == "spectrogram" else "upper",
                    )
    for j, modality in enumerate(modalities):
        base = j * (1 + len(epochs))
        axes[0, base].set_title(f"{modality} input", fontsize=8)
        for k, epoch in enumerate(epochs):
            axes[0, base + 1 + k].set_title(f"{modality}, epoch {epoch}", fontsize=8)
    _title_and_layout(fig, f"{dataset}: Grad-CAM for the true class (LFM Figure 4, AUG Figure 4)")
    return _save(fig, stem, formats)


def _show_input(ax: Any, kind: str, x: np.ndarray) -> None:
    if kind == "spectrogram":
        ax.imshow(x, cmap="magma", aspect="auto", origin="lower")
    else:
        ax.imshow(x, aspect="auto")


def plot_loss_landscape(
    surfaces: Mapping[str, Any], modalities: Sequence[str], stem: Path, formats: Sequence[str], dataset: str
) -> list[Path]:
    """Rows = modalities; columns = one 2-D contour per method (shared colour scale per row) and the 1-D
    curves of all methods."""
    methods = list(surfaces["methods"])
    n_cols = len(methods) + 1
    fig, axes = _new_figure(stem, formats, len(modalities) * n_cols, columns=n_cols, sharey=False)
    axes = axes.reshape(len(modalities), n_cols)
    side, line = surfaces["side"], surfaces["line"]
    colours = dict(zip(methods, _colours(len(methods)), strict=True))
    for r, modality in enumerate(modalities):
        row = axes[r]
        found = {m: s[modality] for m, s in surfaces["methods"].items() if s is not None}
        levels, norm = None, None
        if found:
            low = min(float(two.min()) for _, two in found.values())
            high = max(float(two.max()) for _, two in found.values())
            high = high if high > low else low + 1e-6
            # Log scale: the rise far from the weights would otherwise flatten the basin's contours.
            norm = LogNorm(low, high) if low > 0 else Normalize(low, high)
            levels = np.geomspace(low, high, 15) if low > 0 else np.linspace(low, high, 15)
        for ax, method in zip(row, methods, strict=False):
            ax.set_title(f"{method}: {modality}", fontsize=10)
            if method not in found:
                _not_run(ax)
                continue
            filled = ax.contourf(side, side, found[method][1].T, levels=levels, cmap="viridis", norm=norm)
            ax.contour(side, side, found[method][1].T, levels=levels, colors="white", linewidths=0.3)
            ax.plot(0, 0, marker="*", color="red", markersize=8)
            ax.set_xlabel("α (direction 1)")
            ax.set_ylabel("β (direction 2)")
        if found:
            bar = fig.colorbar(
                filled, ax=row[len(methods) - 1], label="training loss", ticks=levels[::2], format="%.3g"
            )
            bar.minorticks_off()
        ax = row[-1]
        for method, (one, _) in found.items():
            ax.plot(line, one, color=colours[method], label=method, linewidth=1.4)
        ax.set_title(f"{modality}: 1-D (direction 1)", fontsize=10)
        ax.set_xlabel("α")
        ax.set_ylabel("training loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if found:
            ax.legend(fontsize=8)
    _title_and_layout(
        fig, f"{dataset}: loss landscape per modality, filter-normalised directions (MIE Figures 5–6)"
    )
    return _save(fig, stem, formats)

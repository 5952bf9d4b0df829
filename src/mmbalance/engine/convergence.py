"""Has a run converged? A rule on the validation accuracy of the last quarter of its schedule.

Every method trains for the same fixed number of epochs (the papers' protocol: no early stopping),
so a run can end before its accuracy has stopped rising. The rule flags such a run from its
``history.csv`` alone. Let ``E`` be the number of epochs, the *window* the last ``w = ⌈E/4⌉``
epochs, ``δ`` the margin (:data:`MARGIN`, 2 accuracy points) and ``ŷ`` the least-squares line
through the window's accuracies. A selection series (the fused validation accuracy; each head's
for methods that select per head, such as ``unimodal``) has converged when the level the window
reaches, by its best epoch or by its trend, is at most ``δ`` above the best of the earlier epochs::

    max( max(window), ŷ(last epoch) ) − max(earlier epochs) ≤ δ

A run still climbing fails (its trend ends above everything before); a run that jumped to a new
level in its last quarter fails (a new best); a flat run passes; a run that dipped and recovered
to its earlier level passes; a run that peaked and then overfitted passes, because more epochs
would not raise it. ``δ`` is about the binomial standard error of one validation accuracy near
85 % on synthav's 240 validation clips (2.3 points), so an epoch-to-epoch fluctuation is not read
as progress. A run needs at least 4 epochs to have a window and earlier epochs; shorter runs are
reported as not converged.

A run whose losses became infinite or NaN has **diverged**: its accuracy falls to chance, which the
rule alone would read as settled. Any non-finite value in a ``*loss*`` column of the history marks
the run diverged, and a diverged run has not converged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MARGIN = 0.02
"""δ: the accuracy (a fraction) by which the last quarter may rise, by trend or by a new best, and be flat."""
MIN_EPOCHS = 4
_TOLERANCE = 1e-9  # float rounding: a rise of exactly the margin counts as within it

RULE = (
    "on the validation accuracy used for selection, with the last quarter of the epochs as window: "
    "max(best of the window, its least-squares line at the last epoch) - best of the earlier epochs <= margin"
)


def least_squares_slope(values: Sequence[float]) -> float:
    """Slope of the least-squares line through ``(i, values[i])``; 0 for fewer than two points."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    covariance = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(values))
    variance = sum((i - mean_x) ** 2 for i in range(n))
    return covariance / variance


def series_convergence(values: Sequence[float], margin: float = MARGIN) -> dict[str, Any]:
    """The rule on one validation-accuracy series (one value per epoch, in order)."""
    epochs = len(values)
    best_epoch = max(range(epochs), key=lambda i: (values[i], -i)) if epochs else None
    if epochs < MIN_EPOCHS:
        return {"converged": False, "best_epoch": best_epoch, "window": 0, "slope": None, "window_gain": None}
    window = math.ceil(epochs / 4)
    last, earlier = list(values[-window:]), list(values[:-window])
    slope = least_squares_slope(last)
    trend_end = sum(last) / window + slope * (window - 1) / 2
    gain = max(max(last), trend_end) - max(earlier)
    return {
        "converged": gain <= margin + _TOLERANCE,
        "best_epoch": best_epoch,
        "window": window,
        "slope": slope,
        "window_gain": gain,
    }


def diverged(history: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any logged loss (a column whose name contains ``loss``) is infinite or NaN."""
    for row in history:
        for key, value in row.items():
            if "loss" in key and value not in ("", None) and not math.isfinite(float(value)):
                return True
    return False


def run_convergence(
    history: Sequence[Mapping[str, Any]], heads: Sequence[str], per_head: bool, margin: float = MARGIN
) -> dict[str, Any]:
    """``metrics.json``'s ``convergence``: the rule per selection series and for the whole run.

    Joint models select every head by the fused validation accuracy, so that one series decides;
    methods whose heads are separate models (``per_head``) have converged when every head has; a
    run that diverged has not converged.
    """
    series = list(heads) if per_head else ["fused"]
    by_series = {
        key: series_convergence([float(row[f"val_{key}_acc"]) for row in history], margin) for key in series
    }
    broken = diverged(history)
    if broken:
        for entry in by_series.values():
            entry["converged"] = False
    return {
        "converged": not broken and all(entry["converged"] for entry in by_series.values()),
        "diverged": broken,
        "margin": margin,
        "rule": RULE,
        "series": by_series,
    }

"""Which per-epoch figures the configured methods ask for (``Method.curves``).

One figure per declared ``history.csv`` column, named ``<dataset>_<stem>``, with a line for every
method of the matrix that declares it (e.g. ``alpha`` for the LFM presets, LFM Figure 3;
``classifiers_{modality}`` for AUG, one line per modality). Used by ``mmbalance tables`` and by
the workflow, which must know the output files before they exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmbalance.config import method_class


@dataclass
class CurveFigure:
    """A figure of history columns: ``lines`` maps a legend label to (method, column)."""

    stem: str
    ylabel: str
    lines: dict[str, tuple[str, str]] = field(default_factory=dict)


def curve_figures(
    params: Mapping[str, Any], methods: Sequence[str], modalities: Sequence[str]
) -> list[CurveFigure]:
    """The figures the methods (registered ones or variants in ``params``) declare, in order."""
    figures: dict[str, CurveFigure] = {}
    for method in methods:
        for pattern, ylabel in method_class(params, method).curves.items():
            stem = pattern.replace("_{modality}", "").replace("{modality}", "")
            figure = figures.setdefault(stem, CurveFigure(stem, ylabel))
            if "{modality}" in pattern:
                for modality in modalities:
                    figure.lines[f"{method}: {modality}"] = (method, pattern.format(modality=modality))
            else:
                figure.lines[method] = (method, pattern)
    return list(figures.values())

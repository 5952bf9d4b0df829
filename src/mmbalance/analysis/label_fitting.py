"""LFM Figure 1 (§1): per-modality accuracy of Concat fitted to one-hot, uniform and mixed labels.

The runs are Concat variants with ``uniform_labels`` u (:class:`mmbalance.methods.fusion_baselines.Concat`):
loss ``(1 − u)·L_S + u·L_U`` — ``u = 0`` one-hot labels (``L_S``, plain Concat), ``u = 1`` uniform
labels (``L_U``, "label free"), ``u = 0.3`` LFM's ``0.7 L_S + 0.3 L_U``. For each, the test accuracy of
the fused prediction and of each modality's head at the val-selected epoch (``metrics.json``), and the
gap between the best and the worst modality head, mean ± std over seeds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mmbalance import config
from mmbalance.analysis._base import Analysis
from mmbalance.errors import ConfigError, DataError
from mmbalance.io import write_csv
from mmbalance.registry import register_analysis
from mmbalance.report.aggregate import mean_std
from mmbalance.runs.files import METRICS, read_metrics

PROTOCOL = "val_selected"


def label_name(u: float) -> str:
    """``L_S`` (u = 0), ``L_U`` (u = 1), else ``(1−u) L_S + u L_U`` as LFM writes it."""
    if u == 0.0:
        return "L_S (one-hot)"
    if u == 1.0:
        return "L_U (uniform)"
    return f"{1.0 - u:g} L_S + {u:g} L_U"


def test_accuracies(metrics_file: Path, heads: list[str]) -> dict[str, float]:
    """The val-selected test accuracy of each head in one run's ``metrics.json``."""
    try:
        chosen = read_metrics(metrics_file)["protocols"][PROTOCOL]["test"]
        return {h: float(chosen[h]["acc"]) for h in heads}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{metrics_file}: no {PROTOCOL} test accuracy of the heads {heads} ({exc})") from exc


@register_analysis("label_fitting")
class LabelFitting(Analysis):
    """Per-modality accuracies and their gap under one-hot, uniform and mixed labels (LFM Figure 1)."""

    name = "label_fitting"

    @dataclasses.dataclass
    class Options:
        methods: list = dataclasses.field(
            default_factory=lambda: ["concat", "concat_uniform_labels", "concat_mixed_labels"]
        )
        """Concat and its variants with ``uniform_labels`` 1.0 and 0.3 (``variants`` in params.yaml)."""

    def uniform_weight(self, method: str, dataset: str) -> float:
        if config.base_method(self.params, method) != "concat":
            raise ConfigError(f"analysis.label_fitting.methods: '{method}' is not Concat or a variant of it")
        return float(config.method_options(self.params, method, dataset=dataset)["uniform_labels"])

    def outputs(self, dataset: str, out_dir: Path) -> list[Path]:
        return [*self.figure_files(dataset, out_dir), Path(out_dir) / f"{self.stem(dataset)}.csv"]

    def run(self, dataset: str, out_dir: Path) -> list[Path]:
        from mmbalance.analysis._figures import plot_label_fitting

        modalities = self.modalities(dataset)
        heads = ["fused", *modalities]
        ddof = self.params["report"]["std_ddof"]
        bars: dict[str, dict[str, tuple[float, float]]] = {}
        rows: list[dict[str, Any]] = []
        for method in self.options.methods:
            u = self.uniform_weight(method, dataset)
            if method not in self.methods():
                bars[label_name(u)] = {}  # drawn as "not run"
                continue
            seeds = [test_accuracies(d / METRICS, heads) for d in self.run_dirs(dataset, method)]
            values = {h: [s[h] for s in seeds] for h in heads}
            values["gap"] = [max(s[m] for m in modalities) - min(s[m] for m in modalities) for s in seeds]
            label = label_name(u)
            bars[label] = {h: mean_std(v, ddof) for h, v in values.items()}
            rows += [
                {
                    "method": method,
                    "labels": label,
                    "uniform_labels": u,
                    "head": h,
                    "acc_mean": m,
                    "acc_std": s,
                    "seeds": len(seeds),
                }
                for h, (m, s) in bars[label].items()
            ]
        csv_path = Path(out_dir) / f"{self.stem(dataset)}.csv"
        write_csv(
            csv_path, rows, ["method", "labels", "uniform_labels", "head", "acc_mean", "acc_std", "seeds"]
        )
        formats = self.params["report"]["figure_formats"]
        stem = Path(out_dir) / self.stem(dataset)
        return [*plot_label_fitting(bars, modalities, stem, formats, dataset), csv_path]

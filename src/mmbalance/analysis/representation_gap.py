"""LFM Figure 2: the modality gap of the test features per epoch, and their 2-D projection.

The engine logs, every epoch, the modality gap of Liang et al. (NeurIPS'22) on the test split into
``history.csv`` (``test_gap_<a>_<b>``, :func:`mmbalance.engine.metrics.modality_gap`: the distance
between the centroids of the two modalities' L2-normalised encoder features), for every run whose
modalities' features share a width. This analysis draws it per epoch (mean ± std over seeds) for
LFM's four methods, and projects both modalities' L2-normalised test features of the last epoch
(the ``last`` checkpoint of the first seed) onto the first two principal components of their union.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.analysis import _runs as runs
from mmbalance.analysis._base import Analysis
from mmbalance.errors import DataError
from mmbalance.io import write_csv
from mmbalance.registry import register_analysis
from mmbalance.runs.files import HISTORY, read_history


def pca_2d(x: np.ndarray) -> np.ndarray:
    """The rows of ``x`` (N, D) on their first two principal components (SVD of the centred data; the
    sign of each component fixed so that its largest loading is positive, for stable figures)."""
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    return centred @ (components * signs[:, None]).T


def normalised(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (the features the modality gap is measured on)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@register_analysis("representation_gap")
class RepresentationGap(Analysis):
    """Modality gap per epoch and a PCA of the last epoch's test features (LFM Figure 2)."""

    name = "representation_gap"
    reads = HISTORY

    @dataclasses.dataclass
    class Options:
        methods: list = dataclasses.field(default_factory=lambda: ["concat", "gblend", "mla", "lfm_h"])
        """LFM Figure 2's CONCAT, G-Blend, MLA and "ours" (LFM-H)."""

    def outputs(self, dataset: str, out_dir: Path) -> list[Path]:
        stem = Path(out_dir) / self.stem(dataset)
        return [*self.figure_files(dataset, out_dir), stem.with_suffix(".csv"), Path(f"{stem}_pca.csv")]

    def run(self, dataset: str, out_dir: Path) -> list[Path]:
        from mmbalance.analysis._figures import plot_representation_gap

        modalities = self.modalities(dataset)
        pairs = [f"{a}_{b}" for a, b in itertools.combinations(modalities, 2)]
        ddof = self.params["report"]["std_ddof"]
        curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        gap_rows: list[dict[str, Any]] = []
        for method in self.methods():
            files = [d / HISTORY for d in self.run_dirs(dataset, method)]
            histories = [(path, read_history(path)) for path in files]
            logged = [f"test_gap_{pairs[0]}" in rows[0] for _, rows in histories]
            if not any(logged):
                continue  # features of different widths: no gap logged (docs/tables.md)
            if not all(logged):
                missing = ", ".join(str(p) for (p, _), ok in zip(histories, logged, strict=True) if not ok)
                raise DataError(
                    f"{missing}: no test_gap_{pairs[0]} column, which other seeds of {method} have"
                )
            curves[method] = {}
            for pair in pairs:
                values = [runs.history_column(rows, f"test_gap_{pair}", path) for path, rows in histories]
                mean, std = runs.seed_mean_std(values, ddof)
                curves[method][pair] = (mean, std)
                gap_rows += [
                    {
                        "method": method,
                        "pair": pair,
                        "epoch": e,
                        "gap_mean": m,
                        "gap_std": s,
                        "seeds": len(values),
                    }
                    for e, (m, s) in enumerate(zip(mean, std, strict=True))
                ]
        points, pca_rows = self.projections(dataset, modalities, list(curves))
        stem = Path(out_dir) / self.stem(dataset)
        write_csv(
            stem.with_suffix(".csv"), gap_rows, ["method", "pair", "epoch", "gap_mean", "gap_std", "seeds"]
        )
        pca_columns = ["method", "seed", "epoch", "modality", "sample", "label", "pc1", "pc2"]
        write_csv(Path(f"{stem}_pca.csv"), pca_rows, pca_columns)
        return [
            *plot_representation_gap(
                curves, points, self.options.methods, stem, self.params["report"]["figure_formats"], dataset
            ),
            stem.with_suffix(".csv"),
            Path(f"{stem}_pca.csv"),
        ]

    def projections(
        self, dataset: str, modalities: list[str], methods: list[str]
    ) -> tuple[dict[str, dict[str, np.ndarray]], list[dict[str, Any]]]:
        """Per method, each modality's last-epoch test features (first seed) on the 2 principal components
        of the union of both modalities' normalised features; and the CSV rows."""
        if not methods:
            return {}, []
        store = runs.feature_store(self.params, dataset)
        test = store.split("test")
        points: dict[str, dict[str, np.ndarray]] = {}
        rows: list[dict[str, Any]] = []
        seed = self.seeds()[0]
        for method in methods:
            _, model, state = runs.load_model(self.checkpoint_dirs(dataset, method)[0], "last", store)
            features = runs.encode_split(model, runs.batches(store, state, "test"))
            stacked = pca_2d(np.concatenate([normalised(features[m]) for m in modalities]))
            points[method] = dict(zip(modalities, np.split(stacked, len(modalities)), strict=True))
            for m in modalities:
                rows += [
                    {
                        "method": method,
                        "seed": seed,
                        "epoch": state["epoch"],
                        "modality": m,
                        "sample": sample,
                        "label": int(label),
                        "pc1": float(p[0]),
                        "pc2": float(p[1]),
                    }
                    for sample, label, p in zip(test.ids, test.labels, points[method][m], strict=True)
                ]
        return points, rows

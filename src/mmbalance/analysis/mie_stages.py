"""MIE Figure 3: per-modality test accuracy over epochs, each epoch shaded by the modality its stage trains.

MIE trains one modality per stage (Algorithm 1) and logs the stage's modality per epoch in
``history.csv`` (``stage_modality``, the index of the modality in the dataset's order). This draws,
for MIE and its ablations, the test accuracy of each modality's head and of the fused prediction per
epoch (mean ± std over seeds) over bands coloured by the trained modality (green for audio and blue
for video, as the paper's figure).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.analysis import _runs as runs
from mmbalance.analysis._base import Analysis
from mmbalance.errors import DataError
from mmbalance.io import write_csv
from mmbalance.registry import register_analysis
from mmbalance.runs.files import HISTORY, read_history

STAGE_COLUMN = "stage_modality"


@register_analysis("mie_stages")
class MIEStages(Analysis):
    """Per-head test accuracy per epoch with MIE's stages shaded by their modality (MIE Figure 3)."""

    name = "mie_stages"
    reads = HISTORY

    @dataclasses.dataclass
    class Options:
        methods: list = dataclasses.field(
            default_factory=lambda: ["mie", "mie_no_gm", "mie_no_sam", "mie_no_sam_no_gm"]
        )
        """MIE and its ablations (runs that log ``stage_modality``)."""

    def outputs(self, dataset: str, out_dir: Path) -> list[Path]:
        return [*self.figure_files(dataset, out_dir), Path(out_dir) / f"{self.stem(dataset)}.csv"]

    def run(self, dataset: str, out_dir: Path) -> list[Path]:
        from mmbalance.analysis._figures import plot_mie_stages

        modalities = self.modalities(dataset)
        heads = [*modalities, "fused"]
        ddof = self.params["report"]["std_ddof"]
        panels: dict[str, dict[str, Any] | None] = {}
        rows: list[dict[str, Any]] = []
        for method in self.options.methods:
            if method not in self.methods():
                panels[method] = None
                continue
            histories = [(d / HISTORY, read_history(d / HISTORY)) for d in self.run_dirs(dataset, method)]
            stages = [runs.history_column(r, STAGE_COLUMN, p) for p, r in histories]
            if any(not np.array_equal(s, stages[0]) for s in stages):
                raise DataError(f"{', '.join(str(p) for p, _ in histories)}: the seeds' stages differ")
            stage_names = [modalities[int(i)] for i in stages[0]]
            curves = {
                h: runs.seed_mean_std(
                    [runs.history_column(r, f"test_{h}_acc", p) for p, r in histories], ddof
                )
                for h in heads
            }
            panels[method] = {"stages": stage_names, "curves": curves, "seeds": len(histories)}
            rows += [
                {
                    "method": method,
                    "epoch": e,
                    "stage_modality": stage_names[e],
                    "head": h,
                    "acc_mean": curves[h][0][e],
                    "acc_std": curves[h][1][e],
                    "seeds": len(histories),
                }
                for e in range(len(stage_names))
                for h in heads
            ]
        csv_path = Path(out_dir) / f"{self.stem(dataset)}.csv"
        write_csv(
            csv_path, rows, ["method", "epoch", "stage_modality", "head", "acc_mean", "acc_std", "seeds"]
        )
        stem = Path(out_dir) / self.stem(dataset)
        formats = self.params["report"]["figure_formats"]
        return [*plot_mie_stages(panels, modalities, stem, formats, dataset), csv_path]

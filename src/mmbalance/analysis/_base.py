"""The analysis interface and what every analysis needs from the experiment: its runs and their files."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from mmbalance import config, paths
from mmbalance.registry import DATASETS
from mmbalance.runs.files import METRICS


class Analysis:
    """Base class of every analysis plugin. Subclasses set ``name`` and ``Options`` (with a ``methods`` list)
    and implement :meth:`outputs` and :meth:`run`.

    ``reads`` is the run file whose existence says a run is finished and holds what the analysis reads
    (``history.csv`` for the analyses of per-epoch columns, ``metrics.json`` for those that load
    checkpoints: the checkpoints themselves are not workflow outputs). ``all_seeds`` is False for
    analyses drawn from one run per method, the first seed of ``experiment.seeds``.
    """

    name: ClassVar[str] = ""
    reads: ClassVar[str] = METRICS
    all_seeds: ClassVar[bool] = True

    @dataclasses.dataclass
    class Options:
        methods: list = dataclasses.field(default_factory=list)

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.options = self.Options(**config.analysis_options(params, self.name))

    # --- which runs ------------------------------------------------------------------------
    def methods(self) -> list[str]:
        """The analysis's methods that the experiment matrix trains, in the analysis's order (the others
        are drawn or listed as "not run")."""
        trained = set(config.experiment_methods(self.params))
        return [m for m in self.options.methods if m in trained]

    def seeds(self) -> list[int]:
        seeds = list(self.params["experiment"]["seeds"])
        return seeds if self.all_seeds else seeds[:1]

    def run_dirs(self, dataset: str, method: str) -> list[Path]:
        """The run directory of each seed the analysis reads."""
        return [paths.run_dir(self.params, dataset, method, seed) for seed in self.seeds()]

    def checkpoint_dirs(self, dataset: str, method: str) -> list[Path]:
        """The checkpoint directory of each seed the analysis reads (``paths.checkpoint_dir``)."""
        return [paths.checkpoint_dir(self.params, dataset, method, seed) for seed in self.seeds()]

    def inputs(self, dataset: str) -> list[Path]:
        """The run files the analysis needs (workflow inputs): ``reads`` of each run it reads."""
        return [d / self.reads for m in self.methods() for d in self.run_dirs(dataset, m)]

    def modalities(self, dataset: str) -> list[str]:
        return list(DATASETS.get(dataset).modalities)

    def modality_kinds(self, dataset: str) -> dict[str, str]:
        """``{modality: kind}`` of the dataset (spectrogram, frames, image, text, clip)."""
        return dict(DATASETS.get(dataset).modalities)

    def stem(self, dataset: str) -> str:
        return f"{dataset}_{self.name}"

    def figure_files(self, dataset: str, out_dir: Path, stem: str | None = None) -> list[Path]:
        """``<stem>.<format>`` for every figure format of ``report.figure_formats``."""
        stem = stem or self.stem(dataset)
        return [Path(out_dir) / f"{stem}.{fmt}" for fmt in self.params["report"]["figure_formats"]]

    # --- what it writes --------------------------------------------------------------------
    def outputs(self, dataset: str, out_dir: Path) -> list[Path]:
        """Every file :meth:`run` writes for ``dataset`` (known before any run exists, for the workflow)."""
        raise NotImplementedError

    def run(self, dataset: str, out_dir: Path) -> list[Path]:
        """Compute the analysis on ``dataset``'s runs and write :meth:`outputs`; returns them."""
        raise NotImplementedError

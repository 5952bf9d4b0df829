"""``mmbalance generate``: produce a dataset's raw files (generate, or download and verify)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmbalance.config import raw_dataset
from mmbalance.registry import DATASETS


def generate(
    dataset: str, data_cfg: Mapping[str, Any], out_dir: Path, workers: int = 1, progress: bool = True
) -> Path:
    """Prepare ``dataset`` in ``out_dir`` with the settings ``data_cfg`` (``data.<dataset>`` of params).

    A dataset that reads another's raw data (``raw_from``) prepares that dataset's files, exactly as
    generating that dataset would. Returns the path of the raw manifest, which is written last, so
    its presence marks a complete folder. ``workers`` processes share the work; the output does not
    depend on their number.
    """
    return DATASETS.get(raw_dataset(dataset))().prepare(
        data_cfg, Path(out_dir), max(1, int(workers)), progress
    )

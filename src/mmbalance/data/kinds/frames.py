"""``frames``: a video file → ``frames`` RGB frames decoded at ``rate`` fps and resized to ``size``
(datasets.md §2, :mod:`mmbalance.data.video`), stored as uint8 ``(frames, 3, size, size)``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.data.kinds.base import FeatureKind
from mmbalance.data.video import read_frames
from mmbalance.registry import register_kind


@register_kind("frames")
class Frames(FeatureKind):
    needs = ("frames", "rate", "size")
    dtype = np.uint8

    def shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        return (int(cfg["frames"]), 3, int(cfg["size"]), int(cfg["size"]))

    def compute(self, path: Path, cfg: Mapping[str, Any]) -> np.ndarray:
        return read_frames(path, int(cfg["frames"]), float(cfg["rate"]), int(cfg["size"]))

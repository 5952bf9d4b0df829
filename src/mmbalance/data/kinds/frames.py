"""``frames``: a video file → ``frames`` RGB frames decoded at ``rate`` fps and resized to ``size``
(datasets.md §2, :mod:`mmbalance.data.video`), stored as uint8 ``(frames, 3, size, size)``.
The optional ``select`` is ``uniform`` (default: segment centres) or ``first`` (the first frames)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.data.kinds._base import FeatureKind
from mmbalance.data.video import SELECTIONS, read_frames
from mmbalance.errors import ConfigError
from mmbalance.registry import register_kind


@register_kind("frames")
class Frames(FeatureKind):
    needs = ("frames", "rate", "size")
    dtype = np.uint8

    def check(self, modality: str, cfg: Mapping[str, Any] | None) -> dict[str, Any]:
        checked = super().check(modality, cfg)
        if checked.get("select", "uniform") not in SELECTIONS:
            raise ConfigError(f"features: '{modality}.select' is not one of {list(SELECTIONS)}")
        return checked

    def shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        return (int(cfg["frames"]), 3, int(cfg["size"]), int(cfg["size"]))

    def compute(self, path: Path, cfg: Mapping[str, Any]) -> np.ndarray:
        select = cfg.get("select", "uniform")
        return read_frames(path, int(cfg["frames"]), float(cfg["rate"]), int(cfg["size"]), select)

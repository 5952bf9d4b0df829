"""``spectrogram``: a mono audio file → the log spectrogram of the named front-end (datasets.md §1),
stored as float16."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.data.audio import preload
from mmbalance.data.kinds.base import FeatureKind
from mmbalance.registry import FRONTENDS, register_kind


@register_kind("spectrogram")
class Spectrogram(FeatureKind):
    needs = ("frontend", "seconds")
    dtype = np.float16

    def check(self, modality: str, cfg: Mapping[str, Any] | None) -> dict[str, Any]:
        checked = super().check(modality, cfg)
        FRONTENDS.get(checked["frontend"])
        return checked

    def shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        return FRONTENDS.get(cfg["frontend"]).output_shape(cfg["seconds"])

    def compute(self, path: Path, cfg: Mapping[str, Any]) -> np.ndarray:
        return FRONTENDS.get(cfg["frontend"])(cfg["seconds"])(path).astype(np.float16)

    def preload(self, cfg: Mapping[str, Any] | None = None) -> None:
        preload()

"""``spectrogram``: a mono audio file → the log spectrogram of the named front-end (datasets.md §1),
stored as float16.

The optional ``pool: [F, T]`` averages the spectrogram over blocks down to ``F × T`` at extraction, with
the block edges of ``torch.nn.functional.adaptive_avg_pool2d`` (block ``i`` of ``n`` over ``N`` bins spans
``floor(i·N/n)`` to ``ceil((i+1)·N/n)``). It is what an encoder's ``input_size`` does on every batch,
done once: the embedded profile's small inputs then cost neither the pooling nor the reading of the
full spectrogram each epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.data.audio import preload
from mmbalance.data.kinds._base import FeatureKind
from mmbalance.errors import ConfigError
from mmbalance.registry import FRONTENDS, register_kind


def _block_edges(length: int, blocks: int) -> list[tuple[int, int]]:
    """Adaptive pooling's ``[start, end)`` of each of ``blocks`` blocks over ``length`` bins."""
    return [(i * length // blocks, -(-(i + 1) * length // blocks)) for i in range(blocks)]


def adaptive_average(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Average a 2-D array over blocks down to ``size`` (adaptive average pooling, in float64)."""
    x = np.asarray(x, dtype=np.float64)
    rows = _block_edges(x.shape[0], int(size[0]))
    cols = _block_edges(x.shape[1], int(size[1]))
    return np.array([[x[r0:r1, c0:c1].mean() for c0, c1 in cols] for r0, r1 in rows])


@register_kind("spectrogram")
class Spectrogram(FeatureKind):
    needs = ("frontend", "seconds")
    dtype = np.float16

    def check(self, modality: str, cfg: Mapping[str, Any] | None) -> dict[str, Any]:
        checked = super().check(modality, cfg)
        FRONTENDS.get(checked["frontend"])
        pool = checked.get("pool")
        if pool is not None:
            full = FRONTENDS.get(checked["frontend"]).output_shape(checked["seconds"])
            if len(pool) != 2 or any(int(n) < 1 or int(n) > m for n, m in zip(pool, full, strict=False)):
                raise ConfigError(
                    f"features: '{modality}.pool' must be [F, T] with 1 <= F <= {full[0]} and "
                    f"1 <= T <= {full[1]} (the front-end's {full[0]}x{full[1]}), got {pool}"
                )
        return checked

    def shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        if cfg.get("pool") is not None:
            return tuple(int(n) for n in cfg["pool"])
        return FRONTENDS.get(cfg["frontend"]).output_shape(cfg["seconds"])

    def compute(self, path: Path, cfg: Mapping[str, Any]) -> np.ndarray:
        spectrogram = FRONTENDS.get(cfg["frontend"])(cfg["seconds"])(path)
        if cfg.get("pool") is not None:
            spectrogram = adaptive_average(spectrogram, cfg["pool"])
        return spectrogram.astype(np.float16)

    def preload(self, cfg: Mapping[str, Any] | None = None) -> None:
        preload()

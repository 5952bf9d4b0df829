"""Mini-batches straight from the memory-mapped feature store (no decoding, no workers).

The training order of epoch ``e`` is a permutation drawn from ``numpy.random.default_rng([seed, e])``,
so it depends on nothing but the seed and the epoch: a resumed run sees the same batches.
Rows inside a batch are read in ascending order (sequential memmap access; the loss and
BatchNorm statistics do not depend on the order within a batch). A shuffled (training) split whose
last batch would hold a single sample joins it to the batch before: BatchNorm cannot normalise one
sample, and dropping it would lose data silently.

Clip modalities (NVGesture) are not read whole: a :class:`~mmbalance.engine.clip_sampling.ClipSampling`
takes the training window and crop, or the evaluation centre crop, of each sample.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mmbalance.engine.clip_sampling import ClipSampling
from mmbalance.methods.base import Batch


class SplitBatches:
    """Iterate over one split of a feature store in mini-batches."""

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        labels: np.ndarray,
        batch_size: int,
        device: torch.device,
        shuffle: bool = False,
        seed: int = 0,
        clips: ClipSampling | None = None,
    ) -> None:
        self.arrays = arrays
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.seed = seed
        self.clips = clips

    def __len__(self) -> int:
        return len(self.bounds())

    def bounds(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of each batch in the epoch's order."""
        size = self.labels.size
        starts = list(range(0, size, self.batch_size))
        if self.shuffle and len(starts) > 1 and size - starts[-1] == 1:
            starts.pop()
        return [(start, min(nxt, size)) for start, nxt in zip(starts, [*starts[1:], size], strict=True)]

    def order(self, epoch: int) -> np.ndarray:
        if self.shuffle:
            return np.random.default_rng([self.seed, epoch]).permutation(self.labels.size)
        return np.arange(self.labels.size)

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        order = self.order(epoch)
        rng = self.clips.generator(self.seed, epoch) if self.clips is not None else None
        for start, stop in self.bounds():
            index = np.sort(order[start:stop])
            views = self.clips.read(self.arrays, index, rng) if self.clips is not None else {}
            inputs = {
                m: torch.from_numpy(np.ascontiguousarray(views[m] if m in views else a[index]))
                for m, a in self.arrays.items()
            }
            yield Batch(
                inputs={m: x.to(self.device, non_blocking=True) for m, x in inputs.items()},
                labels=torch.from_numpy(self.labels[index]).to(self.device),
                index=torch.from_numpy(index),
            )

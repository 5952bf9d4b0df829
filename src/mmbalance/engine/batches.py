"""Mini-batches straight from the memory-mapped feature store (no decoding, no workers).

The training order of epoch ``e`` is a permutation drawn from ``numpy.random.default_rng([seed, e])``,
so it depends on nothing but the seed and the epoch: a resumed run sees the same batches.
Rows inside a batch are read in ascending order (sequential memmap access; the loss and
BatchNorm statistics do not depend on the order within a batch). A shuffled (training) split whose
last batch would hold a single sample joins it to the batch before: BatchNorm cannot normalise one
sample, and dropping it would lose data silently.

Clip modalities (NVGesture) are not read whole: a :class:`~mmbalance.engine.clip_sampling.ClipSampling`
takes the training window and crop, or the evaluation centre crop, of each sample. With ``augment``
set, a :class:`~mmbalance.engine.augment.FrameAugment` crops and flips training frames and resizes
evaluation frames, on the device.

Reading (:meth:`SplitBatches.read`: the rows, the clip windows, the augmentation draws) is separate
from moving to the device (:meth:`SplitBatches.move`) and transforming there, so that with
``prefetch > 0`` a background thread reads and moves batches ahead (:mod:`mmbalance.engine.prefetch`)
while the batches and every random draw stay exactly those of the synchronous path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from mmbalance.data.store import FeatureStore
from mmbalance.engine.augment import FrameAugment, frame_augment
from mmbalance.engine.clip_sampling import ClipSampling, clip_sampling
from mmbalance.engine.prefetch import prefetch
from mmbalance.engine.settings import EngineSettings
from mmbalance.engine.types import Batch

SPLITS = ("train", "val", "test")

Draws = dict[str, np.ndarray] | None
"""A batch's augmentation draws (:meth:`FrameAugment.draw`), None without training augmentation."""


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
        augment: FrameAugment | None = None,
        prefetch: int = 0,
    ) -> None:
        self.arrays = arrays
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.seed = seed
        self.clips = clips
        self.augment = augment
        self.prefetch = prefetch

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
        """The batches of ``epoch`` on the device (read ahead by a thread when ``prefetch > 0``)."""
        if self.prefetch > 0:
            pinned = self.device.type == "cuda"
            moved = prefetch(
                self.read(epoch), self.prefetch, lambda item: self.move(item, pinned), tensors, self.device
            )
        else:
            moved = (self.move(item) for item in self.read(epoch))
        for batch, draws in moved:
            if self.augment is not None:
                batch.inputs = self.augment.apply(batch.inputs, draws)
            yield batch

    def read(self, epoch: int) -> Iterator[tuple[Batch, Draws]]:
        """The host batches of ``epoch`` in order, with their augmentation draws."""
        order = self.order(epoch)
        rng = self.clips.generator(self.seed, epoch) if self.clips is not None else None
        augment_rng = self.augment.generator(self.seed, epoch) if self.augment is not None else None
        for start, stop in self.bounds():
            index = np.sort(order[start:stop])
            views = self.clips.read(self.arrays, index, rng) if self.clips is not None else {}
            inputs = {
                m: torch.from_numpy(np.ascontiguousarray(views[m] if m in views else a[index]))
                for m, a in self.arrays.items()
            }
            draws = None
            if self.augment is not None:
                draws = self.augment.draw({m: tuple(x.shape) for m, x in inputs.items()}, augment_rng)
            batch = Batch(
                inputs=inputs, labels=torch.from_numpy(self.labels[index]), index=torch.from_numpy(index)
            )
            yield batch, draws

    def move(self, item: tuple[Batch, Draws], pinned: bool = False) -> tuple[Batch, Draws]:
        """A host batch on the device: inputs copied with ``non_blocking`` (from pinned memory if
        ``pinned``), labels too; the row indices stay on the host."""
        batch, draws = item
        inputs = {m: x.pin_memory() if pinned else x for m, x in batch.inputs.items()}
        labels = batch.labels.pin_memory() if pinned else batch.labels
        moved = Batch(
            inputs={m: x.to(self.device, non_blocking=True) for m, x in inputs.items()},
            labels=labels.to(self.device, non_blocking=pinned),
            index=batch.index,
        )
        return moved, draws


def tensors(item: tuple[Batch, Draws]) -> list[torch.Tensor]:
    """The device tensors of a moved batch."""
    batch = item[0]
    return [*batch.inputs.values(), batch.labels]


def split_batches(
    store: FeatureStore,
    train_cfg: Mapping[str, Any],
    device: torch.device,
    seed: int,
    settings: EngineSettings,
    where: str,
) -> dict[str, SplitBatches]:
    """The batches of a run's three splits: ``train`` shuffled by the run's seed in ``batch_size``,
    ``val`` and ``test`` as :func:`evaluation_batches`; clip sampling, augmentation and prefetch as the
    preset ``train_cfg`` (named ``where`` in errors) says."""
    train = store.split("train")
    batches = {
        "train": SplitBatches(
            train.arrays,
            train.labels,
            train_cfg["batch_size"],
            device,
            shuffle=True,
            seed=seed,
            clips=clip_sampling(
                store.modalities, train.arrays, train_cfg.get("clip_sampling"), True, f"{where}.clip_sampling"
            ),
            augment=frame_augment(store.modalities, settings.augment, True, f"{where}.augment"),
            prefetch=settings.prefetch,
        )
    }
    for name in SPLITS[1:]:
        batches[name] = evaluation_batches(store, train_cfg, name, device, settings, where)
    return batches


def evaluation_batches(
    store: FeatureStore,
    train_cfg: Mapping[str, Any],
    split: str,
    device: torch.device,
    settings: EngineSettings,
    where: str,
    rows: list[int] | None = None,
) -> SplitBatches:
    """Evaluation batches of ``split`` in row order, in ``eval_batch_size`` (clips as evaluated: all
    frames, centre crop; frames resized as evaluation resizes them), of the samples at ``rows`` only
    when given (then indexed from 0 in that order)."""
    data = store.split(split)
    arrays, labels = data.arrays, data.labels
    if rows is not None:
        arrays, labels = {m: np.asarray(a[rows]) for m, a in arrays.items()}, np.asarray(labels)[rows]
    return SplitBatches(
        arrays,
        labels,
        train_cfg["eval_batch_size"],
        device,
        clips=clip_sampling(
            store.modalities, arrays, train_cfg.get("clip_sampling"), False, f"{where}.clip_sampling"
        ),
        augment=frame_augment(store.modalities, settings.augment, False, f"{where}.augment"),
        prefetch=settings.prefetch,
    )

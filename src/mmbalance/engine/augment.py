"""Train-time augmentation of ``frames`` on the device (``train.<profile>.<dataset>.augment``).

The official CREMA-D, Kinetics-Sounds and VGGSound loaders (OGM-GE, LFM, AUG; datasets.md §2 of the
specification) transform every training frame with ``RandomResizedCrop(224)`` then
``RandomHorizontalFlip()``, and every test frame with ``Resize((224, 224))``. With ``augment: {size,
scale, ratio, flip}`` set, :class:`FrameAugment` does the same to the stored uint8 frames, on the
device, with torchvision's functional transforms:

- **training** (the training split): per frame of every sample (the loaders call the transform once
  per frame image), a box drawn as ``RandomResizedCrop.get_params`` draws it — up to 10 attempts of an
  area ``U(scale)`` × the frame's and an aspect ratio ``exp(U(log ratio))``, accepted when it fits,
  position uniform; else the whole frame, cropped to the nearest allowed ratio — then cropped and
  resized to ``size`` × ``size`` (bilinear, antialiased), and flipped left-right with probability
  ``flip``;
- **evaluation** (validation and test): every frame resized to ``size`` × ``size``.

The draws of epoch ``e`` come from ``numpy.random.default_rng([seed, e, 2])`` (:data:`STREAM`), per
batch in the epoch's batch order, per sample, per frame (the box, then the flip): they depend only on
the run's seed and the epoch, never on a global generator, so runs repeat, a resumed run (which
restarts at an epoch boundary) sees the same crops, and reading batches ahead in a thread
(:mod:`mmbalance.engine.prefetch`) draws the same numbers.

Deviation: the loaders crop from the original frame (e.g. CREMA-D's 480×360); the store holds square
frames resized once at extraction (``features.<profile>.<dataset>.<modality>.size``, 256 in the paper
profile), so a box of a given aspect ratio here is a box of that ratio of the stretched frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmbalance.errors import ConfigError

FRAMES_KIND = "frames"
STREAM = 2
"""Third word of the draws' seed, ``[seed, epoch, STREAM]`` (clip sampling uses 1, the order none)."""
ATTEMPTS = 10
DEFAULTS: dict[str, Any] = {"scale": [0.08, 1.0], "ratio": [3.0 / 4.0, 4.0 / 3.0], "flip": 0.5}
"""torchvision's ``RandomResizedCrop`` and ``RandomHorizontalFlip`` defaults; ``size`` has none."""


def _functional() -> Any:
    """torchvision's functional transforms, imported on first use: only runs with ``augment`` need them,
    and every training process would otherwise pay torchvision's import."""
    import torchvision.transforms.v2.functional

    return torchvision.transforms.v2.functional


def crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of one random box, as ``RandomResizedCrop.get_params`` (module docstring)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(ATTEMPTS):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


@dataclass(frozen=True)
class FrameAugment:
    """How the ``frames`` modalities of one split are transformed on the device (module docstring)."""

    modalities: tuple[str, ...]
    size: int
    scale: tuple[float, float]
    ratio: tuple[float, float]
    flip: float
    train: bool

    def generator(self, seed: int, epoch: int) -> np.random.Generator | None:
        """The draws' generator of ``epoch`` (training), or None (evaluation draws nothing)."""
        return np.random.default_rng([seed, epoch, STREAM]) if self.train else None

    def draw(
        self, shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator | None
    ) -> dict[str, np.ndarray] | None:
        """Per frames modality with batch shape ``(B, T, 3, H, W)``: int ``(B, T, 5)`` rows
        ``top, left, h, w, flipped`` (training), or None (evaluation)."""
        if rng is None:
            return None
        draws = {}
        for modality in self.modalities:
            count, frames, _, height, width = shapes[modality]
            rows = np.empty((count, frames, 5), dtype=np.int64)
            for b in range(count):
                for t in range(frames):
                    box = crop_box(height, width, self.scale, self.ratio, rng)
                    rows[b, t] = (*box, rng.random() < self.flip)
            draws[modality] = rows
        return draws

    def apply(
        self, inputs: dict[str, torch.Tensor], draws: dict[str, np.ndarray] | None
    ) -> dict[str, torch.Tensor]:
        """``inputs`` with every frames modality transformed: ``(B, T, 3, size, size)`` uint8."""
        out = dict(inputs)
        for modality in self.modalities:
            x = inputs[modality]
            if draws is None:
                out[modality] = _functional().resize(x, [self.size, self.size], antialias=True)
                continue
            frames = [
                self.crop(x[b, t], *(int(v) for v in row))
                for b, per_sample in enumerate(draws[modality])
                for t, row in enumerate(per_sample)
            ]
            out[modality] = torch.stack(frames).view(*x.shape[:2], *frames[0].shape)
        return out

    def crop(self, image: torch.Tensor, top: int, left: int, h: int, w: int, flipped: int) -> torch.Tensor:
        """One ``(3, H, W)`` frame: the box resized to ``size`` × ``size``, flipped if drawn so."""
        crop = _functional().resized_crop(image, top, left, h, w, [self.size, self.size], antialias=True)
        return _functional().horizontal_flip(crop) if flipped else crop


def frame_augment(
    kinds: Mapping[str, str], cfg: Mapping[str, Any] | None, train: bool, where: str
) -> FrameAugment | None:
    """The :class:`FrameAugment` of a split whose modalities have ``kinds`` (None without ``augment``).

    ``cfg`` is ``train.<profile>.<dataset>.augment`` (``where`` names it in errors): ``size`` and the
    optional ``scale``, ``ratio``, ``flip`` (torchvision's defaults); it needs a ``frames`` modality.
    """
    if cfg is None:
        return None
    modalities = tuple(m for m, kind in kinds.items() if kind == FRAMES_KIND)
    if not modalities:
        raise ConfigError(f"{where}: the dataset has no frames modality to augment; remove the key")
    merged = {**DEFAULTS, **cfg}
    scale, ratio = tuple(merged["scale"]), tuple(merged["ratio"])
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ConfigError(f"'{where}.scale': want 0 < low <= high <= 1, got {list(scale)}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ConfigError(f"'{where}.ratio': want 0 < low <= high, got {list(ratio)}")
    return FrameAugment(modalities, int(merged["size"]), scale, ratio, float(merged["flip"]), train)

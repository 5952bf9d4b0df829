"""Train and test views of ``clip`` modalities, taken per batch from the stored containers.

The feature store holds each clip whole, uint8 ``(C, T, H, W)`` (:mod:`mmbalance.data.kinds.clip`).
AMSS ``AMSS_rod`` (methods.md §C4, datasets.md §2) samples NVGesture like this, and so does
:class:`ClipSampling`, set by ``train.<profile>.<dataset>.clip_sampling: {train_frames, crop}``:

- **training**: per sample, a window of ``train_frames`` consecutive frames starting at ``t0`` and a
  ``crop × crop`` square at ``(y0, x0)``, drawn uniformly with both ends included
  (``t0 ∈ 0..T-train_frames``, ``y0 ∈ 0..H-crop``, ``x0 ∈ 0..W-crop``; AMSS's ``random.randint``), the
  **same offsets for every clip modality** of the sample. No horizontal flip (AMSS draws the flip
  probability as 0).
- **evaluation**: every frame and the centre crop, offset ``int(round((H - crop) / 2))`` as
  torchvision's ``CenterCrop`` (16 for 224 of 256, AMSS's fixed ``[16:240]`` flow crop).

The offsets of epoch ``e`` come from ``numpy.random.default_rng([seed, e, 1])``, drawn per batch in
the epoch's batch order (``t0`` of the batch's samples, then ``y0``, then ``x0``): they depend only on
the run's seed and the epoch, not on any global RNG, so a run is reproducible and a resumed run
(which restarts at an epoch boundary) sees the same crops. Datasets without clip modalities draw
nothing and are read exactly as before.

Deviation: the AUG April loader never takes the 64-frame window of the flow clip (the line is
commented out), so its flow uses all stored frames in training; here the window applies to all three
modalities alike (docs/datasets.md, NVGesture).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmbalance.errors import ConfigError

CLIP_KIND = "clip"
STREAM = 1
"""Third word of the offsets' seed, ``[seed, epoch, STREAM]``; the batch order uses ``[seed, epoch]``."""
KEYS = ("train_frames", "crop")


def centre_offset(length: int, crop: int) -> int:
    """torchvision ``CenterCrop``'s offset: ``int(round((length - crop) / 2))``."""
    return round((length - crop) / 2.0)


@dataclass(frozen=True)
class ClipSampling:
    """How the clip modalities of one split are read per batch (module docstring)."""

    modalities: tuple[str, ...]
    stored: tuple[int, int, int]
    """(T, H, W) of the stored containers, shared by every clip modality."""
    train_frames: int
    crop: int
    train: bool

    def generator(self, seed: int, epoch: int) -> np.random.Generator | None:
        """The offsets' generator of ``epoch`` (training), or None (evaluation draws nothing)."""
        return np.random.default_rng([seed, epoch, STREAM]) if self.train else None

    def offsets(self, count: int, rng: np.random.Generator | None) -> np.ndarray:
        """int ``(count, 3)``: ``t0, y0, x0`` of each sample of a batch."""
        frames, height, width = self.stored
        if rng is None:
            row = [0, centre_offset(height, self.crop), centre_offset(width, self.crop)]
            return np.tile(np.array(row, dtype=np.int64), (count, 1))
        return np.stack(
            [
                rng.integers(0, frames - self.train_frames + 1, count),
                rng.integers(0, height - self.crop + 1, count),
                rng.integers(0, width - self.crop + 1, count),
            ],
            axis=1,
        )

    def read(
        self, arrays: Mapping[str, np.ndarray], index: np.ndarray, rng: np.random.Generator | None
    ) -> dict[str, np.ndarray]:
        """The views of rows ``index`` of every clip modality: ``(B, C, frames, crop, crop)`` uint8."""
        length = self.train_frames if self.train else self.stored[0]
        size = self.crop
        offsets = self.offsets(len(index), rng)
        return {
            modality: np.stack(
                [
                    arrays[modality][row, :, t : t + length, y : y + size, x : x + size]
                    for row, (t, y, x) in zip(index, offsets, strict=True)
                ]
            )
            for modality in self.modalities
        }


def clip_sampling(
    kinds: Mapping[str, str],
    arrays: Mapping[str, np.ndarray],
    cfg: Mapping[str, Any] | None,
    train: bool,
    where: str,
) -> ClipSampling | None:
    """The :class:`ClipSampling` of a split whose modalities have ``kinds`` (None without clips).

    ``cfg`` is ``train.<profile>.<dataset>.clip_sampling`` (``where`` names it in errors): required
    when a modality is a clip, refused otherwise, and checked against the stored shapes.
    """
    clips = tuple(m for m, kind in kinds.items() if kind == CLIP_KIND)
    if not clips:
        if cfg is not None:
            raise ConfigError(f"{where}: the dataset has no clip modality; remove the key")
        return None
    if cfg is None:
        raise ConfigError(
            f"{where}: missing; the clip modalities {list(clips)} need train_frames and crop "
            "(NVGesture's paper settings: {train_frames: 64, crop: 224})"
        )
    missing = [key for key in KEYS if key not in cfg]
    unknown = sorted(set(cfg) - set(KEYS))
    if missing or unknown:
        bad = f"missing key '{where}.{missing[0]}'" if missing else f"unknown key '{where}.{unknown[0]}'"
        raise ConfigError(f"{bad} (keys: {', '.join(KEYS)})")
    shapes = {m: tuple(int(n) for n in arrays[m].shape[2:]) for m in clips}
    stored = shapes[clips[0]]
    if len(set(shapes.values())) != 1:
        raise ConfigError(
            f"{where}: the clip modalities share their crop offsets, so they must be stored with the same "
            f"frames and size; the feature settings give (T, H, W) {shapes}"
        )
    frames, crop = cfg["train_frames"], cfg["crop"]
    for key, value, most in (("train_frames", frames, stored[0]), ("crop", crop, min(stored[1:]))):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ConfigError(
                f"'{where}.{key}': expected an integer in 1..{most} (the stored clips), got {value!r}"
            )
    return ClipSampling(clips, stored, frames, crop, train)

"""OGM-GE's VGGSound spectrogram (``VGGSoundDataset``; MLA ``extract_spec.py``), datasets.md §1.

The reference loads the clip with ``librosa.load(sr=16000)``, doubles it (``np.tile(x, 2)``) until
it lasts at least 10 s, takes a random 5-s window starting in the first 5 s
(``random.randint(0, rate * 5)``), clips it to [-1, 1], and computes a centred
``librosa.stft(n_fft=256, hop_length=128)`` and ``log(|S| + 1e-7)`` without normalisation:
129×626 (``1 + 80000 // 128``) for 5 s.

**Deviation (stored features).** The feature store holds one fixed array per clip, extracted once,
so the random crop cannot be redrawn every epoch. The window is the centred one instead: the clip
tiled to 10 s (:data:`CLIP_SECONDS`, the same samples as the doubling for every crop the reference
can draw) and ``seconds`` (default 5) taken from its middle, i.e. 2.5-7.5 s, the crop at the mean
of the reference's start distribution. Train and test clips therefore see the same window and the
random-crop augmentation of training is lost. Padding of the centred STFT is zeros (librosa's
default since 0.10; the reference's librosa padded by reflection).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmbalance.data.audio import Frontend, read_wav, tile_to
from mmbalance.errors import ConfigError
from mmbalance.registry import register_frontend

CLIP_SECONDS = 10.0


@register_frontend("ogm_vggsound")
class OGMVGGSoundFrontend(Frontend):
    """129×626 for the 5-s centre crop (``seconds`` default 5, at most 10)."""

    sample_rate = 16000
    hop_length = 128
    center = True
    normalise = False
    default_seconds = 5.0
    n_fft = 256

    def __init__(self, seconds: float | None = None) -> None:
        super().__init__(seconds)
        if self.seconds > CLIP_SECONDS:
            raise ConfigError(
                f"audio front-end ogm_vggsound: seconds={self.seconds:g} is longer than the "
                f"{CLIP_SECONDS:g}-s clip it crops from"
            )

    def waveform(self, path: Path) -> np.ndarray:
        """The centred ``seconds`` of the clip tiled to 10 s, clipped to [-1, 1]."""
        clip = tile_to(read_wav(path, self.sample_rate), round(self.sample_rate * CLIP_SECONDS))
        length = self.num_samples(self.seconds)
        start = (clip.size - length) // 2
        return np.clip(clip[start : start + length], -1.0, 1.0)

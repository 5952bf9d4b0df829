"""Kaldi-compatible log-mel filterbank, 1024 frames × 128 bins (datasets.md §1).

The audio front-end of OGM-GE's Kinetics-Sounds ``process_audio.py``, MLA's ``extract_fbank.py``
and BalanceBenchmark's KS and CREMA-D loaders (the recipe of AST's data loader):
``torchaudio.compliance.kaldi.fbank(waveform, htk_compat=True, sample_frequency=16000,
use_energy=False, window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10)``, then
zero-padded or cut to 1024 frames and normalised as ``(fbank + 4.503877) / (2 * 5.141276)``.

Extraction workers must not import torch (:mod:`mmbalance.data.kinds._base`), so the filterbank is
computed here in numpy from Kaldi's definition (``feature-fbank.cc``, ``feature-window.cc``,
``mel-computations.cc``; the same steps as torchaudio's port), with the settings above and Kaldi's
defaults for the rest:

- frames of 25 ms (400 samples at 16 kHz) every 10 ms (160), ``snip_edges``: only whole frames,
  ``1 + (N - 400) // 160`` of them (none below 400 samples);
- per frame: subtract its mean (``remove_dc_offset``), pre-emphasis ``y[i] = x[i] - 0.97 x[i-1]``
  with ``x[-1] = x[0]``, symmetric Hann window ``0.5 - 0.5 cos(2πn / 399)`` ("hanning"), zero-pad to
  512 (``round_to_power_of_two``), power spectrum ``|FFT|²`` (257 bins);
- 128 triangular filters, equally spaced on Kaldi's mel scale ``1127 ln(1 + f / 700)`` between
  ``low_freq`` 20 Hz and ``high_freq`` = Nyquist, each rising linearly *in mel* from its left edge
  to its centre and falling to its right edge, evaluated at the mel of each FFT bin's frequency
  ``k · 16000 / 512`` (the Nyquist bin gets no weight);
- ``log(max(energy, ε))`` with ε the float32 machine epsilon (Kaldi's and torchaudio's floor);
  ``use_energy=False`` and ``htk_compat`` then change nothing; ``dither=0`` makes it deterministic.

The reference subtracts the waveform's mean first; per-frame mean removal makes that a no-op, so it
is skipped. The reference runs in float32; this runs in float64 and rounds the result.

**Length.** The reference does not tile: a 10-s clip gives 998 frames, zero-padded to 1024 (the
padding then normalises to 4.503877 / 10.282552 ≈ 0.438); a longer clip is cut to 1024. Here the
clip is cut to ``seconds`` and never tiled, and the output is always 1024 frames. The default,
10.255 s, is exactly the audio of 1024 frames (``0.025 + 1023 · 0.010``), so with it (or any longer
``seconds``) the cut changes nothing and every clip gets the reference's features.

**Orientation.** The reference's array is time × frequency (1024×128). Every front-end here stores
frequency × time (``(bins, frames)``, as the STFT front-ends' 257×T), so this one returns the
transpose, **128×1024**. The ResNet18 audio encoder is symmetric in the two axes (square kernels and
strides, global average pooling), so the transpose trains the same network up to transposed
weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mmbalance.data.audio import read_wav
from mmbalance.errors import ConfigError
from mmbalance.registry import register_frontend

FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms
PADDED_LENGTH = 512  # round_to_power_of_two(400)
NUM_MEL_BINS = 128
LOW_FREQ = 20.0
PREEMPHASIS = 0.97
LOG_FLOOR = float(np.finfo(np.float32).eps)
TARGET_FRAMES = 1024
NORM_MEAN = -4.503877
NORM_STD = 5.141276


def kaldi_mel(freq: np.ndarray | float) -> np.ndarray:
    """Kaldi's mel scale, ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


def mel_banks(sample_rate: float, num_bins: int = NUM_MEL_BINS, low_freq: float = LOW_FREQ) -> np.ndarray:
    """The ``(num_bins, PADDED_LENGTH // 2 + 1)`` triangles (Kaldi ``MelBanks``, high_freq = Nyquist)."""
    edges = np.linspace(kaldi_mel(low_freq), kaldi_mel(sample_rate / 2), num_bins + 2)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bins = kaldi_mel(np.arange(PADDED_LENGTH // 2) * sample_rate / PADDED_LENGTH)[None, :]
    weights = np.maximum(0.0, np.minimum((bins - left) / (centre - left), (right - bins) / (right - centre)))
    return np.pad(weights, ((0, 0), (0, 1)))


def fbank(samples: np.ndarray, sample_rate: float) -> np.ndarray:
    """Log-mel energies ``(frames, NUM_MEL_BINS)`` of a mono waveform (module docstring)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.size < FRAME_LENGTH:
        return np.zeros((0, NUM_MEL_BINS))
    frames = sliding_window_view(samples, FRAME_LENGTH)[::FRAME_SHIFT]
    frames = frames - frames.mean(axis=1, keepdims=True)
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = (frames - PREEMPHASIS * previous) * np.hanning(FRAME_LENGTH)
    power = np.abs(np.fft.rfft(frames, n=PADDED_LENGTH, axis=1)) ** 2
    return np.log(np.maximum(power @ mel_banks(sample_rate).T, LOG_FLOOR))


def fit_frames(features: np.ndarray, frames: int = TARGET_FRAMES) -> np.ndarray:
    """Zero-pad (at the end) or cut ``(T, F)`` features to ``frames`` rows."""
    if features.shape[0] >= frames:
        return features[:frames]
    return np.pad(features, ((0, frames - features.shape[0]), (0, 0)))


@register_frontend("kaldi_fbank")
class KaldiFbankFrontend:
    """128×1024 (frequency × time) for any clip length; ``seconds`` (default 10.255) cuts the clip."""

    sample_rate: ClassVar[int] = 16000
    default_seconds: ClassVar[float] = 10.255

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = self.default_seconds if seconds is None else float(seconds)
        if round(self.sample_rate * self.seconds) < FRAME_LENGTH:
            raise ConfigError(
                f"audio front-end kaldi_fbank: seconds={self.seconds:g} is shorter than one 25-ms frame"
            )

    @classmethod
    def output_shape(cls, seconds: float | None = None) -> tuple[int, int]:
        """``(128, 1024)`` whatever ``seconds``."""
        return (NUM_MEL_BINS, TARGET_FRAMES)

    def __call__(self, path: Path) -> np.ndarray:
        samples = read_wav(path, self.sample_rate)[: round(self.sample_rate * self.seconds)]
        features = fit_frames(fbank(samples, self.sample_rate))
        return ((features - NORM_MEAN) / (2 * NORM_STD)).T.astype(np.float32)

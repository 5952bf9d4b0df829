"""Reading WAV files and the shared STFT recipe of the audio front-ends (datasets.md §1).

The STFT front-ends (:class:`Frontend`) are the same five steps with different constants: read
the file as mono float32 at the recipe's sample rate; tile it (repeat it end to end) and cut it to
exactly ``round(sample_rate * seconds)`` samples; clip to [-1, 1]; ``librosa.stft`` with an
``n_fft``-point Hann window (512 unless a recipe says otherwise); ``log(|S| + 1e-7)``; optionally a
per-clip z-normalisation. The output is float32 of shape ``(n_fft // 2 + 1, T)`` (frequency ×
time) with ``T = 1 + (N - n_fft) // hop`` without centring and ``T = 1 + N // hop`` with centring
(``N`` samples). A recipe that is not an STFT (``kaldi_fbank``) implements the same interface:
``output_shape(seconds)`` and ``(seconds)(path)`` giving a float32 frequency × time array.

Files are read with soundfile; librosa resamples (``soxr_hq``, the default of ``librosa.load``
since 0.10) only when the file's rate differs from the recipe's. Tiling repeats the clip as often
as needed; the reference loaders tile a fixed number of times (``np.tile(x, 3)``), which gives the
same samples whenever their output has full length, and a shorter (wrongly shaped) output
otherwise. A missing, empty, truncated or undecodable file raises :class:`DataError` naming it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import ClassVar

import librosa
import numpy as np
import soundfile as sf

from mmbalance.errors import ConfigError, DataError

N_FFT = 512
LOG_EPS = 1e-7
NORM_EPS = 1e-9


def _check_riff_length(path: Path) -> None:
    """Raise :class:`DataError` if a RIFF/WAVE file's ``data`` chunk runs past the end of the file.

    libsndfile silently returns the samples that are present when a WAV file was cut short
    (an interrupted copy or download), so this is checked from the header.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        pos = 12
        while pos + 8 <= size:
            handle.seek(pos)
            chunk_id, length = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                if length not in (0, 0xFFFFFFFF) and pos + 8 + length > size:
                    raise DataError(
                        f"{path}: truncated WAV file (header declares {length} bytes of audio, "
                        f"{size - pos - 8} present)"
                    )
                return
            pos += 8 + length + (length & 1)


def read_wav(path: Path, sample_rate: int) -> np.ndarray:
    """Read an audio file as mono float32 at ``sample_rate`` (channels averaged, like ``librosa.load``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    _check_riff_length(path)
    try:
        handle = sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise DataError(f"{path}: cannot open: not a readable audio file ({exc})") from exc
    try:
        with handle:
            samples, rate = handle.read(dtype="float32", always_2d=True), handle.samplerate
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise DataError(f"{path}: cannot decode audio ({exc})") from exc
    if samples.shape[0] == 0:
        raise DataError(f"{path}: audio file holds no samples")
    mono = samples.mean(axis=1, dtype=np.float32)
    if not np.all(np.isfinite(mono)):
        raise DataError(f"{path}: audio holds non-finite samples")
    if rate != sample_rate:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(mono, dtype=np.float32)


def preload() -> None:
    """Load librosa's lazily imported STFT code (about 3 s) now, so that forked workers inherit it."""
    librosa.stft(np.zeros(N_FFT, dtype=np.float32), n_fft=N_FFT, center=False)


def tile_to(samples: np.ndarray, length: int) -> np.ndarray:
    """Repeat ``samples`` end to end and cut to ``length`` samples."""
    reps = -(-length // samples.size)
    return np.tile(samples, reps)[:length]


class Frontend:
    """An STFT spectrogram recipe; subclasses set the constants and register with ``@register_frontend``.

    ``Frontend(seconds)(path)`` gives the float32 ``(n_fft // 2 + 1, T)`` spectrogram of a WAV
    file; ``output_shape(seconds)`` predicts its shape without reading anything. ``seconds=None``
    means the recipe's own length (:attr:`default_seconds`). A recipe that takes its samples
    differently (a crop) overrides :meth:`waveform`.
    """

    sample_rate: ClassVar[int]
    hop_length: ClassVar[int]
    center: ClassVar[bool]
    normalise: ClassVar[bool]
    default_seconds: ClassVar[float]
    n_fft: ClassVar[int] = N_FFT

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = self.default_seconds if seconds is None else float(seconds)
        if self.num_samples(self.seconds) < (1 if self.center else self.n_fft):
            raise ConfigError(f"audio front-end {type(self).__name__}: seconds={seconds} is too short")

    @classmethod
    def num_samples(cls, seconds: float | None = None) -> int:
        """Samples after tiling and cutting."""
        return round(cls.sample_rate * (cls.default_seconds if seconds is None else seconds))

    @classmethod
    def output_shape(cls, seconds: float | None = None) -> tuple[int, int]:
        """``(n_fft // 2 + 1, T)`` for ``num_samples(seconds)`` samples."""
        n = cls.num_samples(seconds)
        frames = 1 + n // cls.hop_length if cls.center else 1 + (n - cls.n_fft) // cls.hop_length
        return (cls.n_fft // 2 + 1, frames)

    def waveform(self, path: Path) -> np.ndarray:
        """The samples the STFT sees: the file tiled and cut to ``num_samples(seconds)``, in [-1, 1]."""
        samples = read_wav(path, self.sample_rate)
        return np.clip(tile_to(samples, self.num_samples(self.seconds)), -1.0, 1.0)

    def __call__(self, path: Path) -> np.ndarray:
        samples = self.waveform(path)
        spec = librosa.stft(
            samples, n_fft=self.n_fft, hop_length=self.hop_length, center=self.center, pad_mode="constant"
        )
        spec = np.log(np.abs(spec) + LOG_EPS)
        if self.normalise:
            spec = (spec - spec.mean()) / (spec.std() + NORM_EPS)
        return spec.astype(np.float32)

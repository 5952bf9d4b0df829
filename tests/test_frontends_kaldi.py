"""The Kaldi fbank front-end (datasets.md §1) against a frame-by-frame reference written from Kaldi's
definition, and properties that can be checked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmbalance.data.frontends.kaldi_fbank import fbank, kaldi_mel, mel_banks
from mmbalance.errors import ConfigError
from mmbalance.registry import FRONTENDS

RATE = 16000
EPS32 = 1.1920928955078125e-07  # float32 machine epsilon, 2**-23
PAD_VALUE = 4.503877 / (2 * 5.141276)  # a zero-padded frame after the normalisation


def mel_of(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


def reference_weights(num_bins: int = 128) -> np.ndarray:
    """Kaldi's triangles, one element at a time: 128 filters × 257 FFT bins (the Nyquist bin unused)."""
    low, high = mel_of(20.0), mel_of(RATE / 2)
    delta = (high - low) / (num_bins + 1)
    weights = np.zeros((num_bins, 257))
    for m in range(num_bins):
        left, centre, right = low + m * delta, low + (m + 1) * delta, low + (m + 2) * delta
        for k in range(256):
            mel = mel_of(k * RATE / 512)
            if left < mel <= centre:
                weights[m, k] = (mel - left) / (centre - left)
            elif centre < mel < right:
                weights[m, k] = (right - mel) / (right - centre)
    return weights


def reference_fbank(x: np.ndarray) -> np.ndarray:
    """Frame-by-frame log-mel energies: DC removal, pre-emphasis, symmetric Hann, 512-point DFT."""
    weights = reference_weights()
    n = np.arange(512)
    dft = np.exp(-2j * np.pi * np.outer(np.arange(257), n) / 512)  # an explicit DFT matrix
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / 399) for i in range(400)])
    rows = []
    for t in range(1 + (len(x) - 400) // 160):
        frame = np.array(x[160 * t : 160 * t + 400], dtype=np.float64)
        frame = frame - sum(frame) / 400
        emphasised = np.empty(400)
        emphasised[0] = frame[0] - 0.97 * frame[0]
        for i in range(1, 400):
            emphasised[i] = frame[i] - 0.97 * frame[i - 1]
        padded = np.zeros(512)
        padded[:400] = emphasised * window
        power = np.abs(dft @ padded) ** 2
        rows.append([math.log(max(float(weights[m] @ power), EPS32)) for m in range(128)])
    return np.array(rows)


@pytest.fixture(scope="module")
def noisy_tone() -> np.ndarray:
    rng = np.random.default_rng(3)
    t = np.arange(8000) / RATE  # 0.5 s: 48 frames
    return 0.3 * np.sin(2 * np.pi * 700 * t) + 0.05 * rng.standard_normal(t.size) + 0.1


def test_matches_a_frame_by_frame_reference(noisy_tone: np.ndarray) -> None:
    ours = fbank(noisy_tone, RATE)
    ref = reference_fbank(noisy_tone)
    assert ours.shape == ref.shape == (48, 128)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


def test_mel_banks_are_kaldis_triangles() -> None:
    np.testing.assert_allclose(mel_banks(RATE), reference_weights(), rtol=0, atol=1e-12)
    assert kaldi_mel(700.0) == pytest.approx(1127.0 * math.log(2.0))
    assert np.all(mel_banks(RATE)[:, -1] == 0)  # the Nyquist bin carries no weight


@pytest.mark.parametrize(
    ("samples", "frames"), [(399, 0), (400, 1), (559, 1), (560, 2), (16000, 98), (160000, 998)]
)
def test_frame_count_with_snip_edges(samples: int, frames: int) -> None:
    assert frames == (1 + (samples - 400) // 160 if samples >= 400 else 0)
    assert fbank(np.ones(samples), RATE).shape == (frames, 128)


def test_a_pure_tone_lands_in_the_filter_around_its_frequency() -> None:
    # The centre frequency of filter 80, rounded to an FFT bin (31.25 Hz apart) to avoid leakage.
    delta = (mel_of(RATE / 2) - mel_of(20.0)) / 129
    centre_mel = mel_of(20.0) + 81 * delta
    freq = round(700 * (math.exp(centre_mel / 1127) - 1) / 31.25) * 31.25
    t = np.arange(RATE) / RATE
    energies = fbank(np.sin(2 * np.pi * freq * t), RATE).mean(axis=0)
    peak = int(np.argmax(energies))
    assert peak == 80
    assert mel_of(20.0) + peak * delta < mel_of(freq) < mel_of(20.0) + (peak + 2) * delta


def test_dc_offset_and_silence() -> None:
    rng = np.random.default_rng(4)
    x = 0.1 * rng.standard_normal(4000)
    np.testing.assert_allclose(fbank(x + 0.5, RATE), fbank(x, RATE), atol=1e-6)  # per-frame DC removal
    assert np.all(fbank(np.zeros(4000), RATE) == math.log(EPS32))  # the log floor


@pytest.fixture
def ten_seconds(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(5)
    path = tmp_path / "clip.wav"
    sf.write(path, 0.2 * rng.standard_normal(160000), RATE, subtype="FLOAT")
    return path, sf.read(path, dtype="float64")[0]


def test_a_ten_second_clip_is_padded_to_1024_frames_and_normalised(
    ten_seconds: tuple[Path, np.ndarray],
) -> None:
    path, x = ten_seconds
    out = FRONTENDS.get("kaldi_fbank")()(path)
    assert out.shape == (128, 1024) and out.dtype == np.float32
    expected = (fbank(x, RATE) + 4.503877) / (2 * 5.141276)  # 998 frames
    np.testing.assert_allclose(out[:, :998], expected.T, atol=1e-5)
    np.testing.assert_allclose(out[:, 998:], PAD_VALUE, atol=1e-7)


def test_longer_clips_are_cut_and_seconds_cuts_the_audio(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    path = tmp_path / "long.wav"
    sf.write(path, 0.2 * rng.standard_normal(12 * RATE), RATE, subtype="FLOAT")
    x = sf.read(path, dtype="float64")[0]
    frontend = FRONTENDS.get("kaldi_fbank")
    full = frontend()(path)
    np.testing.assert_allclose(full, ((fbank(x, RATE)[:1024] + 4.503877) / 10.282552).T, atol=1e-5)
    np.testing.assert_array_equal(frontend(20.0)(path), full)  # the default already holds 1024 frames
    short = frontend(2.0)(path)  # 1 + (32000 - 400) // 160 = 198 frames of audio, then padding
    np.testing.assert_allclose(short[:, :198], full[:, :198], atol=1e-6)
    np.testing.assert_allclose(short[:, 198:], PAD_VALUE, atol=1e-7)
    assert frontend.output_shape(2.0) == (128, 1024)
    with pytest.raises(ConfigError, match="kaldi_fbank"):
        frontend(0.01)

"""PMR's spectrogram, the one whose shapes the papers quote (datasets.md §1; the default).

16 kHz mono, tiled and cut to ``seconds`` (from ``features.<profile>.<dataset>.audio.seconds``),
clipped to [-1, 1], ``librosa.stft(n_fft=512, hop_length=159, center=False)``, ``log(|S| + 1e-7)``,
then per-clip z-normalisation ``(S - mean) / (std + 1e-9)``: 257×299 for 3 s, 257×1004 for 10 s.
PMR's published script computes the same frames with ``scipy.signal.spectrogram`` (Tukey window,
log power); the librosa call gives the same shapes with a Hann window and log magnitude.
"""

from __future__ import annotations

from mmbalance.data.audio import Frontend
from mmbalance.registry import register_frontend


@register_frontend("pmr")
class PMRFrontend(Frontend):
    """257×299 for 3 s, 257×1004 for 10 s (``seconds`` default 3)."""

    sample_rate = 16000
    hop_length = 159
    center = False
    normalise = True
    default_seconds = 3.0

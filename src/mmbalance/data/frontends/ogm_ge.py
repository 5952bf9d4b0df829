"""OGM-GE's CREMA-D spectrogram (``CramedDataset``; also AMSS), datasets.md §1.

22.05 kHz mono, tiled and cut to ``seconds`` (the reference code hard-codes 3 s:
``np.tile(x, 3)[:22050*3]``), clipped to [-1, 1], ``librosa.stft(n_fft=512, hop_length=353)``
centred (zero padding, librosa's default since 0.10), ``log(|S| + 1e-7)``, no normalisation:
257×188 for 3 s. ``seconds`` from the feature config overrides the length; set it to 3 to
reproduce the reference code.
"""

from __future__ import annotations

from mmbalance.data.audio import Frontend
from mmbalance.registry import register_frontend


@register_frontend("ogm_ge")
class OGMGEFrontend(Frontend):
    """257×188 for 3 s (``seconds`` default 3)."""

    sample_rate = 22050
    hop_length = 353
    center = True
    normalise = False
    default_seconds = 3.0

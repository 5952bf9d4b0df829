"""The spectrogram of the released LFM and AUG code (``dataset/CREMA.py``), datasets.md §1.

As ``ogm_ge`` but tiled to 20 s (``np.tile(x, 20)[:22050*20]``): 22.05 kHz, centred
``librosa.stft(n_fft=512, hop_length=353)``, ``log(|S| + 1e-7)``, no normalisation: 257×1250.
``seconds`` from the feature config overrides the length; set it to 20 to reproduce the released
code (with the papers' usual ``seconds: 3`` this front-end equals ``ogm_ge``).
"""

from __future__ import annotations

from mmbalance.data.audio import Frontend
from mmbalance.registry import register_frontend


@register_frontend("lfm_code")
class LFMCodeFrontend(Frontend):
    """257×1250 for 20 s (``seconds`` default 20)."""

    sample_rate = 22050
    hop_length = 353
    center = True
    normalise = False
    default_seconds = 20.0

"""The Kinetics-Sounds spectrogram of the NJUST code base, datasets.md §1 and methods.md §C2.

AMSS's KS ``VADataset`` (njustkmg/TPAMI-AMSS 3161ecc; the LFM/MIE/AUG authors' group) loads
precomputed spectrograms whose documented shape is 257×1004; the commented-out recipe next to it
reads the audio at 35,400 Hz, tiles it to 10 s, clips to [-1, 1] and takes a centred
``librosa.stft(n_fft=512, hop_length=353)`` and ``log(|S| + 1e-7)`` without normalisation:
257×1003 (``1 + 354000 // 353``). The papers' text quotes 257×1004, which is ``pmr`` at 10 s (the
default of the KS and VGGSound presets); this front-end is the code variant. Write WAVs at the
clips' own rate (``data.<dataset>.audio_rate: 0``) to avoid upsampling 16 kHz audio to 35.4 kHz.
"""

from __future__ import annotations

from mmbalance.data.audio import Frontend
from mmbalance.registry import register_frontend


@register_frontend("amss_ks")
class AMSSKineticsSoundsFrontend(Frontend):
    """257×1003 for 10 s (``seconds`` default 10)."""

    sample_rate = 35400
    hop_length = 353
    center = True
    normalise = False
    default_seconds = 10.0

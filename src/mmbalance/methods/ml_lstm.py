"""ML-LSTM: multi-layer LSTM fusion over the modality sequence (methods.md §B5).

Nie, Yan, Song & Wang, "Multi-modal feature fusion based on multi-layers LSTM for video emotion
recognition", MTA 2021 (LFM ref. [30]). No official code: the fusion ``lstm``
(:mod:`mmbalance.models.fusions.recurrent`) is the mmbalance interpretation of the spec's proposal —
the sequence ``[z_a, z_v]`` (or ``[z_rgb, z_of, z_depth]``), a 2-layer LSTM with 512 hidden units,
a Linear on the final hidden state, CE on the fused logits. Per-modality accuracy comes from
probe heads on detached features (their own CE, no gradient into the encoders).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmbalance.methods._base import Method
from mmbalance.registry import register_method


@register_method("ml_lstm")
class MLLSTM(Method):
    """Encoders, stacked-LSTM fusion over the modality sequence, CE (plus the probes' CE)."""

    fusion = "lstm"

    @dataclass
    class Options:
        hidden: int = 512
        layers: int = 2

    def fusion_options(self) -> dict[str, Any]:
        return {"hidden": self.options.hidden, "layers": self.options.layers}

"""Multi-layer LSTM fusion (ML-LSTM, Nie et al., MTA 2021; methods.md §B5, mmbalance interpretation).

No code was released and the spec flags the architecture as partly a guess. Our reading: the
modality features, in the dataset's modality order, form a sequence ``[z_1, …, z_M]`` (each
projected by its own Linear to the largest feature size when the sizes differ); a stacked LSTM
(``layers`` layers, ``hidden`` units) reads it and a Linear classifies its last layer's final
hidden state. The fusion has no unimodal outputs, so per-modality logits come from probe heads
on detached features (:class:`ProbedFusion`).
"""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.fusions._base import FusionOutput, ProbedFusion
from mmbalance.registry import register_fusion


@register_fusion("lstm")
class LSTMFusion(ProbedFusion):
    """``o = W h_M + b`` with ``h_M`` the top-layer hidden state after reading ``[z_1, …, z_M]``."""

    def __init__(self, dims: dict[str, int], num_classes: int, hidden: int = 512, layers: int = 2) -> None:
        super().__init__(dims, num_classes)
        size = max(dims.values())
        equal = len(set(dims.values())) == 1
        self.project = nn.ModuleDict(
            {m: nn.Identity() if equal else nn.Linear(d, size) for m, d in dims.items()}
        )
        self.lstm = nn.LSTM(size, hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        sequence = torch.stack([self.project[m](features[m]) for m in self.modalities], dim=1)
        _, (hidden, _) = self.lstm(sequence)
        return FusionOutput(self.fc(hidden[-1]), self.probe_logits(features))

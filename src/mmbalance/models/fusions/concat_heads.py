"""Concat head plus separate unimodal heads (MMPareto's ``AVClassifier``, §B19; G-Blend, §B10).

``o = W [z_1; …; z_M] + b`` (the multimodal head) and ``o_m = W_m z_m + b_m`` (one linear head per
modality, trained by its own unimodal loss). Unlike ``concat`` the unimodal logits are not blocks
of the fused head: each modality has its own classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.fusions._base import Fusion, FusionOutput
from mmbalance.registry import register_fusion


@register_fusion("concat_heads")
class ConcatWithUnimodalHeads(Fusion):
    """``fused`` from a linear layer on the concatenated features; ``modality[m]`` from ``heads[m]``."""

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.fc = nn.Linear(sum(dims.values()), num_classes)
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        fused = self.fc(torch.cat([features[m] for m in self.modalities], dim=1))
        return FusionOutput(fused, {m: self.heads[m](features[m]) for m in self.modalities})

"""A concat head plus independent unimodal heads (G-Blend's multi-task late fusion; methods.md §B10)."""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.fusions.base import Fusion, FusionOutput
from mmbalance.registry import register_fusion


@register_fusion("concat_plus_heads")
class ConcatPlusHeads(Fusion):
    """``o = W [z_1; …; z_M] + b`` and, per modality, its own linear head ``o_m = W_m z_m + b_m``.

    Unlike the split Concat head, the unimodal heads share no parameter with the fused head, so
    each output can carry its own loss (Wang et al., CVPR 2020, §3.3: one classifier per modality
    next to the fused one; BalanceBenchmark's ``fc_a``, ``fc_v``, ``fc_out``).
    """

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.fc = nn.Linear(sum(dims.values()), num_classes)
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        fused = self.fc(torch.cat([features[m] for m in self.modalities], dim=1))
        return FusionOutput(fused, {m: self.heads[m](features[m]) for m in self.modalities})

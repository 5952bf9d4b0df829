"""Prediction weighting with learned attention (CMML, Yang et al. IJCAI 2019; methods.md §B7)."""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.fusions._base import Fusion, FusionOutput
from mmbalance.registry import register_fusion


@register_fusion("weight")
class AttentionWeightFusion(Fusion):
    """``o = Σ_m softmax_m(a_m) · p_m`` with ``p_m = W_m z_m + b_m`` and ``a_m = MLP_m(z_m)``.

    As in OMML's ``cmml.py`` the attention score is a small MLP on each modality's
    representation, normalised by a softmax over modalities; here it mixes logits.
    The per-sample weights are returned in ``extras["attention"]`` (B, M).
    """

    def __init__(self, dims: dict[str, int], num_classes: int, hidden: int = 64) -> None:
        super().__init__(dims, num_classes)
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})
        self.scores = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 1)) for m, d in dims.items()}
        )

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        modality = {m: self.heads[m](features[m]) for m in self.modalities}
        scores = torch.cat([self.scores[m](features[m]) for m in self.modalities], dim=1)
        attention = scores.softmax(dim=1)
        stacked = torch.stack([modality[m] for m in self.modalities], dim=1)
        fused = (attention.unsqueeze(-1) * stacked).sum(dim=1)
        return FusionOutput(fused, modality, {"attention": attention})

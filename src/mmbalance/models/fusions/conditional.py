"""FiLM (Affine) and gated fusion (OGM-GE ``FiLM``/``GatedFusion``; methods.md §B3, §B4)."""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.fusions.base import FusionOutput, ProbedFusion, require_two
from mmbalance.registry import register_fusion


@register_fusion("film")
class FiLMFusion(ProbedFusion):
    """``[γ; β] = W_c z_1 + b_c``, ``o = W (γ ⊙ z_2 + β) + b``: the first modality conditions the second."""

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.condition, self.target = require_two(dims, "film")
        self.film = nn.Linear(dims[self.condition], 2 * dims[self.target])
        self.fc = nn.Linear(dims[self.target], num_classes)

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        gamma, beta = self.film(features[self.condition]).chunk(2, dim=1)
        fused = self.fc(gamma * features[self.target] + beta)
        return FusionOutput(fused, self.probe_logits(features))


@register_fusion("gated")
class GatedFusion(ProbedFusion):
    """``o = W (σ(W_1 z_1) ⊙ W_2 z_2) + b``: the first modality gates the second (Kiela et al.)."""

    def __init__(self, dims: dict[str, int], num_classes: int, hidden: int = 512) -> None:
        super().__init__(dims, num_classes)
        self.gate, self.value = require_two(dims, "gated")
        self.gate_fc = nn.Linear(dims[self.gate], hidden)
        self.value_fc = nn.Linear(dims[self.value], hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        gated = torch.sigmoid(self.gate_fc(features[self.gate])) * self.value_fc(features[self.value])
        return FusionOutput(self.fc(gated), self.probe_logits(features))
